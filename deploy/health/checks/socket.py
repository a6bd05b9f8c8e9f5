"""FastCGI socket: it exists, something listens on it, the deploy user and nginx's workers may connect."""

from .. import facts
from ..model import FAIL, Items
from . import Check

CHECK = Check("socket", "FastCGI socket", order=50, needs_live=False)


def check(ev, host, pipeline, release):
    items = Items("socket")
    sock = host.fpm.socket
    info = ev["fpm"]["socket"] or {"state": "missing"}
    err = facts.probe_error(ev)
    if sock.startswith("tcp://") or ":" in sock and not sock.startswith("/"):
        items.details["tcp"] = True
    elif info["state"] == "missing":
        items.add(FAIL, f"no socket at {sock}",
                  f"human: FPM is not running or its pool `listen` differs from fpm.socket ({sock}) in the inventory")
    elif info["state"] == "notsocket":
        items.add(FAIL, f"{sock} exists but is not a socket", "human: remove it and restart PHP-FPM")
    elif ev["fpm"]["listen_inode"] is None:
        items.add(FAIL, f"{sock} exists but nothing listens on it (left by a dead FPM)", "human: restart PHP-FPM")
    if err and err[0] == "refused":
        items.add(FAIL, f"connection refused on {sock}", "human: restart PHP-FPM")
    elif err and err[0] == "socket_permission":
        items.add(FAIL, f"the deploy user {host.user} may not connect to {sock} ({info.get('owner')}:{info.get('group')} {info.get('mode')})",
                  f"human: make {host.user} a member of the socket's group, or set listen.group/listen.mode in the pool")
    ngx = ev["nginx"]
    if ngx.get("worker_socket") == "denied":
        wu = (ngx.get("master") or {}).get("worker_user")
        items.add(FAIL, f"nginx workers run as {wu} and cannot connect to {sock} ({info.get('owner')}:{info.get('group')}"
                        f" {info.get('mode')}): nginx answers 502",
                  f"human: in the pool set listen.owner/listen.group = {wu} and listen.mode = 0660, or run nginx with"
                  f" `user {host.web_user};`")
    if info["state"] == "ok":
        items.details.update(info)
    desc = f"{sock} ({info.get('owner')}:{info.get('group')} {info.get('mode')}) accepts connections"
    if ngx.get("worker_socket") == "ok":
        desc += f"; nginx worker user {(ngx.get('master') or {}).get('worker_user')} may connect"
    return items.finding(desc)
