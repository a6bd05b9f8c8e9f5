"""The database and Redis, reached from the live release as the app reaches them: the app is
booted in php-cli (deploy/remote/appcheck.php) and opens its default database connection and
every Redis connection its config uses (cache, queue, session, broadcasting). Errors are shown
with their message, secrets masked. The tool never restarts or changes these: no remedy."""

from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("services", "database and Redis", order=100)


def app_report(ev):
    """(appcheck's report, why there is none): the report only when the app booted."""
    app = ev.get("app") or {}
    if not ev["layout"].get("real"):
        return None, "no live release"
    if not app.get("checked"):
        return None, "the app was not started (no artisan in the live release, or the tool's programs are missing)"
    data = app.get("data")
    if data is None:
        return None, f"the app check printed no report (exit {app.get('rc')})" + (f": {app['noise'][-200:]}" if app.get("noise") else "")
    if not data.get("app"):
        return None, f"the app does not boot in php-cli: {data.get('error')}"
    return data, None


def check(ev, host, pipeline, release):
    items = Items("services")
    data, why = app_report(ev)
    if data is None:
        items.add(WARN, f"not checked: {why}", "see the running code check; run php artisan in the live release")
        return items.finding("")
    env = (ev.get("env") or {}).get("path") or "the live .env"
    db = data.get("database") or {}
    items.details.update({"database": db, "redis": data.get("redis") or []})
    if not db.get("ok"):
        items.add(FAIL, f"the database (connection '{db.get('connection')}', {db.get('driver')}) is not reachable from"
                        f" the live release: {db.get('error')}",
                  f"human: is the database server up and reachable from {host.name}? Check DB_HOST, DB_PORT,"
                  f" DB_DATABASE, DB_USERNAME, DB_PASSWORD in {env} (then fab heal rebuilds the config cache)")
    redis_ok = []
    for r in data.get("redis") or []:
        users = ", ".join(r.get("used_by") or [])
        if r.get("ok"):
            redis_ok.append(f"'{r['connection']}' ({users})")
        else:
            items.add(FAIL, f"Redis connection '{r.get('connection')}' (the app's {users}) is not reachable: {r.get('error')}",
                      f"human: is Redis up and reachable from {host.name}? Check REDIS_HOST, REDIS_PORT, REDIS_PASSWORD"
                      f" in {env}; queued jobs and cached data wait until it is back")
    db_text = (f"database '{db.get('connection')}' ({db.get('driver')}" + (", in memory" if db.get("memory") else "")
               + f") answers in {db.get('elapsed_ms')} ms")
    redis_text = (f"Redis {', '.join(redis_ok)} answer{'s' if len(redis_ok) == 1 else ''} PING" if redis_ok
                  else "the app's config uses no Redis")
    return items.finding(f"{db_text}; {redis_text} (from the live release, as the app connects)")
