"""The live release's .env sets the keys the app needs (pipeline `health: {required_env: [...]}`,
default APP_KEY). Only the key names are read out: values never leave the host. The tool never
writes .env (shared data): no remedy."""

from .. import facts
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("env", ".env keys", order=90)


def _fix(key, path):
    if key == "APP_KEY":
        return (f"human: set APP_KEY in {path} to the key the app's other hosts use (a new one logs every user out"
                " and cannot decrypt what the old one encrypted; only for a new app: php artisan key:generate --show),"
                f" then fab heal (it rebuilds the config cache from .env)")
    return f"human: set {key} in {path}, then fab heal (it rebuilds the config cache from .env)"


def check(ev, host, pipeline, release):
    items = Items("env")
    keys = facts.required_env(pipeline)
    env = ev.get("env") or {}
    rel = ev["layout"].get("real")
    if not rel:
        items.add(WARN, "not checked: no live release", "deploy a release")
        return items.finding("")
    if not keys:
        return items.finding("no keys required (the pipeline's health.required_env is empty)")
    path = env.get("path") or f"{rel}/.env"
    state = env.get("file")
    if state is None:
        items.add(WARN, "not checked: the host did not report the .env", "run fab health again")
    elif state == "missing":
        items.add(WARN, f"no .env in the live release ({path}): {', '.join(keys)} not checked; Laravel then reads"
                        " only the process environment (e.g. the pool's env[...] settings)",
                  "human: put the app's .env in place (releases: shared/.env, linked into every release by the shared"
                  " step); nothing to do when the environment sets the keys")
    elif state == "dangling":
        items.add(FAIL, f"{rel}/.env points to {path}, which does not exist: the app runs without its settings",
                  f"human: restore {path} (the tool never recreates shared data)")
    elif state == "unreadable":
        items.add(WARN, f"cannot read {path} as {ev['meta'].get('user') or host.user} (needs root or sudo)",
                  "human: let the deploy user read it, or give it sudo rights")
    else:
        for key in keys:
            seen = env["keys"].get(key)
            if seen is None:
                items.add(FAIL, f"{key} is missing from {path}", _fix(key, path))
            elif seen != "set":
                items.add(FAIL, f"{key} is empty in {path}", _fix(key, path))
    items.details.update({"file": path, "state": state, "keys": env.get("keys", {})})
    return items.finding(f"{', '.join(keys)} set in {path} (values not read out)")
