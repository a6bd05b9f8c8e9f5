"""The lab's daemons as processes: start self-daemonizing programs, find them by pid file, stop them.

A pid is only trusted when the process is alive AND its command line names our config file
(the "marker"): a stale pid file whose pid was reused by an unrelated process never gets a
signal. Everything reads /proc; nothing here knows what a lab host is.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from .files import logged_since, size, tail
from .messages import LabError, log

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# A client socket's TIME_WAIT (60 s) blocks a listener's bind too, when that client did not set
# SO_REUSEADDR (most do not).
BIND_RETRY_FOR = 65.0


def wait(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        res = pred()
        if res:
            return res
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (PID 1 here may not reap daemons)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def on_port(port: int) -> list[int]:
    """Processes holding a TCP socket whose local port is `port` (a server's connections)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (p / "fd").iterdir()):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def matching(pattern: re.Pattern) -> list[int]:
    """Live processes (not this one) whose command line matches pattern: daemons whose pid file was lost."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            cmd = cmdline(int(p.name))
            if cmd and pattern.search(cmd) and alive(int(p.name)):
                out.append(int(p.name))
    return out


def daemon_pid(pidfile: str | os.PathLike, marker: str) -> int | None:
    """Pid from pidfile if that process is alive AND its cmdline names our config (marker)."""
    pid = read_pid(Path(pidfile))
    if pid and alive(pid) and marker in cmdline(pid):
        return pid
    return None


def kill_wait(pids: list[int], sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    pids = [p for p in pids if alive(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)
            os.kill(p, signal.SIGCONT)  # in case it was frozen by freeze_sshd()
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() >= deadline:
            for p in pids:
                if alive(p):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            wait(lambda: not any(alive(p) for p in pids), 5, f"pids {pids} to die")
            return
        time.sleep(0.02)


def signal_tree(pid: int, sig) -> None:
    """Send sig to pid and every descendant (freeze_sshd/thaw_sshd)."""
    for p in [pid] + descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)


def stop(pidfile: str, marker: str, with_descendants: bool = False) -> bool:
    """Stop the daemon of pidfile (and its workers/sessions); False if it was not running."""
    pid = daemon_pid(pidfile, marker)
    if pid is None:
        return False
    # workers die with their master; wait for them too so nothing of the lab is left
    kill_wait([pid] + (descendants(pid) if with_descendants else []))
    return True


def run_daemon(argv: list[str], logfile: Path, env: dict | None = None) -> None:
    """Run a self-daemonizing program; its output goes to logfile (never to our pipes)."""
    with open(logfile, "ab") as out:
        out.write(f"--- {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                              timeout=30, env=env)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}:\n{tail(logfile)}")


def bind_retry(start, h, logfile: str):
    """start(h), again while its port is taken by someone else's connection.

    Ports at or above 32768 are also the kernel's ephemeral range: an outgoing connection of any
    process on the machine may hold our port for a while, and binding then fails with "Address
    already in use". The daemon's log says so; wait and try again, for a bounded time.
    """
    deadline = time.monotonic() + BIND_RETRY_FOR
    while True:
        mark = size(logfile)
        try:
            return start(h)
        except LabError:
            if time.monotonic() > deadline or not logged_since(logfile, mark, ("Address already in use",)):
                raise
            log(f"{h.name}: a port is in use by another connection, retrying")
            time.sleep(1.0)
