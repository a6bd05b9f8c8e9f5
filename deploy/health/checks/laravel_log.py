"""Laravel log: no new errors since the last deploy, rollback or heal, in storage/logs/laravel*.log
(the newest) and in the pool's PHP error_log. Permission errors while the writable dirs are not
writable fail with the ACL repair."""

from .. import facts, logs
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("laravel_log", "Laravel log", order=70)


def check(ev, host, pipeline, release):
    items = Items("laravel_log")
    since = logs.last_change(ev["history"])
    entries = [("laravel.log", e) for e in logs.laravel_entries(ev["log"]["lines"])]
    pool = facts.pool_data(ev) or {}
    entries += [("php error log", e) for e in logs.php_entries(pool.get("error_log_tail"))]
    if since is not None:
        entries = [(src, e) for src, e in entries if e[0] is not None and e[0] >= since]
        window = "since " + since.strftime("%Y-%m-%d %H:%M:%SZ")
    else:
        window = f"in the last {logs.LOG_TAIL_LINES} lines"
    errors = [(src, e) for src, e in entries if e[1] in logs.ERROR_LEVELS]
    perm = [(src, e) for src, e in entries if logs.is_permission_error(e[2])]
    items.details.update({"since": since.isoformat() if since else None, "errors": len(errors), "permission": len(perm),
                          "file": ev["log"]["file"]})
    if perm:
        src, last = perm[-1]
        text = f"{len(perm)} permission error(s) {window} ({src}, last: {last[2][:160]})"
        if facts.writable_now(ev) is False:
            items.add(FAIL, text, f"tool: ACL repair of the writable dirs for {host.web_user}", "acl")
        else:
            items.add(WARN, text + "; the writable dirs are writable now",
                      "nothing, if the ownership check passes; the window restarts at the next deploy/heal")
    rest = [x for x in errors if x not in perm]
    if rest:
        src, last = rest[-1]
        items.add(WARN, f"{len(rest)} error(s) {window} ({src}, last: {last[2][:160]})",
                  f"human: read {ev['log']['file'] or 'storage/logs/laravel.log'} and the pool's error log")
    where = ev["log"]["file"] or "no laravel.log"
    return items.finding(f"no errors {window} ({where}" + (", php error log" if pool.get("error_log_tail") is not None else "") + ")")
