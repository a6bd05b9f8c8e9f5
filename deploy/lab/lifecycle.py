"""Start and stop a whole lab: `up()` (idempotent) and `down()`, and reading a host's live state."""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import latency, services
from .daemons import pids, start_fpm, start_nginx, start_proxy, start_sshd, stop_host, stray_masters
from .files import locked, mkdir
from .inventory import write_inventory
from .keys import ensure_client_key, ensure_host_key, write_known_hosts
from .messages import LabError, log
from .model import DEFAULT_INVENTORY, DEFAULT_ROOT, LabHost, Pool, existing_indexes, layout, load_host, stored
from .processes import bind_retry, descendants, kill_wait
from .users import WEB_USER, require_root

# Hosts whose daemons start at once in up(): starting is mostly waiting for ports and pings.
START_WORKERS = 8


def live(h: LabHost) -> LabHost:
    """h with what runs now: its pids (workers included) and its stack."""
    return h.replace(pids=pids(h, workers=True), stack=services.info(Path(h.root), h))


def host_info(name: str, root: str = DEFAULT_ROOT) -> LabHost:
    """One lab host: paths, ports, settings, and (pids, stack) what runs now."""
    return live(load_host(name, root))


def hosts(root: str = DEFAULT_ROOT) -> list[LabHost]:
    """host_info() of every lab host that exists under root."""
    rootp = Path(root).resolve()
    return [live(h) for h in (stored(rootp, i) for i in existing_indexes(rootp)) if h]


def up(
    n: int = 3,
    root: str = DEFAULT_ROOT,
    inventory: str | None = DEFAULT_INVENTORY,
    ssh_base: int = 2200,
    http_base: int = 8000,
    validate_timestamps: int = 0,
    realpath_root: bool = True,
    stack: bool = False,
    db_port: int | None = None,
    redis_port: int | None = None,
    workers_user: str = WEB_USER,
    latency_ms: float = 0,
    proxy_base: int | None = None,
    light: bool = False,
) -> list[LabHost]:
    """Start lab1..lab{n} under root (idempotent) and write the inventory.

    A daemon that is already running is left alone; only dead ones are (re)started.
    A host whose daemons run on other ports than asked is an error (run down() first).
    With stack, also the app stack (services.py): one MariaDB on db_port and one Redis on
    redis_port for the lab, a supervisord per host running the queue workers and the
    scheduler as workers_user, and each host's first shared/.env.
    latency_ms > 0 puts a delaying relay (latency.py, latency_ms each way) in front of each
    host's sshd on port proxy_base+i (default ssh_base+1000+i); the inventory and known_hosts
    then name the relay's port. A running relay gets the asked delay. light: one FPM worker
    and fewer nginx connections per host (for fleets of 100). Hosts start in parallel.
    Returns one LabHost per host listed in the inventory (1..n plus any other running host),
    with its pids and stack.
    """
    require_root()
    if n < 1:
        raise ValueError("n must be >= 1")
    if latency_ms < 0:
        raise ValueError("latency_ms must be >= 0")
    if proxy_base is None:
        proxy_base = ssh_base + 1000
    rootp = Path(root).resolve()
    t0 = time.monotonic()
    with locked(rootp):
        mkdir(rootp, 0o755)
        (rootp / ".lab-root").touch()
        ensure_client_key(rootp)

        indexes = sorted(set(range(1, n + 1)) | {i for i in existing_indexes(rootp) if pids(layout(rootp, i)).any()})
        todo = []
        for i in indexes:
            want = LabHost(root=str(rootp), index=i, ssh_port=ssh_base + i, http_port=http_base + i,
                           realpath_root=bool(realpath_root),
                           pool=Pool(validate_timestamps=int(validate_timestamps), **({"max_children": 1} if light else {})),
                           light=bool(light), latency_ms=float(latency_ms),
                           proxy_port=proxy_base + i if latency_ms > 0 else None)
            old = stored(rootp, i)
            running = pids(layout(rootp, i))
            if old and running.any():
                if i <= n and (old.ssh_port, old.http_port) != (want.ssh_port, want.http_port):
                    raise LabError(
                        f"lab{i} is running on ssh {old.ssh_port} / http {old.http_port}, "
                        f"not {want.ssh_port} / {want.http_port}: run down(root={root!r}) first"
                    )
                h = old  # keep the running host's settings (fault injections included)
                if i <= n and latency_ms > 0:
                    if running.latency and old.proxy_port != want.proxy_port:
                        raise LabError(f"lab{i}'s latency relay runs on port {old.proxy_port}, "
                                       f"not {want.proxy_port}: run down(root={root!r}) first")
                    h = old.replace(proxy_port=want.proxy_port, latency_ms=want.latency_ms)
            else:
                h = want
            mkdir(Path(h.dir), 0o755)
            mkdir(Path(h.deploy_path), 0o755)
            ensure_host_key(h)
            h.save()
            todo.append((h, running))

        def start(item):
            h, running = item
            started = []
            if not running.sshd:
                bind_retry(start_sshd, h, h.sshd_log)
                started.append("sshd")
            if not running.fpm:
                start_fpm(h)
                started.append("fpm")
            if not running.nginx:
                bind_retry(start_nginx, h, h.nginx_error_log)
                started.append("nginx")
            if h.proxy_port and not running.latency:
                bind_retry(start_proxy, h, h.start_log)
                started.append(f"latency relay ({h.latency_ms:g} ms each way)")
            elif running.latency:
                latency.set_delay(h.latency_ctl, h.latency_ms)
            if started:
                log(f"{h.name}: started {', '.join(started)} (ssh {h.port}, http {h.http_port})")
            return h

        with ThreadPoolExecutor(max_workers=max(1, min(START_WORKERS, len(todo)))) as pool:
            started = list(pool.map(start, todo))

        write_known_hosts(rootp, started)
        if stack:
            services.up(rootp, started, db_port or services.DB_PORT, redis_port or services.REDIS_PORT, workers_user)
        started = [h.replace(stack=services.info(rootp, h)) for h in started]
        if inventory:
            path = write_inventory(inventory, rootp, started)
            log(f"inventory {path}")
    started = [h.replace(pids=pids(h, workers=True)) for h in started]
    log(f"up: {len(started)} host(s) ready in {time.monotonic() - t0:.2f}s")
    return started


