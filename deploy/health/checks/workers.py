"""Workers and scheduler: every long-running worker of the app (queue:work, horizon,
schedule:work; or the inventory's workers.processes pattern) runs the live release and started
after it went live (deploy/remote/workers.sh: each process's /proc/PID/cwd and start time).

Remedy `workers`: the host's restart (inventory workers.restart, else artisan queue:restart),
then the proof again within workers.timeout. A deploy's own healing leaves the workers to the
pipeline (its workers step); `fab heal` restarts them.
"""

from datetime import datetime, timezone

from ... import workers as workers_mod
from .. import facts
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("workers", "workers and scheduler", order=120, during_deploy=False)


def _what(p):
    cmd = p.get("cmd") or ""
    for word in ("queue:work", "horizon", "schedule:work"):
        if word in cmd:
            return word
    return cmd[:60]


def check(ev, host, pipeline, release):
    items = Items("workers")
    w = ev.get("workers") or {}
    live = facts.live(ev)
    if not ev["layout"].get("real"):
        items.add(WARN, "not checked: no live release", "deploy a release")
        return items.finding("")
    if not w.get("checked") or w.get("rc") in (None, 2):
        items.add(WARN, "not checked: workers.sh could not run" + (f" ({w['error']})" if w.get("error") else ""),
                  "run fab health again")
        return items.finding("")
    procs = w["processes"]
    items.details.update({"switched": w.get("switched"), "as": w.get("as"),
                          "processes": [{k: p.get(k) for k in ("status", "pid", "started", "release", "cmd")} for p in procs]})
    when = (datetime.fromtimestamp(w["switched"], timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
            if w.get("switched") else "?")
    restart = (f"tool: {workers_mod.describe_restart(host)} in the live release, then proves every worker runs it"
               f" (within {host.workers.timeout}s); human: restart them with the process manager (e.g. supervisorctl"
               " restart), or set workers.restart in the inventory")
    bad = [p for p in procs if p["status"] in ("old", "stale")]
    unknown = [p for p in procs if p["status"] == "unknown"]
    if bad:
        ex = "; ".join(f"pid {p['pid']} {_what(p)}: {p.get('why') or p['status']}" for p in bad[:3])
        text = (f"{len(bad)} of {len(procs)} worker process(es) do not run the live release {live}"
                f" (live since {when}): {ex}")
        if host.workers.restart or any(_what(p) == "queue:work" for p in bad):
            items.add(FAIL, text, restart, "workers")
        else:
            # artisan queue:restart only reaches queue:work: trying it would only wait for a proof
            # that cannot come.
            items.add(FAIL, text, "human: restart them with the process manager (e.g. supervisorctl restart), and set"
                                  " workers.restart in the inventory so fab heal can (artisan queue:restart does not"
                                  " reach schedule:work or horizon)")
    if unknown:
        items.add(WARN, f"{len(unknown)} worker process(es) whose release cannot be told as {w.get('as')}"
                        f" ({unknown[0].get('why')})",
                  "human: run fab health as root, or give the deploy user sudo rights (workers.sh reads /proc/PID/cwd)")
    if not procs and facts.workers_expected(host, pipeline):
        items.add(FAIL, "no worker process of the app runs, but the host has workers (the inventory's workers: or the"
                        " pipeline's workers step says so)", restart, "workers")
    if not procs:
        return items.finding("no queue worker or scheduler of the app runs, and none is expected (no workers: in the"
                             " inventory, no workers step in the pipeline)")
    kinds = {}
    for p in procs:
        kinds[_what(p)] = kinds.get(_what(p), 0) + 1
    return items.finding(f"{len(procs)} process(es) ({', '.join(f'{k} x{n}' for k, n in kinds.items())}) run the live"
                         f" release {live}, started after it went live ({when})")
