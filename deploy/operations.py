"""Per-host operations: deploy, rollback, list releases, unlock. Each ends in one named state.

States (docs/commands.md): deployed, rolled back, failed before switch, unreachable, locked,
needs human, untouched, planned.
"""

import json
import posixpath
import time
from dataclasses import dataclass, field

from . import plan as planner
from . import remote
from .context import StepContext
from .executor import Runner
from .transport import HostKeyError, InstallError, SessionLost, Transport, TransportError

DEPLOYED = "deployed"
ROLLED_BACK = "rolled back"
FAILED_BEFORE_SWITCH = "failed before switch"
UNREACHABLE = "unreachable"
LOCKED = "locked"
NEEDS_HUMAN = "needs human"
UNTOUCHED = "untouched"
PLANNED = "planned"
FAILED = "failed"

OK_STATES = (DEPLOYED, PLANNED, UNTOUCHED)


@dataclass
class HostResult:
    host: str
    release: str | None
    state: str = UNTOUCHED
    previous: str | None = None
    message: str = ""
    steps: list = field(default_factory=list)        # StepResults, in run order (rollback steps too)
    actions: list = field(default_factory=list)      # remediation / rollback actions, with reasons
    executed: list = field(default_factory=list)     # masked commands actually run
    installed: list = field(default_factory=list)    # the tool's programs installed on the host (labels)
    switched: bool | None = False   # None: unknown (told to switch, never heard back)
    duration: float = 0.0
    activated_to_verified: float | None = None
    rsync_files: int | None = None
    batch: int | None = None      # the fleet batch it ran in (None: not part of a rollout)

    def as_dict(self):
        starts = [s.started for s in self.steps if s.started is not None]
        ends = [s.ended for s in self.steps if s.ended is not None]
        return {
            "host": self.host, "release": self.release, "state": self.state, "previous": self.previous,
            "message": self.message, "switched": self.switched, "duration": round(self.duration, 3),
            "activated_to_verified": None if self.activated_to_verified is None else round(self.activated_to_verified, 3),
            "rsync_files_transferred": self.rsync_files,
            "installed": self.installed,
            "actions": self.actions,
            "batch": self.batch, "started": _epoch(min(starts, default=None)), "ended": _epoch(max(ends, default=None)),
            "steps": [{"name": s.name, "kind": s.kind, "status": s.status, "duration": round(s.duration, 3),
                       "started": _epoch(s.started), "ended": _epoch(s.ended),
                       "commands": [{"command": c.command, "exit_code": c.exit_code, "duration": round(c.duration, 3),
                                     "started": _epoch(c.started), "ended": _epoch(c.ended),
                                     "local": c.local, "output": c.output} for c in s.commands]}
                      for s in self.steps],
        }


def _epoch(t):
    return None if t is None else round(t, 3)


def _release_of(link):
    return posixpath.basename(link.strip().rstrip("/")) if link and link.strip() else None


def _rsync_files(steps):
    for s in steps:
        for c in s.commands:
            if c.local and "Number of regular files transferred:" in c.output:
                for line in c.output.splitlines():
                    if line.startswith("Number of regular files transferred:"):
                        return int(line.split(":")[1].strip().replace(",", ""))
    return None


def connect(host):
    return Transport(host).connect()


def lock_host(host, pipeline, release, operator, emit):
    """Connect and take the deploy lock. Returns (transport or None, HostResult)."""
    result = HostResult(host.name, release)
    try:
        transport = connect(host)
    except TransportError as exc:
        result.state, result.message = UNREACHABLE, str(exc)
        return None, result
    runner = Runner(transport, host, emit)
    ctx = StepContext(host=host, pipeline=pipeline, release=release)
    try:
        res = runner.run([planner.lock(ctx, operator)])
    except TransportError as exc:
        transport.close()
        result.state, result.message = UNREACHABLE, str(exc)
        return None, result
    result.steps.extend(res)
    result.executed = runner.executed
    if res[0].status != "ok":
        failed = res[0].failed_command
        transport.close()
        if failed and failed.exit_code == planner.LOCKED_EXIT:
            result.state = LOCKED
            result.message = "deploy lock is held: " + _lock_text(failed.output, pipeline.lock_stale_after, host.name)
        else:
            result.state, result.message = FAILED, _failure_text(res[0])
        return None, result
    result.state = "locked by us"
    return transport, result


