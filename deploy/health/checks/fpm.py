"""PHP-FPM: the master that holds the inventory's socket runs, has workers, and a worker answers."""

from .. import facts
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("fpm", "PHP-FPM", order=20, needs_live=False)


def check(ev, host, pipeline, release):
    items = Items("fpm")
    masters = ev["fpm"]["masters"]
    mine = [m for m in masters if m["owns_socket"] == "yes"]
    unknown = [m for m in masters if m["owns_socket"] == "unknown"]
    total = max(ev["fpm"].get("all_masters") or 0, len(masters))
    master = mine[0] if mine else (unknown[0] if total == 1 and unknown else None)
    ping = ev.get("ping")
    err = facts.probe_error(ev)
    if ping is None and ev.get("status") is None:
        why = "the tool's programs could not be installed" if ev.get("upload_failed") else "deploy path missing"
        items.add(WARN, f"pool not asked: {why}", "run a deploy first, or check the deploy path in the inventory")
    start = "start PHP-FPM (e.g. systemctl start php8.2-fpm) and check that its pool `listen` is " + host.fpm.socket
    if not mine and not unknown:
        if total:
            items.add(FAIL, f"no PHP-FPM master listens on {host.fpm.socket} ({total} other master(s) run)",
                      "human: " + start + " (or fix fpm.socket in the inventory)")
        else:
            items.add(FAIL, "no PHP-FPM master process is running", "human: " + start)
    elif master and master["workers"] == 0:
        items.add(FAIL, f"master pid {master['pid']} has no workers", "tool: reload FPM (inventory fpm.reload)", "fpm_reload")
    if err:
        kind, msg = err
        if kind in ("timeout", "closed", "io", "protocol"):
            items.add(FAIL, f"pool does not answer: {msg}", "tool: reload FPM (inventory fpm.reload), then wait for the pool",
                      "fpm_reload" if (mine or unknown) else None)
        elif kind == "script_unreadable":
            items.add(FAIL, f"pool answers but cannot read the probe: {msg}",
                      f"human: the pool user must traverse {host.deploy_path} and read {host.deploy_path}/.deploy/probe;"
                      " systemd PrivateTmp/chroot hide other dirs")
        elif kind == "probe_write":
            items.add(FAIL, f"the probe cannot be written: {msg}",
                      f"human: the deploy user ({ev['meta'].get('user') or host.user}) must be able to write"
                      f" {host.deploy_path}/.deploy/probe")
        elif kind in ("no_socket", "refused", "socket_permission", "connect"):
            pass  # the socket check reports these
        else:
            items.add(FAIL, f"pool probe failed: {msg}", "human: see the FPM error log")
    if master:
        items.details.update(master)
    elapsed = ((ping or {}).get("data") or {}).get("elapsed_ms")
    desc = (f"master pid {master['pid']} ({master['args']}, up {master['uptime']}s, {master['workers']} workers)"
            if master else f"{total} php-fpm master(s) running (which one owns the socket needs root to tell)")
    return items.finding(f"{desc}; pool answers ping" + (f" in {elapsed} ms" if elapsed is not None else ""))
