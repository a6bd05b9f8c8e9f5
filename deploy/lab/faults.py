"""Fault injection on a running lab host: stop, freeze or reconfigure one daemon, and undo it.

Settings changed here (pool overrides, SFTP, $realpath_root, the relay's delay) are saved in the
host's lab.json, so they hold for later restarts and `up()` until `down()`. Each helper returns
the host as `host_info()` shows it afterwards (or what it says).
"""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

from . import fpmctl, latency
from .daemons import reload_nginx, start_fpm, start_nginx, start_sshd as _start_sshd
from .files import locked
from .lifecycle import host_info
from .messages import LabError
from .model import DEFAULT_ROOT, LabHost, Pool, existing_indexes, load_host, stored
from .processes import START_TIMEOUT, alive, children, daemon_pid, kill_wait, on_port, signal_tree, stop, wait


def _reloaded(h: LabHost) -> LabHost:
    """h as its lab.json says now (another process may have changed it before we took the lock)."""
    return stored(Path(h.root), h.index) or h


def fpm_reload(name: str, root: str = DEFAULT_ROOT, timeout: float = START_TIMEOUT) -> LabHost:
    """Graceful reload (SIGUSR2 to the master): clears OPcache's shared memory.

    Note: with ``daemonize = yes`` the re-executed master daemonizes again, so the
    master's pid CHANGES on every reload (the pid file is rewritten). Waits until the
    pid file names a live master whose workers are all new, every old worker is gone
    and the socket answers the ping again. Returns host_info().
    """
    h = load_host(name, root)
    with locked(Path(h.root)):
        pid = daemon_pid(h.fpm_pid_file, h.fpm_conf)
        if pid is None:
            raise LabError(f"{name}: FPM is not running")
        old = set(children(pid))
        os.kill(pid, signal.SIGUSR2)
        want = int(h.pool.max_children)

        def ready():
            master = daemon_pid(h.fpm_pid_file, h.fpm_conf)
            if master is None:
                return False
            kids = set(children(master))
            return len(kids) >= want and not (kids & old) and not any(alive(p) for p in old) and fpmctl.pong(h.socket)

        wait(ready, timeout, f"{name} FPM reload")
    return host_info(name, root)


def fpm_stop(name: str, root: str = DEFAULT_ROOT) -> bool:
    """Stop the FPM master (and its workers). False if it was not running."""
    h = load_host(name, root)
    with locked(Path(h.root)):
        ok = stop(h.fpm_pid_file, h.fpm_conf, with_descendants=True)
        Path(h.socket).unlink(missing_ok=True)
    return ok


def fpm_restart(name: str, root: str = DEFAULT_ROOT, **pool_overrides) -> LabHost:
    """Stop FPM, rewrite the pool with overrides, start it again.

    Overrides (kept for later restarts/up of this host until down):
      validate_timestamps=0|1, revalidate_freq=N, opcache_enable=0|1, max_children=N,
      process_control_timeout=N (seconds; 0: a reload kills the requests in flight),
      opcache_file_cache="/dir" (None to remove; created owned by www-data),
      directives={"php_admin_value[opcache.jit]": "off", ...} (raw pool lines),
      defaults=True to go back to up()'s defaults first.
    """
    h = load_host(name, root)
    with locked(Path(h.root)):
        h = _reloaded(h)
        pool = Pool() if pool_overrides.pop("defaults", False) else h.pool
        unknown = set(pool_overrides) - {f.name for f in dataclasses.fields(Pool)}
        if unknown:
            raise TypeError(f"unknown pool override(s): {', '.join(sorted(unknown))}")
        h = h.replace(pool=dataclasses.replace(pool, **pool_overrides))
        h.save()
        stop(h.fpm_pid_file, h.fpm_conf, with_descendants=True)
        start_fpm(h)
    return host_info(name, root)


