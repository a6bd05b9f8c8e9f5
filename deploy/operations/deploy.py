"""Deploy one host: the state machine from a plan to one named state (results.py).

    lock + prepare          one session (in a fleet: the lock pass's session, lock_host), which
                            then waits with the build's first commands (executor: W)
    install                 the tool's PHP programs, only where the host's copy differs
    build, switch, after    rsync, then the same session goes on: the build steps, the gated
                            switch, the pool steps, verify, then finalize (prune, history,
                            unlock) in the same script
    on failure              before the switch: discard (the host refuses to remove the live
                            release); after it: heal (healable kinds), else roll back and verify
    on a lost connection    reconnect, ask the host where current points, then as above; or,
                            if the host stays away, report exactly what is known

Which step is which comes from the kinds' declarations (deploy/steps/), never from positions.
"""

import time

from .. import locks, remote
from .. import plan as planner
from ..commands import PlannedStep
from ..context import StepContext
from ..executor import Runner
from .. import session as sessions
from ..session import HostSession
from ..transport import InstallError, SessionLost, TransportError
from . import results as R
from .results import HostResult, failure_text, kind_of, lost, release_of, rsync_files


class Plan:
    """A host's deploy plan, by the role of each planned step."""

    def __init__(self, steps):
        self.steps = steps
        self.lock = next(s for s in steps if s.kind == "lock")
        self.prepare = next(s for s in steps if s.kind == "prepare")
        self.finalize = next(s for s in steps if s.kind == "finalize")
        self.body = [s for s in steps if s not in (self.lock, self.prepare, self.finalize)]
        self.after = self.body + [self.finalize]   # what runs once lock and prepare passed


def open_host(host, plan_steps, emit):
    """Connect and start the host's session, waiting before its lock (executor.Runner.start):
    the fleet opens the hosts side by side, then takes their locks in order. None when the
    host cannot be reached now (lock_host then tries, and reports it)."""
    plan = Plan(plan_steps)
    try:
        transport = sessions.connect(host)   # looked up here: tests swap in a fake transport
    except TransportError:
        return None
    try:
        Runner(transport, host, emit).start([plan.lock, plan.prepare], then=plan.after)
    except TransportError:
        transport.close()
        return None
    return transport


def lock_host(host, pipeline, release, operator, emit, plan_steps=None, transport=None):
    """The fleet's lock pass: connect (or use `transport`, from open_host) and run the host's
    lock step, and its prepare step in the same session (one session per host less; prepare
    only reads and makes the layout). Returns (transport or None, HostResult); the transport,
    still holding the lock, goes to deploy_host or release_lock. The prepare's facts (or its
    failure) go to deploy_host in the result."""
    result = HostResult(host.name, release)
    plan = Plan(plan_steps) if plan_steps else None
    lock_step = plan.lock if plan else locks.take(StepContext(host, pipeline, release), operator)
    try:
        with HostSession(host, emit, operator, pipeline, transport=transport) as s:
            # The build's first commands wait in the same session (executor.Runner.run's then).
            if plan:
                res = s.run([lock_step, plan.prepare], then=plan.after)
            else:
                res = s.run([lock_step])
            result.steps.extend(res)
            result.executed = list(s.runner.executed)
            if res[0].status == "ok":
                result.state = "locked by us"
                if plan:
                    result.prepared = dict(s.runner.facts)
                return s.detach(), result
            if locks.held_by_other(res[0]):
                result.state = R.LOCKED
                result.message = "deploy lock is held: " + locks.describe(res[0].failed_command.output,
                                                                          pipeline.lock_stale_after, host.name)
            else:
                result.state, result.message = R.FAILED, failure_text(res[0])
            return None, result
    except TransportError as exc:
        result.state, result.message = R.UNREACHABLE, str(exc)
        return None, result


