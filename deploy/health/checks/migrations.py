"""Pending migrations: `migrate:status` in the live release (through the app's console kernel,
by deploy/remote/appcheck.php, only when the database answered). A migration the live code
expects but the database lacks fails; the tool never migrates outside a deploy: no remedy."""

from ..model import FAIL, WARN, Items
from . import Check
from .services import app_report

CHECK = Check("migrations", "migrations", order=110)


def check(ev, host, pipeline, release):
    items = Items("migrations")
    data, why = app_report(ev)
    if data is None:
        items.add(WARN, f"not checked: {why}", "see the database and Redis check")
        return items.finding("")
    db = data.get("database") or {}
    if not db.get("ok"):
        items.add(WARN, "not checked: the database is not reachable (see database and Redis)", "fix the database first")
        return items.finding("")
    if db.get("memory"):
        return items.finding("the database is sqlite in memory: nothing persists between processes, no migration can"
                             " be pending")
    mig = ev.get("migrations") or {"state": "error", "error": (data.get("migrations") or {}).get("error") or "did not run"}
    rel = ev["layout"].get("real")
    fix = (f"human: php artisan migrate --force in {rel} on ONE host (the fleet's primary), or deploy with a pipeline"
           " that migrates; the tool never migrates outside a deploy")
    items.details.update({k: mig.get(k) for k in ("state", "ran", "pending", "batch")})
    state = mig.get("state")
    if state == "no_table":
        items.add(FAIL, f"the database (connection '{db.get('connection')}') has no migrations table: no migration"
                        " ever ran on it", fix)
    elif state == "table" and mig["pending"]:
        n = len(mig["pending"])
        items.add(FAIL, f"{n} pending migration{'s' if n > 1 else ''} (Ran? No): {', '.join(mig['pending'][:5])}"
                        + (f" and {n - 5} more" if n > 5 else ""), fix)
    elif state == "none":
        return items.finding("the app has no migrations")
    elif state != "table":
        items.add(WARN, f"migrate:status failed: {mig.get('error') or (data.get('migrations') or {}).get('error')}",
                  f"human: run php artisan migrate:status in {rel}")
    return items.finding(f"all {len(mig.get('ran') or [])} migrations ran" +
                         (f" (last batch {mig['batch']})" if mig.get("batch") else ""))