def stop_sshd(name: str, root: str = DEFAULT_ROOT, kill_sessions: bool = True) -> bool:
    """Stop the host's sshd (new connections get 'connection refused').

    kill_sessions also ends established SSH sessions of that host. False if not running.
    """
    h = load_host(name, root)
    with locked(Path(h.root)):
        stopped = stop(h.sshd_pid_file, h.sshd_config, with_descendants=kill_sessions)
        if kill_sessions:
            # A connection accepted while the master was dying has a child the master's process
            # tree no longer shows: find what is left by the port its connection is on.
            left = [pid for pid in on_port(h.ssh_port) if pid != os.getpid()]
            if left:
                kill_wait(left)
        return stopped


def start_sshd(name: str, root: str = DEFAULT_ROOT) -> LabHost:
    """Start the host's sshd again if it is not running."""
    h = load_host(name, root)
    with locked(Path(h.root)):
        if not daemon_pid(h.sshd_pid_file, h.sshd_config):
            _start_sshd(h)
    return host_info(name, root)


def freeze_sshd(name: str, root: str = DEFAULT_ROOT) -> int:
    """SIGSTOP the host's sshd and its sessions: a host that hangs instead of refusing.

    The kernel still accepts TCP connections (backlog) but no SSH banner ever comes,
    like a dead host behind a load balancer. Undo with thaw_sshd(). Returns the master pid.
    """
    h = load_host(name, root)
    pid = daemon_pid(h.sshd_pid_file, h.sshd_config)
    if pid is None:
        raise LabError(f"{name}: sshd is not running")
    signal_tree(pid, signal.SIGSTOP)
    return pid


def thaw_sshd(name: str, root: str = DEFAULT_ROOT) -> int | None:
    """SIGCONT the host's sshd and its sessions (undo freeze_sshd)."""
    h = load_host(name, root)
    pid = daemon_pid(h.sshd_pid_file, h.sshd_config)
    if pid is None:
        return None
    signal_tree(pid, signal.SIGCONT)
    return pid


def sshd_sftp(name: str, enabled: bool, root: str = DEFAULT_ROOT) -> LabHost:
    """Restart the host's sshd with (True) or without (False: a hardened server) its SFTP
    subsystem; kept until lab.down. Ends the host's open SSH sessions."""
    h = load_host(name, root)
    with locked(Path(h.root)):
        h = _reloaded(h).replace(sftp=bool(enabled))
        h.save()
        stop(h.sshd_pid_file, h.sshd_config, with_descendants=True)
        _start_sshd(h)
    return host_info(name, root)


def nginx_reconfigure(name: str, realpath_root: bool, root: str = DEFAULT_ROOT, timeout: float = START_TIMEOUT) -> LabHost:
    """Rewrite the host's nginx config with $realpath_root (True) or $document_root
    (False: the symlink fault) and reload nginx; waits for a new worker.
    Starts nginx if it was not running."""
    h = load_host(name, root)
    with locked(Path(h.root)):
        h = _reloaded(h).replace(realpath_root=bool(realpath_root))
        h.save()
        if daemon_pid(h.nginx_pid_file, h.nginx_conf) is None:
            start_nginx(h)
        else:
            reload_nginx(h, timeout)
    return host_info(name, root)


def nginx_stop(name: str, root: str = DEFAULT_ROOT) -> bool:
    """Stop the host's nginx. False if it was not running."""
    h = load_host(name, root)
    with locked(Path(h.root)):
        return stop(h.nginx_pid_file, h.nginx_conf, with_descendants=True)


def set_latency(delay_ms: float, root: str = DEFAULT_ROOT, names: list[str] | None = None) -> list[dict]:
    """Change the one-way delay of running latency relays (all hosts of root, or names).

    Hosts started without a relay are skipped (start them with up(latency_ms=...)). The delay
    is kept in lab.json, so a later up() without latency_ms keeps it. Returns the relays' stats.
    """
    rootp = Path(root).resolve()
    out = []
    with locked(rootp):
        for i in existing_indexes(rootp):
            h = stored(rootp, i)
            if not h or (names and h.name not in names):
                continue
            if not daemon_pid(h.latency_pid_file, h.latency_ctl):
                continue
            h.replace(latency_ms=float(delay_ms)).save()
            out.append(dict(latency.set_delay(h.latency_ctl, delay_ms), host=h.name))
    return out