def release_lock(host, pipeline, release, operator, transport=None):
    """Give back a lock taken by lock_host when the run does not go ahead on this host."""
    try:
        with HostSession(host, lambda e: None, operator, pipeline, transport=transport, locked=True):
            pass
    except TransportError:
        pass


def deploy_host(host, pipeline, release, operator, emit, transport=None, stop=None, locked=None, steps=None,
                hold=None, abort=None, barrier=None):
    """Deploy one host. Never raises for host-side failures: they end in the result's state.

    `locked`: the HostResult of the fleet's lock pass (the lock is held; `transport` is its
    connection, or None when it was closed meanwhile); `steps`: the plan already made (and
    shown) for this host, so what runs is that very plan; `hold`: the fleet's Hold, which
    answers this host's switch gate once the once-per-fleet steps ended (fleet.py); `barrier`:
    what the build's first remote command waits for (every host of the rollout locked, fleet.py
    _Locks); refused, the new release is removed and the host is untouched.
    """
    t_start = time.monotonic()
    emit({"type": "host_start", "host": host.name, "release": release})
    result = locked or HostResult(host.name, release)
    result.state = R.UNTOUCHED
    plan = Plan(steps or planner.deploy(host, pipeline, release, operator))
    try:
        with HostSession(host, emit, operator, pipeline, stop=stop, abort=abort, transport=transport,
                         locked=locked is not None, gate_hook=hold.answer if hold else None,
                         on_signal=hold.signalled if hold and hold.primary == host.name else None) as s:
            s.runner.executed = list(result.executed)
            try:
                _deploy(s, host, pipeline, release, operator, result, plan, prelocked=locked is not None, hold=hold,
                        barrier=barrier)
            except TransportError as exc:
                # Lost outside the body session (prepare, a rollback session): the body's own
                # loss is handled in _deploy, which knows what was switched.
                result.steps.extend(getattr(exc, "results", []))
                lost(result, release, exc)
            except Exception as exc:  # a bug must not take the other hosts down with it
                result.state = R.FAILED if result.switched is False else R.NEEDS_HUMAN
                result.message = f"internal error: {type(exc).__name__}: {exc}"
            finally:
                result.executed = s.runner.executed
                result.installed = s.runner.installed
    except TransportError as exc:   # could not connect
        result.state, result.message = R.UNREACHABLE, str(exc)
    result.duration += time.monotonic() - t_start
    result.rsync_files = rsync_files(result.steps)
    emit({"type": "host_end", "host": host.name, "result": result})
    return result


