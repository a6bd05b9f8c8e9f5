"""Read-only helpers on one lab host: its pool's ping and status page, its relay's counters,
the command lines to reach it (ssh, supervisorctl)."""

from __future__ import annotations

from . import fpmctl, latency, services
from .keys import ssh_argv
from .messages import LabError
from .model import DEFAULT_ROOT, load_host
from .processes import daemon_pid


def fpm_ping(name: str, root: str = DEFAULT_ROOT) -> bool:
    """True if the pool answers its ping path over its socket."""
    return fpmctl.pong(load_host(name, root).socket)


def fpm_status(name: str, root: str = DEFAULT_ROOT, full: bool = False) -> dict:
    """The pool's pm.status_path page (JSON) fetched over its socket."""
    return fpmctl.status(load_host(name, root).socket, full=full)


def proxy_stats(name: str, root: str = DEFAULT_ROOT) -> dict:
    """The latency relay's counters for one host (connections, open, bytes, turns; latency.py)."""
    h = load_host(name, root)
    if not daemon_pid(h.latency_pid_file, h.latency_ctl):
        raise LabError(f"{name} has no latency relay running (start it with up(latency_ms=...))")
    return latency.stats(h.latency_ctl)


def ssh_command(name: str, root: str = DEFAULT_ROOT) -> list[str]:
    """argv prefix for the OpenSSH client to log in to a lab host (strict host keys)."""
    return ssh_argv(load_host(name, root))


def supervisorctl(name: str, root: str = DEFAULT_ROOT) -> list[str]:
    """argv prefix of supervisorctl for the host's supervisord, e.g. + ["restart", "app:*"]."""
    return services.supervisorctl_argv(load_host(name, root))
