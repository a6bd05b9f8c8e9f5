"""What a lab host is: `LabHost`, its pool settings (`Pool`), its live processes (`Pids`).

A host's settings are kept in `{root}/lab{i}/lab.json` (ports, pool, faults injected), so a
later `up`, `down`, `status` or fault helper, in another process, finds the running lab again:
`load_host()` reads that file back into a `LabHost`. Every path of a host follows from its root
and index. Paths are absolute strings: they go into config files, argv and the inventory YAML.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .files import write
from .messages import LabError

if TYPE_CHECKING:
    from .services import Stack

DEFAULT_ROOT = "/srv/lab"
DEFAULT_INVENTORY = "hosts/lab.yml"
ADDRESS = "127.0.0.1"

_NAME_RE = re.compile(r"^lab(\d+)$")


@dataclass(frozen=True)
class Pool:
    """The PHP-FPM pool's settings; `fpm_restart(**overrides)` changes them per host."""

    max_children: int = 2
    opcache_enable: int = 1
    validate_timestamps: int = 0
    revalidate_freq: int = 2
    opcache_file_cache: str | None = None  # a directory, or None for no file cache
    # [global] process_control_timeout, seconds: how long a reload (SIGUSR2) lets requests in
    # flight finish. FPM's default, 0, kills them (nginx answers 502): set as a real host should be.
    process_control_timeout: int = 10
    directives: dict[str, str] = field(default_factory=dict)  # raw extra pool lines: {"php_admin_value[opcache.jit]": "off"}

    @classmethod
    def from_json(cls, data: dict) -> Pool:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Pids:
    """A host's daemons as running now: master pids (None: not running) and worker pids."""

    sshd: int | None
    fpm: int | None
    nginx: int | None
    latency: int | None
    fpm_workers: tuple[int, ...] = ()
    nginx_workers: tuple[int, ...] = ()

    def any(self) -> bool:
        return any((self.sshd, self.fpm, self.nginx, self.latency))