def _deploy(s, host, pipeline, release, operator, result, plan, prelocked, hold=None, barrier=None):
    if prelocked and result.prepared is not None:   # prepare ran in the lock pass
        res = [r for r in result.steps if r.kind == "prepare"]
        s.runner.facts.update(result.prepared)
    else:
        res = s.run([plan.prepare] if prelocked else [plan.lock, plan.prepare], interruptible=True, then=plan.after)
        result.steps.extend(res)
    for r in res:
        if r.status == "ok":
            continue
        if r.status == "interrupted":
            result.state, result.message = R.UNTOUCHED, "interrupted before any change"
        elif r.kind == "lock" and locks.held_by_other(r):
            result.state = R.LOCKED
            result.message = "deploy lock is held: " + locks.describe(r.failed_command.output,
                                                                      pipeline.lock_stale_after, host.name)
        elif r.kind == "lock":
            result.state, result.message = R.FAILED, failure_text(r)
        elif r.failed_command and r.failed_command.exit_code == planner.ALREADY_LIVE_EXIT:
            result.state = R.FAILED_BEFORE_SWITCH
            result.message = f"release {release} is already live on {host.name}; nothing to do (use a new --release id)"
        else:
            result.state, result.message = R.FAILED_BEFORE_SWITCH, failure_text(r)
        return
    result.previous = release_of(s.runner.facts.get("previous"))
    try:
        s.runner.install(remote.missing(s.runner.facts.get("programs")))
    except InstallError as exc:
        result.steps.extend(s.run(planner.discard(host, pipeline, release, operator, str(exc))))
        result.state, result.message = R.FAILED_BEFORE_SWITCH, str(exc)
        return

    # finalize rides in the same session as the body: the script stops at the first failure,
    # so it only runs when every step (verify included) passed. One session less per host.
    body = plan.body
    gone = None
    try:
        res = s.run(plan.after, interruptible=True, barrier=barrier)
    except SessionLost as exc:
        res, gone = exc.results, exc
    refused = s.runner.refused   # the fleet's barrier said no (a lock held elsewhere)
    finalized = res.pop()
    result.steps.extend(res)
    switch = next(i for i, st in enumerate(body) if kind_of(st).phase == "switch")
    if pipeline.strategy == "in-place":
        # In place, the live tree changes as soon as sync starts writing into it.
        ships = next(i for i, st in enumerate(body) if kind_of(st).ships_code)
        result.switched = bool(res[ships].commands)
    elif res[switch].status == "ok":
        result.switched = True
    elif "go" in s.runner.gates:
        result.switched = None   # told to switch, never heard back: only the host can say
    else:
        result.switched = False
    if gone is not None:
        if not s.reconnect():
            lost(result, release, gone)
            return
        # Back on the host: end what is left of the cut-off session, then ask the host itself
        # whether current moved before anything is removed or switched.
        s.runner.kill_remote()
        if pipeline.strategy != "in-place":
            result.switched = live_release(s, host) == release
    if any(r.status == "interrupted" for r in res) and not result.switched:
        held = hold is not None and hold.refused() and not (s.stop is not None and s.stop.is_set())
        why = refused or (hold.reason if held else "interrupted")
        discarded = s.run(planner.discard(host, pipeline, release, operator, why))
        result.steps.extend(discarded)
        if not _is_live(discarded):
            if refused:
                result.state = R.UNTOUCHED
                result.message = f"{refused}: the new release built meanwhile was removed, the live one never changed"
            elif held:
                result.state = R.FAILED_BEFORE_SWITCH
                result.message = f"not switched: {why}; the new release was removed, the live one never changed"
            else:
                result.state = R.UNTOUCHED
                result.message = "interrupted before the switch: the new release was removed, the live one never changed"
            return
        result.switched = True
    if result.switched and s.abort is not None and s.abort.is_set() and any(r.status == "interrupted" for r in res):
        # A second signal: no healing, no rollback; say exactly what is live.
        result.state = R.NEEDS_HUMAN
        result.message = (f"stopped by a second signal after the switch: {release} is live (complete) but not "
                          f"verified; `fab rollback --host {host.name}` goes back to {result.previous or 'nothing'}")
        needs_human_record(s, host, pipeline, release, operator, result.message)
        return
    failed_step = next((r for r in res if r.status in ("failed", "interrupted")), None)
    if failed_step is None and finalized.status != "ok":
        # Everything verified, only the bookkeeping (prune/history/unlock) was cut off: redo it.
        finalized = s.run([plan.finalize])[0]
    if failed_step is None:
        result.activated_to_verified = _activated_at(res, switch)
        result.steps.append(finalized)
        result.state = R.DEPLOYED
        if gone is not None:
            result.message = f"{gone}; reconnected: the release was already verified"
        return
    reason = failure_text(failed_step)
    if gone is not None:
        reason = f"{reason} ({gone}; reconnected)"
    if not result.switched:
        discarded = s.run(planner.discard(host, pipeline, release, operator, reason))
        result.steps.extend(discarded)
        if not _is_live(discarded):
            result.state = R.FAILED_BEFORE_SWITCH
            result.message = reason
            return
        # The host says the new release is live after all: handle it as a failure after the switch.
        result.switched = True
    if pipeline.remediate and gone is None and kind_of(failed_step).healable:
        # Heal the known causes of "the old code still runs" before giving up on this release.
        from .. import remediate
        t_heal = time.monotonic()
        ok, actions = remediate.heal(s.runner, host, pipeline, release, s.runner.emit)
        result.actions.extend(actions)
        if ok:
            failed_index = next(i for i, r in enumerate(res) if r.status in ("failed", "interrupted"))
            again = s.run(body[failed_index:])  # the failed step again, then the ones it skipped
            result.steps.extend(again)
            if all(r.status == "ok" for r in again):
                result.activated_to_verified = (_activated_at(res, switch) or 0.0) + (time.monotonic() - t_heal)
                result.steps.extend(s.run([plan.finalize]))
                result.state = R.DEPLOYED
                result.message = "healed: " + ", ".join(a["action"] for a in actions)
                return
            reason = failure_text(next(r for r in again if r.status != "ok"))
        reason += "; healing did not help (" + (", ".join(a["action"] for a in actions) or "nothing to try") + ")"
    # Failed after the switch: go back to the previous release and prove the pool runs it.
    if not result.previous:
        mark = next(st for st in planner.rollback(host, pipeline, release, operator, failed=release, reason=reason)
                    if st.kind == "mark")
        result.steps.extend(s.run([mark]))
        result.state = R.NEEDS_HUMAN
        result.message = f"{reason}; no previous release to roll back to, {release} stays live (marked bad)"
        needs_human_record(s, host, pipeline, release, operator, result.message)
        return
    result.actions.append({"action": "rollback", "to": result.previous, "why": reason})
    result.switched = None  # until the rollback ends, current is one of the two: see deploy_host
    rb = _not_stopped(s, planner.rollback(host, pipeline, result.previous, operator, failed=release, reason=reason,
                                          action="auto-rollback"))
    result.steps.extend(rb)
    result.switched = True
    failed_rb = next((r for r in rb if r.status != "ok"), None)
    if failed_rb:
        result.state = R.NEEDS_HUMAN
        result.message = f"{reason}; rollback to {result.previous} FAILED: {failure_text(failed_rb)}"
        needs_human_record(s, host, pipeline, release, operator, result.message)
    else:
        from .rollback import schema_warning
        result.state = R.ROLLED_BACK
        result.message = f"{reason}; rolled back to {result.previous}" + schema_warning(s, host)


