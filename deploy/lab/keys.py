"""SSH keys of the lab: the client key every host trusts, each host's own host key, known_hosts.

Shared by all hosts of a root, in ``{root}/ssh/``: ``id_ed25519`` (+ ``.pub``), the
``authorized_keys`` every lab sshd reads, and ``known_hosts`` with one line per host port, so
host keys are checked strictly in the lab too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .files import mkdir, write
from .model import ADDRESS, LabHost


def ensure_client_key(root: Path) -> None:
    sshdir = root / "ssh"
    mkdir(sshdir, 0o700)
    key = sshdir / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab@{root}", "-f", str(key)],
                       check=True, stdin=subprocess.DEVNULL)
    pub = (sshdir / "id_ed25519.pub").read_text().strip()
    ak = sshdir / "authorized_keys"
    lines = ak.read_text().splitlines() if ak.exists() else []
    if pub not in lines:
        lines.append(pub)
    write(ak, "\n".join(lines) + "\n", 0o600)
    kh = sshdir / "known_hosts"
    if not kh.exists():
        write(kh, "", 0o644)


def ensure_host_key(h: LabHost) -> None:
    key = Path(h.host_key)
    if not key.exists() or not Path(h.host_key + ".pub").exists():
        key.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{h.name}@lab", "-f", str(key)],
                       check=True, stdin=subprocess.DEVNULL)
    os.chmod(key, 0o600)


def write_known_hosts(root: Path, hosts: list[LabHost]) -> None:
    """One `[127.0.0.1]:PORT` line per host port (rewritten); other lines are kept."""
    kh = root / "ssh" / "known_hosts"
    new = {}
    for h in hosts:
        typ, b64 = Path(h.host_key + ".pub").read_text().split()[:2]
        # sshd's own port, and the relay's when there is one (same host key behind it)
        for port in dict.fromkeys((h.ssh_port, h.port)):
            new[f"[{ADDRESS}]:{port}"] = f"[{ADDRESS}]:{port} {typ} {b64}"
    keep = []
    if kh.exists():
        for line in kh.read_text().splitlines():
            if line.strip() and line.split()[0] not in new:
                keep.append(line)
    write(kh, "\n".join(keep + list(new.values())) + "\n", 0o644)


def ssh_argv(h: LabHost) -> list[str]:
    """argv prefix for the OpenSSH client to log in to a lab host (strict host keys)."""
    return [
        "ssh",
        "-i", h.key,
        "-o", f"UserKnownHostsFile={h.known_hosts}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-p", str(h.port),
        f"root@{ADDRESS}",
    ]
