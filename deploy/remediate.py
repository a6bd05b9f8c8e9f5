"""Remediation: run the checks, apply the fix mapped to each failed check, verify again; bounded.

The fixes are the ones that really work (docs/why.md), never the incident report's.
Where a pipeline step does the same thing, the fix is that step's own plan, for the live
release (StepContext(host, pipeline, live id); in place the deploy path), with the pipeline's
settings for it or, when it has no such step, the step's defaults:

  acl            ACLs on the writable dirs only (storage, bootstrap/cache: their REAL paths, as
                 the evidence found them, so `setfacl -R` also recurses into a symlinked
                 shared/storage): setfacl -R -m u:WEB:rwX,d:u:WEB:rwX, plus owner-write on the
                 web user's own files there. Never `chown -R` of the code. (Not the ownership
                 step's plan: that one works on a new release's paths, this one repairs what
                 the checks found, wherever the links lead.)
  artisan        the artisan step's plan: the pipeline's cache commands (config:cache,
                 route:cache, view:cache, event:cache) one by one as the deploy user, each exit
                 code checked (never `optimize`); followed by an OPCache reset, because cached
                 config and routes are loaded with `require`, through OPCache.
  opcache_reset  the opcache_reset step's plan (inside the pool: fpmctl.php reset over its
                 FastCGI socket, proven by its restart counters), plus clearing an
                 opcache.file_cache the pool reports. Never `php -r opcache_reset()`.
  fpm_reload     the fpm_reload step's plan: the inventory's fpm.reload, then fpmctl wait (the
                 step's `wait`).
  workers        deploy/workers.py: the host's workers.restart (else artisan queue:restart) in
                 the live release, then workers.sh until every worker runs it (workers.timeout).

Both layouts (releases, in place) are handled: the evidence names the live tree and its
writable dirs (health.gather), and every plan here works on those paths.

A remedy that did not help is not repeated: the next attempt escalates (opcache_reset ->
fpm_reload) or stops. `heal()` never rolls back; the caller does when it returns ok=False.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

from . import health
from . import locks
from . import plan as planner
from . import pipeline as pipeline_mod
from . import workers
from .commands import PlannedStep
from .context import StepContext
from .errors import ConfigError
from .health import checks as health_checks
from .session import HostSession
from .steps import KINDS
from .transport import TransportError

ESCALATE = {"opcache_reset": "fpm_reload"}
HEALED, NOT_HEALED, LOCKED, UNREACHABLE, HEALTHY = "healed", "not healed", "locked", "unreachable", "healthy"


@dataclass
class HealResult:
    host: str
    ok: bool = False
    state: str = NOT_HEALED
    actions: list = field(default_factory=list)
    before: list = field(default_factory=list)     # findings before any fix
    findings: list = field(default_factory=list)   # findings after the last verification
    attempts: int = 0
    duration: float = 0.0
    message: str = ""
    phases: list = field(default_factory=list)     # [(name, seconds)]: where the time went

    def as_dict(self):
        return {"host": self.host, "ok": self.ok, "state": self.state, "attempts": self.attempts,
                "duration": round(self.duration, 3), "message": self.message, "actions": self.actions,
                "phases": [[n, round(t, 3)] for n, t in self.phases],
                "before": [f.as_dict() for f in self.before], "findings": [f.as_dict() for f in self.findings]}


def settled(findings, during_deploy=False):
    """The host serves its live release and nothing the tool can fix is still failing.

    Failures only a human can fix (nginx config, code writable by the web user) do not count:
    rolling back would not fix them either; they are reported. During a deploy, the checks a
    deploy's healing leaves to the pipeline (the workers) do not count either.
    """
    rc = next((f for f in findings if f.check == "running_code"), None)
    if rc is None or rc.status == health.FAIL:
        return False
    return not any(f.status == health.FAIL and f.remedy and _acted_on(f, during_deploy) for f in findings)


def _acted_on(finding, during_deploy):
    spec = health_checks.spec(finding.check)
    return not during_deploy or spec is None or spec.during_deploy


# ---------------------------------------------------------------------------- plans

def live_context(host, pipeline, ev):
    """The StepContext of the live release the evidence found (in place: the deploy path), with
    the pipeline's strategy set to the host's layout (without --pipeline the host decides)."""
    strategy = health.IN_PLACE if health.in_place(ev) else health.RELEASES
    if pipeline is None:
        pipeline = pipeline_mod.Pipeline(file="(none)", source="", keep_releases=2, steps=[], strategy=strategy)
    elif pipeline.strategy != strategy:
        pipeline = dataclasses.replace(pipeline, strategy=strategy)
    return StepContext(host, pipeline, health.live(ev) or "-")


def step_plan(kind, host, pipeline, ev, **override):
    """A pipeline step's own plan for the live release: the pipeline's settings for that kind,
    or the kind's defaults (with `override` on top)."""
    return KINDS[kind].plan({**health.step_settings(pipeline, kind), **override}, live_context(host, pipeline, ev))