def release_lock(host, pipeline, release, operator, transport):
    """Give back a lock taken by lock_host when the run does not go ahead on this host."""
    runner = Runner(transport, host, lambda e: None)
    _run_quiet(runner, [planner.unlock_step(host, pipeline, release, operator)])
    transport.close()


def deploy_host(host, pipeline, release, operator, emit, transport=None, stop=None, locked=None, steps=None):
    """Deploy one host. Never raises for host-side failures: they end in the result's state.

    `transport` + `locked` (a HostResult from lock_host) when the fleet already took the lock;
    `steps`: the plan already made (and shown) for this host, so what runs is that very plan.
    """
    t_start = time.monotonic()
    emit({"type": "host_start", "host": host.name, "release": release})
    if transport is None:
        transport, result = lock_host(host, pipeline, release, operator, emit)
        if transport is None:
            result.duration = time.monotonic() - t_start
            emit({"type": "host_end", "host": host.name, "result": result})
            return result
    else:
        result = locked or HostResult(host.name, release)
    result.state = UNTOUCHED
    runner = Runner(transport, host, emit, stop=stop)
    runner.executed = list(result.executed)
    try:
        _deploy(host, pipeline, release, operator, runner, result,
                steps or planner.deploy(host, pipeline, release, operator))
    except TransportError as exc:
        # Lost outside the body session (prepare, rsync, a rollback session): the body's own
        # loss is handled in _deploy, which knows what was switched.
        result.steps.extend(getattr(exc, "results", []))
        _lost(result, release, exc)
    except Exception as exc:  # a bug must not take the other hosts down with it
        result.state = FAILED if result.switched is False else NEEDS_HUMAN
        result.message = f"internal error: {type(exc).__name__}: {exc}"
        _run_quiet(runner, [planner.unlock_step(host, pipeline, release, operator)])
    finally:
        transport.close()
        result.executed = runner.executed
        result.installed = runner.installed
        result.duration += time.monotonic() - t_start
        result.rsync_files = _rsync_files(result.steps)
    emit({"type": "host_end", "host": host.name, "result": result})
    return result


