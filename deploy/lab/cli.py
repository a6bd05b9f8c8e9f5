"""`python -m deploy.lab up|down|status`: the lab's own command line (more options than `fab lab.up`)."""

from __future__ import annotations

import argparse
import sys

from .lifecycle import down, hosts, up
from .messages import LabError
from .model import DEFAULT_INVENTORY, DEFAULT_ROOT
from .packages import ensure_packages
from .users import WEB_USER

DESCRIPTION = "Real local sandbox hosts on loopback (sshd, PHP-FPM, nginx per host), for trying deploys for real."


def _status_line(h) -> str:
    line = (f"{h.name}\tssh {h.ssh_port} pid {h.pids.sshd}\tfpm pid {h.pids.fpm}\t"
            f"http {h.http_port} pid {h.pids.nginx}\trealpath_root={h.realpath_root}\t"
            f"validate_timestamps={h.pool.validate_timestamps}")
    if h.stack:
        s = h.stack
        line += (f"\tsupervisord pid {s.supervisor.pid}\tdb {s.db.port} pid {s.db.pid}"
                 f"\tredis {s.redis.port} pid {s.redis.pid}")
    if h.proxy_port:
        line += f"\tlatency relay {h.proxy_port} pid {h.pids.latency} {h.latency_ms:g} ms"
    return line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.lab", description=DESCRIPTION)
    sub = p.add_subparsers(dest="cmd", required=True)
    pu = sub.add_parser("up", help="start lab hosts and write the inventory")
    pu.add_argument("n", nargs="?", type=int, default=3)
    pu.add_argument("--root", default=DEFAULT_ROOT)
    pu.add_argument("--inventory", default=DEFAULT_INVENTORY)
    pu.add_argument("--ssh-base", type=int, default=2200)
    pu.add_argument("--http-base", type=int, default=8000)
    pu.add_argument("--validate-timestamps", type=int, default=0)
    pu.add_argument("--document-root", action="store_true", help="nginx passes $document_root (the symlink fault)")
    pu.add_argument("--ensure-packages", action="store_true")
    pu.add_argument("--stack", action="store_true", help="also the app stack: MariaDB, Redis, supervisord per host")
    pu.add_argument("--db-port", type=int, default=None, help="the stack's MariaDB port (default 3307)")
    pu.add_argument("--redis-port", type=int, default=None, help="the stack's Redis port (default 6380)")
    pu.add_argument("--workers-user", default=WEB_USER, help="user of the queue workers and the scheduler")
    pu.add_argument("--latency", type=float, default=0, metavar="MS",
                    help="delay every SSH byte MS each way (a relay in front of sshd; round trip 2 x MS)")
    pu.add_argument("--proxy-base", type=int, default=None, help="relay ports: BASE+i (default: ssh-base+1000)")
    pu.add_argument("--light", action="store_true", help="one FPM worker, fewer nginx connections (big fleets)")
    pd = sub.add_parser("down", help="stop all lab daemons under root")
    pd.add_argument("--root", default=DEFAULT_ROOT)
    pd.add_argument("--purge", action="store_true")
    ps = sub.add_parser("status", help="show lab hosts and their pids")
    ps.add_argument("--root", default=DEFAULT_ROOT)
    a = p.parse_args(argv)
    try:
        if a.cmd == "up":
            if a.ensure_packages:
                ensure_packages()
            hs = up(a.n, a.root, a.inventory, a.ssh_base, a.http_base, a.validate_timestamps, not a.document_root,
                    stack=a.stack, db_port=a.db_port, redis_port=a.redis_port, workers_user=a.workers_user,
                    latency_ms=a.latency, proxy_base=a.proxy_base, light=a.light)
            for h in hs:
                via = f" (relay, {h.latency_ms:g} ms each way, sshd {h.ssh_port})" if h.proxy_port else ""
                print(f"{h.name}\tssh {h.port}{via}\thttp {h.http_port}\t{h.deploy_path}")
        elif a.cmd == "down":
            down(a.root, a.purge)
        else:
            for h in hosts(a.root):
                print(_status_line(h))
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return 0