def plan_remedy(key, host, pipeline, ev, release=None):
    """The commands of one remedy, as data. Returns (commands, None) or (None, why it cannot run)."""
    web, user = host.web_user, host.user
    rel = ev["layout"].get("real")     # the live release dir; in place the deploy path itself
    if key == "acl":
        ctx = StepContext(host, pipeline, release or "-")
        dirs = [p for p in ev["layout"].get("writable", {}).values() if p]
        if not rel or not dirs:
            return None, "no live release to repair"
        spec = f"u:{web}:rwX,d:u:{web}:rwX"
        if not host.is_root:
            spec += f",u:{user}:rwX,d:u:{user}:rwX"
        # Trailing slashes: the real dirs, so -R recurses even through a symlinked path.
        real = [d.rstrip("/") + "/" for d in dirs]
        holder = " {}" * len(real)
        return [
            ctx.cmd("mkdir -p" + holder, *real, sudo=True, desc="create missing writable dirs"),
            ctx.cmd("setfacl -R -m {}" + holder, spec, *real, sudo=True,
                    desc=f"let {web} write {', '.join(dirs)} (ACL, default ACL for new files)"),
            # A file the web user owns but may not write (mode u-w): ACLs do not apply to owners.
            ctx.cmd("find" + holder + " -xdev -user {} ! -perm -u+w -exec chmod u+w {{}} +", *real, web, sudo=True,
                    desc=f"owner-write on {web}'s own files"),
        ], None
    if key in ("artisan", "workers") and (not rel or not health.live(ev)):
        return None, "no live release"
    if key == "artisan":
        settings = health.step_settings(pipeline, "artisan")
        if not settings["commands"]:
            settings = dict(settings, commands=health.DEFAULT_ARTISAN)
        return KINDS["artisan"].plan(settings, live_context(host, pipeline, ev)), None
    if key == "opcache_reset":
        return _file_cache(host, pipeline, ev) + step_plan("opcache_reset", host, pipeline, ev), None
    if key == "fpm_reload":
        try:
            # A remedy that chose a reload reloads: not the pipeline's `when: needed` test again.
            commands = step_plan("fpm_reload", host, pipeline, ev, when="always")
        except ConfigError:
            return None, "the inventory has no fpm.reload command for this host"
        return _file_cache(host, pipeline, ev) + commands, None
    if key == "workers":
        ctx = live_context(host, pipeline, ev)
        seen = len((ev.get("workers") or {}).get("processes") or [])
        return [workers.restart_command(ctx), workers.proof_command(ctx, expect=max(1, seen))], None
    return None, f"unknown remedy {key}"


def _file_cache(host, pipeline, ev):
    """Clear an opcache.file_cache the pool reports that the inventory does not name (the
    opcache_reset step clears the inventory's fpm.file_cache itself): it survives resets and reloads."""
    d = ((health.status_data(ev) or {}).get("opcache") or {}).get("file_cache") or None
    if not d or d == host.fpm.file_cache or not d.startswith("/") or d.rstrip("/") in ("", "/tmp", "/var/tmp"):
        return []
    ctx = StepContext(host, pipeline, "-")
    return [ctx.cmd("if [ -d {} ]; then find {} -mindepth 1 -delete; fi", d, d, sudo=True,
                    desc="clear the OPCache file cache the pool reports (survives resets and reloads)")]