def _deploy(host, pipeline, release, operator, runner, result, steps):
    prepare, body, finalize = steps[1], steps[2:-1], steps[-1]
    unlock = planner.unlock_step(host, pipeline, release, operator)
    res = runner.run([prepare], interruptible=True)
    result.steps.extend(res)
    if res[0].status != "ok":
        failed = res[0].failed_command
        _run_quiet(runner, [unlock])
        if res[0].status == "interrupted":
            result.state, result.message = UNTOUCHED, "interrupted before any change"
        elif failed and failed.exit_code == planner.ALREADY_LIVE_EXIT:
            result.state = FAILED_BEFORE_SWITCH
            result.message = f"release {release} is already live on {host.name}; nothing to do (use a new --release id)"
        else:
            result.state, result.message = FAILED_BEFORE_SWITCH, _failure_text(res[0])
        return
    result.previous = _release_of(runner.facts.get("previous"))
    try:
        runner.install(remote.missing(runner.facts.get("programs")))
    except InstallError as exc:
        result.steps.extend(runner.run(planner.discard(host, pipeline, release, operator, str(exc))))
        result.state, result.message = FAILED_BEFORE_SWITCH, str(exc)
        return

    # finalize rides in the same session as the body: the script stops at the first failure,
    # so it only runs when every step (verify included) passed. One session less per host.
    lost = None
    try:
        res = runner.run(body + [finalize], interruptible=True)
    except SessionLost as exc:
        res, lost = exc.results, exc
    finalized = res.pop()
    result.steps.extend(res)
    activate_index = next(i for i, s in enumerate(body) if s.kind == "activate")
    if pipeline.strategy == "in-place":
        # In place, the live tree changes as soon as sync starts writing into it.
        sync_index = next(i for i, s in enumerate(body) if s.kind == "sync")
        result.switched = bool(res[sync_index].commands)  # rsync ran: the live tree may have changed
    elif res[activate_index].status == "ok":
        result.switched = True
    elif "go" in runner.gates:
        result.switched = None   # told to switch, never heard back: only the host can say
    else:
        result.switched = False
    if lost is not None:
        if not _reconnect(runner):
            _lost(result, release, lost)
            return
        # Back on the host: end what is left of the cut-off session, then ask the host itself
        # whether current moved before anything is removed or switched.
        runner._kill_remote()
        if pipeline.strategy != "in-place":
            result.switched = _live_release(runner, host) == release
    if any(r.status == "interrupted" for r in res) and not result.switched:
        discarded = runner.run(planner.discard(host, pipeline, release, operator, "interrupted"))
        result.steps.extend(discarded)
        if not _is_live(discarded):
            result.state = UNTOUCHED
            result.message = "interrupted before the switch: the new release was removed, the live one never changed"
            return
        result.switched = True
    failed_step = next((r for r in res if r.status in ("failed", "interrupted")), None)
    if failed_step is None and finalized.status != "ok":
        # Everything verified, only the bookkeeping (prune/history/unlock) was cut off: redo it.
        finalized = runner.run([finalize])[0]
    if failed_step is None:
        result.activated_to_verified = _activated_at(res, activate_index)
        result.steps.append(finalized)
        result.state = DEPLOYED
        if lost is not None:
            result.message = f"{lost}; reconnected: the release was already verified"
        return
    reason = _failure_text(failed_step)
    if lost is not None:
        reason = f"{reason} ({lost}; reconnected)"
    if not result.switched:
        discarded = runner.run(planner.discard(host, pipeline, release, operator, reason))
        result.steps.extend(discarded)
        if not _is_live(discarded):
            result.state = FAILED_BEFORE_SWITCH
            result.message = reason
            return
        # The host says the new release is live after all: handle it as a failure after the switch.
        result.switched = True
    if pipeline.remediate and lost is None and failed_step.kind in ("verify", "opcache_reset", "fpm_reload"):
        # Heal the known causes of "the old code still runs" before giving up on this release.
        from . import remediate
        t_heal = time.monotonic()
        ok, actions = remediate.heal(runner, host, pipeline, release, runner.emit)
        result.actions.extend(actions)
        if ok:
            failed_index = next(i for i, r in enumerate(res) if r.status in ("failed", "interrupted"))
            again = runner.run(body[failed_index:])  # the failed step again, then the ones it skipped
            result.steps.extend(again)
            if all(r.status == "ok" for r in again):
                result.activated_to_verified = (_activated_at(res, activate_index) or 0.0) + (time.monotonic() - t_heal)
                result.steps.extend(runner.run([finalize]))
                result.state = DEPLOYED
                result.message = "healed: " + ", ".join(a["action"] for a in actions)
                return
            reason = _failure_text(next(r for r in again if r.status != "ok"))
        reason += "; healing did not help (" + (", ".join(a["action"] for a in actions) or "nothing to try") + ")"
    # Failed after the switch: go back to the previous release and prove the pool runs it.
    if not result.previous:
        mark = planner.rollback(host, pipeline, release, operator, failed=release, reason=reason)[0]
        result.steps.extend(runner.run([mark]))
        result.state = NEEDS_HUMAN
        result.message = f"{reason}; no previous release to roll back to, {release} stays live (marked bad)"
        _needs_human_record(runner, host, pipeline, release, operator, result.message)
        return
    result.actions.append({"action": "rollback", "to": result.previous, "why": reason})
    result.switched = None  # until the rollback ends, current is one of the two: see deploy_host
    rb = runner.run(planner.rollback(host, pipeline, result.previous, operator, failed=release, reason=reason,
                                     action="auto-rollback"))
    result.steps.extend(rb)
    result.switched = True
    failed_rb = next((r for r in rb if r.status == "failed"), None)
    if failed_rb:
        result.state = NEEDS_HUMAN
        result.message = f"{reason}; rollback to {result.previous} FAILED: {_failure_text(failed_rb)}"
        _needs_human_record(runner, host, pipeline, release, operator, result.message)
    else:
        result.state = ROLLED_BACK
        result.message = f"{reason}; rolled back to {result.previous}"