def _is_live(discard_results):
    """Did the host refuse to remove the release because current points to it?"""
    failed = discard_results[0].failed_command if discard_results else None
    return bool(failed and failed.exit_code == planner.IS_LIVE_EXIT)


def live_release(s, host):
    """The release current points to, read from the host (None when there is none)."""
    ctx = StepContext(host, None, "-")
    cmd = ctx.cmd("readlink {} || true", ctx.paths.current, capture="live", desc="read the live release")
    s.run([PlannedStep("observe", "observe", [cmd])])
    return release_of(s.runner.facts.get("live"))


def needs_human_record(s, host, pipeline, release, operator, message, action="deploy"):
    """Write why a human is needed into the host's history, and give the lock back: the
    history and `fab releases` tell the next person what happened."""
    ctx = StepContext(host, pipeline, release)
    try:
        s.run([PlannedStep("record", "record", [
            planner.append_history(ctx, {"action": action, "release": release, "state": R.NEEDS_HUMAN,
                                         "reason": message[:500], "by": operator.token}),
            *planner.closing(ctx, operator)])])
    except TransportError:   # best effort on a path that is already failing
        pass


def _not_stopped(s, steps):
    """Run a rollback after a failure after the switch to its end: its gate must not answer
    "stop" to a signal that came once the host had switched (a switched host ends on a proven
    release, docs/commands.md)."""
    stop, s.runner.stop = s.runner.stop, None
    try:
        return s.run(steps)
    finally:
        s.runner.stop = stop


def _activated_at(res, switch_index):
    return sum(r.duration for r in res[switch_index + 1:]) or None