def choose(findings, applied, during_deploy=False):
    """Remedy keys for this attempt, in run order, with the reason of each.

    A key applied in an earlier attempt is not repeated; it escalates (opcache_reset ->
    fpm_reload) or is dropped. artisan brings acl before it (new cache files must stay writable)
    and an OPCache reset after it (cached config/routes go through OPCache). During a deploy,
    the checks a deploy leaves to its pipeline (the workers) are not acted on.
    """
    why = {}
    for f in findings:
        if f.status != health.FAIL or not _acted_on(f, during_deploy):
            continue
        for key in f.remedies:
            if key in applied:
                nxt = ESCALATE.get(key)
                if not nxt or nxt in applied:
                    continue
                why.setdefault(nxt, []).append(f"still failing after {key}: {f.title}: {f.evidence}")
            else:
                why.setdefault(key, []).append(f"{f.title}: {f.evidence}")
    if "artisan" in why:
        if "acl" not in why and "acl" not in applied:
            why["acl"] = ["the artisan rebuild writes into bootstrap/cache and storage: make sure the pool user may write them"]
        if "opcache_reset" not in why and "fpm_reload" not in why:
            why["opcache_reset"] = ["cached config and routes are loaded through OPCache: reset it after the rebuild"]
    if "fpm_reload" in why and "opcache_reset" in why:
        why["fpm_reload"] += why.pop("opcache_reset")   # a reload clears OPCache too
    keys = sorted(why, key=health.REMEDIES.index)
    return [(k, "; ".join(dict.fromkeys(why[k]))) for k in keys]


# ---------------------------------------------------------------------------- heal

def heal(runner, host, pipeline, release, emit, attempts=2, layout=None, during_deploy=True):
    """Heal one connected host: what a deploy does when verification fails after the switch.
    Returns (ok, actions); see heal_detailed for the findings too."""
    r = heal_detailed(runner, host, pipeline, release, emit, attempts, layout=layout, during_deploy=during_deploy)
    return r.ok, r.actions


def heal_detailed(runner, host, pipeline, release, emit, attempts=2, record=True, layout=None, during_deploy=False):
    """Checks -> fixes of the failed checks -> checks again, at most `attempts` rounds of fixes.

    release: the release that must be live (None: whatever is live). Every action is emitted
    as {"type": "action", "host", "action", "why"} before it runs and recorded with "ok".
    layout: health.layout_mode (None: the pipeline's strategy decides; "auto": the host).
    during_deploy: a deploy is healing (its pipeline restarts the workers itself: see
    health.checks.Check.during_deploy); `fab heal` is not.
    Raises TransportError when the host is lost (the caller decides what that means).
    """
    t0 = time.monotonic()
    result = HealResult(host.name)
    ev = health.gather(runner, host, pipeline, release, layout)
    findings = health.evaluate(ev, host, pipeline, release, layout)
    result.phases.append(("checks", time.monotonic() - t0))
    result.before = findings
    applied = []
    for attempt in range(1, max(1, attempts) + 1):
        if settled(findings, during_deploy):
            break
        chosen = choose(findings, applied, during_deploy)
        if not chosen:
            break
        result.attempts = attempt
        for key, why in chosen:
            action = _apply(runner, host, pipeline, ev, release, key, why, attempt, emit)
            result.actions.append(action)
            result.phases.append((key, action["duration"]))
            applied.append(key)
        t1 = time.monotonic()
        ev = health.gather(runner, host, pipeline, release, layout)
        findings = health.evaluate(ev, host, pipeline, release, layout)
        result.phases.append(("verify", time.monotonic() - t1))
    result.findings = findings
    result.ok = settled(findings, during_deploy)
    result.duration = time.monotonic() - t0
    if not result.actions:
        result.state = HEALTHY if result.ok else NOT_HEALED
    else:
        result.state = HEALED if result.ok else NOT_HEALED
    left = [f for f in findings if f.status == health.FAIL]
    for f in left:
        what = ("needs a human" if not f.remedy else "still failing" if _acted_on(f, during_deploy)
                else "left to the pipeline")
        emit({"type": "message", "host": host.name, "text": f"{what}: {f.title}: {f.evidence} — fix: {f.fix}"})
    if result.ok:
        result.message = (f"healed in {result.duration:.2f}s ({', '.join(a['action'] for a in result.actions)})"
                          if result.actions else "nothing to heal")
    else:
        result.message = ("not healed: " + "; ".join(f"{f.title}: {f.evidence}" for f in left[:3])
                          if left else "not healed")
    if record and result.actions:
        _record(runner, host, pipeline, ev, result)
    return result