def _is_live(discard_results):
    """Did the host refuse to remove the release because current points to it?"""
    failed = discard_results[0].failed_command if discard_results else None
    return bool(failed and failed.exit_code == planner.IS_LIVE_EXIT)


def _reconnect(runner):
    """A new connection after a lost one, tried for up to connect_timeout seconds (a host that
    blinked, an sshd restarted by its supervisor). True when it worked."""
    deadline = time.monotonic() + runner.host.connect_timeout
    while True:
        try:
            runner.transport.reconnect()
            return True
        except HostKeyError:
            return False   # never retried: a changed key is not a blip
        except TransportError:
            if time.monotonic() + 1 > deadline:
                return False
            time.sleep(1)


def _live_release(runner, host):
    """The release current points to, read from the host (None when there is none)."""
    ctx = StepContext(host, None, "-")
    cmd = ctx.cmd("readlink {} || true", ctx.paths.current, capture="live", desc="read the live release")
    runner.run([planner.PlannedStep("observe", "observe", [cmd])])
    return _release_of(runner.facts.get("live"))


def _lost(result, release, exc):
    """The connection is gone and does not come back: say exactly what is known."""
    hint = f"check with `fab releases --host {result.host}`; its lock stays until `fab unlock --host {result.host}`"
    if result.switched:
        result.state = NEEDS_HUMAN
        result.message = f"{exc} after the switch of current: {release} is live but NOT verified; {hint}"
    elif result.switched is None:
        result.state = NEEDS_HUMAN
        result.message = (f"{exc} while current was being switched: it may point to {release} or still to "
                          f"{result.previous or 'nothing'}; {hint}")
    else:
        result.state = UNREACHABLE
        result.message = f"{exc} (before the switch of current: the live release never changed); {hint}"


def _needs_human_record(runner, host, pipeline, release, operator, message, action="deploy"):
    """Write why a human is needed into the host's history, and give the lock back: the
    history and `fab releases` tell the next person what happened."""
    ctx = StepContext(host, pipeline, release)
    _run_quiet(runner, [planner.PlannedStep("record", "record", [
        planner.append_history(ctx, {"action": action, "release": release, "state": NEEDS_HUMAN,
                                     "reason": message[:500], "by": operator.token}),
        planner.unlock(ctx, operator)])])


def _activated_at(res, activate_index):
    return sum(r.duration for r in res[activate_index + 1:]) or None


def _failure_text(step_result):
    """One line for summaries, bad marks and history: which step, how, and what it said last
    (the full command and output are in the log and the JSON report)."""
    failed = step_result.failed_command
    if not failed:
        return f"step '{step_result.name}' {step_result.status}"
    code = "did not finish" if failed.exit_code is None else f"exit {failed.exit_code}"
    lines = [l.strip() for l in failed.output.strip().splitlines() if l.strip()]
    said = lines[-1][:300] if lines else f"no output from: {failed.command[:160]}"
    return f"step '{step_result.name}' failed ({code}): {said}"