@dataclass(frozen=True)
class LabHost:
    """One lab host `lab{index}` under `root`: its ports, settings and files.

    `pids` and `stack` are filled by `host_info()`/`up()` (what runs now); `load_host()` leaves
    them None.
    """

    root: str
    index: int
    ssh_port: int
    http_port: int
    pool: Pool = field(default_factory=Pool)
    realpath_root: bool = True  # nginx passes $realpath_root (False: $document_root, the symlink fault)
    sftp: bool = True
    light: bool = False
    latency_ms: float = 0.0
    proxy_port: int | None = None  # the latency relay in front of sshd, when there is one
    pids: Pids | None = None
    stack: Stack | None = None

    # ------------------------------------------------------------------ who and where
    @property
    def name(self) -> str:
        return f"lab{self.index}"

    @property
    def address(self) -> str:
        return ADDRESS

    @property
    def port(self) -> int:
        """The port clients use (the inventory, known_hosts): the relay's when there is one."""
        return self.proxy_port or self.ssh_port

    @property
    def base_url(self) -> str:
        return f"http://{ADDRESS}:{self.http_port}"

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/version"

    @property
    def fpm_reload_cmd(self) -> str:
        return f'kill -USR2 "$(cat {self.fpm_pid_file})"'

    # ------------------------------------------------------------------ files
    @property
    def dir(self) -> str:
        return f"{self.root}/{self.name}"

    @property
    def deploy_path(self) -> str:
        return f"{self.dir}/app"

    @property
    def current(self) -> str:
        return f"{self.deploy_path}/current"

    @property
    def releases(self) -> str:
        return f"{self.deploy_path}/releases"

    @property
    def state_file(self) -> str:
        return f"{self.dir}/lab.json"

    @property
    def start_log(self) -> str:
        return f"{self.dir}/start.log"

    @property
    def socket(self) -> str:
        return f"{self.dir}/php-fpm.sock"

    @property
    def sshd_config(self) -> str:
        return f"{self.dir}/sshd_config"

    @property
    def sshd_pid_file(self) -> str:
        return f"{self.dir}/sshd.pid"

    @property
    def sshd_log(self) -> str:
        return f"{self.dir}/sshd.log"

    @property
    def host_key(self) -> str:
        return f"{self.dir}/ssh_host_ed25519_key"

    @property
    def fpm_conf(self) -> str:
        return f"{self.dir}/fpm.conf"

    @property
    def fpm_pid_file(self) -> str:
        return f"{self.dir}/fpm.pid"

    @property
    def fpm_log(self) -> str:
        return f"{self.dir}/fpm.log"

    @property
    def php_error_log(self) -> str:
        return f"{self.dir}/php-error.log"

    @property
    def nginx_conf(self) -> str:
        return f"{self.dir}/nginx.conf"

    @property
    def nginx_pid_file(self) -> str:
        return f"{self.dir}/nginx.pid"

    @property
    def nginx_error_log(self) -> str:
        return f"{self.dir}/nginx-error.log"

    @property
    def nginx_access_log(self) -> str:
        return f"{self.dir}/nginx-access.log"

    @property
    def latency_pid_file(self) -> str:
        return f"{self.dir}/latency.pid"

    @property
    def latency_ctl(self) -> str:
        return f"{self.dir}/latency.ctl"

    @property
    def latency_log(self) -> str:
        return f"{self.dir}/latency.log"

    # shared by every host of the root
    @property
    def key(self) -> str:
        return f"{self.root}/ssh/id_ed25519"

    @property
    def known_hosts(self) -> str:
        return f"{self.root}/ssh/known_hosts"

    @property
    def authorized_keys(self) -> str:
        return f"{self.root}/ssh/authorized_keys"

    # ------------------------------------------------------------------ lab.json
    def state(self) -> dict:
        """What lab.json keeps (the settings; paths follow from root and index)."""
        return {
            "ssh_port": self.ssh_port,
            "http_port": self.http_port,
            "realpath_root": self.realpath_root,
            "sftp": self.sftp,
            "pool": dataclasses.asdict(self.pool),
            "light": self.light,
            "latency_ms": self.latency_ms,
            "proxy_port": self.proxy_port,
        }

    @classmethod
    def from_state(cls, root: Path, index: int, state: dict) -> LabHost:
        return cls(root=str(root), index=index, ssh_port=state["ssh_port"], http_port=state["http_port"],
                   pool=Pool.from_json(state["pool"]), realpath_root=state["realpath_root"],
                   sftp=state.get("sftp", True), light=state.get("light", False),
                   latency_ms=state.get("latency_ms", 0), proxy_port=state.get("proxy_port"))

    def save(self) -> None:
        write(Path(self.state_file), json.dumps(self.state(), indent=2, sort_keys=True) + "\n")

    def replace(self, **changes) -> LabHost:
        return dataclasses.replace(self, **changes)


def index_of(name: str) -> int:
    m = _NAME_RE.match(name)
    if not m:
        raise LabError(f"not a lab host name: {name!r} (expected lab1, lab2, ...)")
    return int(m.group(1))


def existing_indexes(root: Path) -> list[int]:
    """Indexes of the host directories under root (running or not)."""
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _NAME_RE.match(p.name)
        if m and p.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


def stored(root: Path, index: int) -> LabHost | None:
    """The host as its lab.json describes it, None when it has none (never started)."""
    try:
        state = json.loads((root / f"lab{index}" / "lab.json").read_text())
    except (OSError, ValueError):
        return None
    return LabHost.from_state(root, index, state)


def layout(root: Path, index: int) -> LabHost:
    """A host's files when nothing is known of its settings (down() stops by pid file)."""
    return stored(root, index) or LabHost(root=str(root), index=index, ssh_port=0, http_port=0)


def load_host(name: str, root: str = DEFAULT_ROOT) -> LabHost:
    rootp = Path(root).resolve()
    h = stored(rootp, index_of(name))
    if h is None:
        raise LabError(f"{name} does not exist under {rootp} (run up() first)")
    return h