def _apply(runner, host, pipeline, ev, release, key, why, attempt, emit):
    action = {"action": key, "why": why, "ok": False, "attempt": attempt, "commands": [], "duration": 0.0}
    emit({"type": "action", "host": host.name, "action": key, "why": why})
    commands, reason = plan_remedy(key, host, pipeline, ev, release)
    if commands is None:
        action["error"] = reason
        emit({"type": "message", "host": host.name, "text": f"cannot {key}: {reason}"})
        return action
    t0 = time.monotonic()
    res = runner.run([PlannedStep(f"heal: {key}", "heal", commands)])
    action["duration"] = round(time.monotonic() - t0, 3)
    action["commands"] = [c.command for r in res for c in r.commands]
    action["ok"] = bool(res) and res[0].status == "ok"
    if not action["ok"] and res and res[0].failed_command:
        c = res[0].failed_command
        action["error"] = (f"{c.command[:200]}: " + ("did not finish" if c.exit_code is None else f"exit {c.exit_code}")
                           + (f": {c.output.strip().splitlines()[-1][:200]}" if c.output.strip() else ""))
    return action


def _record(runner, host, pipeline, ev, result):
    """One history line per heal that changed something (the Laravel log check counts from it)."""
    ctx = StepContext(host, pipeline, "-")
    live = health.live(ev)
    record = json.dumps({"time": "__NOW__", "action": "heal", "release": live,
                         "state": HEALED if result.ok else NOT_HEALED,
                         "actions": [a["action"] for a in result.actions], "by": planner.Operator.here().token})
    cmd = ctx.cmd("if [ -d {} ]; then printf '%s\\n' {} | sed \"s/__NOW__/$(date -u +%Y-%m-%dT%H:%M:%SZ)/\" >> {}; fi",
                  ctx.paths.meta, record, ctx.paths.history, desc="append to the deploy history")
    try:
        runner.run([PlannedStep("heal: record", "heal", [cmd])])
    except TransportError:
        pass


# ---------------------------------------------------------------------------- one host, outside a deploy

def heal_host(host, pipeline, operator, emit, attempts=2, layout=None):
    """`fab heal` for one host: connect, take the deploy lock, heal, release the lock.

    Never raises for host-side problems: they end in the result's state (healed, healthy,
    not healed, locked, unreachable).
    """
    t0 = time.monotonic()
    result = HealResult(host.name)
    ctx = StepContext(host, pipeline, "-")
    try:
        with HostSession(host, emit, operator, pipeline) as s:
            res = s.run([locks.take(ctx, operator, action="heal", require_path=True)])
            if res[0].status != "ok":
                failed = res[0].failed_command
                if locks.held_by_other(res[0]):
                    result.state = LOCKED
                    result.message = "deploy lock is held: " + locks.describe(
                        failed.output, getattr(pipeline, "lock_stale_after", None), host.name)
                else:
                    result.state = NOT_HEALED
                    result.message = (failed.output.strip() if failed else "") or "could not take the deploy lock"
                return result
            r = heal_detailed(s.runner, host, pipeline, None, emit, attempts, layout=layout)
            r.duration = time.monotonic() - t0
            return r
    except TransportError as exc:
        result.state, result.message = UNREACHABLE, str(exc)
        return result