def _lock_text(output, stale_after=None, host="HOST", hint=True):
    """Who holds the lock, since when, and whether it looks abandoned."""
    info, since, age = {}, "?", None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                info = json.loads(line)
            except ValueError:
                pass
        elif line.startswith("AGE "):
            age = int(line[4:]) if line[4:].strip().lstrip("-").isdigit() else None
        elif line and line != "LOCKED" and line != "REMOVED":
            since = line
    who = (f"{info.get('user')}@{info.get('machine')} pid {info.get('pid')} "
           f"{info.get('action', 'deploying')} {info.get('release')}") if info else "unknown holder"
    text = f"{who} since {since}"
    if age is not None:
        text += f" ({age}s ago)"
        if stale_after and age > stale_after:
            text += f"; STALE: older than {stale_after}s, probably left by a dead deploy"
    return text + (f"; if that deploy is dead: fab unlock --host {host}" if hint else "")


def _run_quiet(runner, steps):
    try:
        return runner.run(steps)
    except Exception:  # best effort on a path that is already failing
        return []


# ---------------------------------------------------------------- state of a host

def read_state(runner, host, pipeline, extra=()):
    ctx = StepContext(host, pipeline, "-")
    cmd = remote.run(ctx, "state.sh", host.deploy_path, "in-place" if ctx.in_place else "releases",
                     capture="state", desc="read releases, current, bad marks, lock")
    res = runner.run([planner.PlannedStep("state", "state", [cmd] + list(extra))])
    output = res[0].commands[0].output if res[0].commands else ""
    state = {"path": True, "current": None, "releases": [], "bad": {}, "lock": None, "history": []}
    for line in output.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "NOPATH":
            state["path"] = False
        elif tag == "CURRENT":
            state["current"] = _release_of(rest)
        elif tag == "RELEASE":
            parts = rest.split()
            if len(parts) >= 3:
                state["releases"].append({"id": parts[0], "mtime": int(parts[1]), "complete": parts[2] == "complete"})
        elif tag == "BAD":
            rid, _, why = rest.partition(" ")
            state["bad"][rid] = why.strip()
        elif tag == "LOCK":
            state["lock"] = rest.strip()
        elif tag == "HISTORY":
            try:
                state["history"].append(json.loads(rest))
            except ValueError:
                pass
    return state


def rollback_target(state, to=None):
    """The release to go back to: --to if given, else the newest complete, non-bad release older than current."""
    ids = [r["id"] for r in state["releases"]]
    complete = {r["id"] for r in state["releases"] if r["complete"]}
    if to:
        if to not in ids:
            return None, f"release {to} is not on the host (have: {', '.join(ids) or 'none'})"
        if to not in complete:
            return None, f"release {to} is incomplete (no RELEASE file)"
        if to == state["current"]:
            return None, f"release {to} is already live"
        return to, ""
    cur = state["current"]
    older = ids[ids.index(cur) + 1:] if cur in ids else ids
    for rid in older:
        if rid in complete and rid not in state["bad"] and rid != cur:
            return rid, ""
    return None, "no earlier good release to roll back to"