def down(root: str = DEFAULT_ROOT, purge: bool = False) -> list[str]:
    """Stop every nginx, php-fpm and sshd master of the lab under root, and its app stack
    (every host's supervisord and its workers, Redis, the database) if it has one.

    Stops by pid file (checked against the process's command line), then also any
    lab master of this root found in /proc whose pid file was lost. SSH sessions
    (children of a lab sshd) are ended too. With purge, removes the root directory
    (only if it is a lab root, i.e. holds the .lab-root marker). Returns what was stopped.
    """
    require_root()
    rootp = Path(root).resolve()
    if not rootp.exists():
        return []
    stopped = []
    with locked(rootp):
        every = [layout(rootp, i) for i in existing_indexes(rootp)]
        stopped += services.down(rootp, every)
        for h in every:
            stopped += [f"{h.name}:{what}" for what in stop_host(h)]
        stray = stray_masters(rootp) + services.stray_pids(rootp)
        if stray:
            kill_wait(stray + [d for p in stray for d in descendants(p)])
            stopped += [f"pid {p}" for p in stray]
    if purge:
        if not (rootp / ".lab-root").exists():
            raise LabError(f"refusing to purge {rootp}: no .lab-root marker (not a lab root)")
        if rootp == Path("/") or len(rootp.parts) < 2:
            raise LabError(f"refusing to purge {rootp}")
        shutil.rmtree(rootp)
    if stopped:
        log(f"down: stopped {', '.join(stopped)}" + (f"; removed {rootp}" if purge else ""))
    return stopped