def rollback_host(host, pipeline, operator, emit, to=None, dry_run=False, mark_bad=None, reason=None):
    t_start = time.monotonic()
    result = HostResult(host.name, None)
    emit({"type": "host_start", "host": host.name, "release": None})
    try:
        transport = connect(host)
    except TransportError as exc:
        result.state, result.message = UNREACHABLE, str(exc)
        emit({"type": "host_end", "host": host.name, "result": result})
        return result, None
    runner = Runner(transport, host, emit)
    steps = None
    try:
        state = read_state(runner, host, pipeline, extra=[remote.listing(StepContext(host, pipeline, "-"))])
        result.previous = state["current"]
        target, why = rollback_target(state, to)
        if not target:
            result.state, result.message = FAILED, why
            return result, None
        result.release = target
        failed = mark_bad or (state["current"] if state["current"] and to is None else None)
        steps = planner.rollback(host, pipeline, target, operator, failed=failed,
                                 reason=reason or ("manual rollback" if failed else ""), take_lock=True)
        if dry_run:
            result.state = PLANNED
            return result, steps
        runner.install(remote.missing(runner.facts.get("programs")))
        lost = None
        try:
            res = runner.run(steps)
        except SessionLost as exc:
            res, lost = exc.results, exc
        result.steps.extend(res)
        first = res[0]
        if first.status == "failed" and first.failed_command and first.failed_command.exit_code == planner.LOCKED_EXIT:
            result.state, result.message = LOCKED, "deploy lock is held: " + _lock_text(first.failed_command.output,
                                                                                        pipeline.lock_stale_after, host.name)
            return result, steps
        activate = next(i for i, s in enumerate(steps) if s.kind == "activate")
        if res[activate].status == "ok":
            result.switched = True
        else:
            result.switched = None if "go" in runner.gates else False
        if lost is not None:
            if not _reconnect(runner):
                _lost(result, target, lost)
                return result, steps
            runner._kill_remote()
            if pipeline is None or pipeline.strategy != "in-place":
                result.switched = _live_release(runner, host) == target
            if result.switched:
                # The switch happened: finish the rollback's own steps (reset, reload, verify, history).
                k = max(i for i, r in enumerate(res) if r.status == "ok") + 1
                again = runner.run(steps[k:])
                result.steps.extend(again)
                res = res[:k] + again
        failed_step = next((r for r in res if r.status == "failed"), None)
        if failed_step:
            if not result.switched:
                _run_quiet(runner, [planner.unlock_step(host, pipeline, target, operator)])
                result.state = FAILED
            else:
                result.state = NEEDS_HUMAN
            result.message = _failure_text(failed_step) + (f" ({lost}; reconnected)" if lost else "")
            if result.state == NEEDS_HUMAN:
                _needs_human_record(runner, host, pipeline, target, operator, result.message, action="rollback")
        else:
            result.state = ROLLED_BACK
            result.message = f"now serving {target} (was {state['current']})"
        return result, steps
    except TransportError as exc:
        _lost(result, result.release, exc)
        return result, steps
    finally:
        transport.close()
        result.executed = runner.executed
        result.duration = time.monotonic() - t_start
        emit({"type": "host_end", "host": host.name, "result": result})


def _on_host(host, work):
    """Connect, run work(runner), close: errors become {"host", "error"} for read-only tasks."""
    try:
        transport = connect(host)
    except TransportError as exc:
        return {"host": host.name, "error": str(exc)}
    try:
        return work(Runner(transport, host, lambda e: None))
    except TransportError as exc:
        return {"host": host.name, "error": str(exc)}
    finally:
        transport.close()


def host_state(host, pipeline, emit):
    """Read-only: releases, live one, bad marks, lock and recent history of one host."""
    return _on_host(host, lambda runner: {**read_state(runner, host, pipeline), "host": host.name})


def unlock_host(host, pipeline, emit):
    """Clear a lock left by a dead deploy; returns what the lock said (who/when)."""
    def work(runner):
        ctx = StepContext(host, pipeline, "-")
        cmd = ctx.cmd("if [ -d {} ]; then cat {} 2>/dev/null; rm -rf {}; echo REMOVED; else echo NOLOCK; fi",
                      ctx.paths.lock, ctx.paths.lock + "/info", ctx.paths.lock, desc="remove the deploy lock")
        res = runner.run([planner.PlannedStep("unlock", "unlock", [cmd])])
        out = res[0].commands[0].output if res[0].commands else ""
        if "NOLOCK" in out:
            return {"host": host.name, "removed": False, "was": None}
        return {"host": host.name, "removed": True, "was": _lock_text(out.replace("REMOVED", ""), hint=False)}
    return _on_host(host, work)
