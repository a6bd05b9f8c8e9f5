"""`fab rollback` for one host: back to the previous good release (or --to ID), made live and
proven like a deploy (the pool reset or reloaded, verify), under the deploy lock.

Never into a gutted release: before the switch, the target's files must still be the ones it
was verified with (deploy/remote/manifest.sh). And when the target fails after the switch
(verify), the host goes back to the release that was live and proves that one instead.
"""

import time

from .. import locks, remote
from .. import plan as planner
from ..context import StepContext
from ..session import HostSession
from ..transport import SessionLost, TransportError
from . import results as R
from .deploy import live_release, needs_human_record
from .results import HostResult, failure_text, kind_of, lost
from .state import read_state


def schema_warning(s, host):
    """The schema check's warning (the database has migrations the target lacks), shown
    live and appended to the host's message; "" when there is none."""
    said = s.runner.facts.pop("schema", "")
    warning = next((l for l in said.splitlines() if l.startswith("WARNING")), "")
    if warning:
        s.emit({"type": "message", "host": host.name, "text": warning})
        return "; " + warning
    return ""


def rollback_target(state, to=None):
    """The release to go back to: --to if given, else the newest complete, non-bad release older than current."""
    if state.get("current_is_dir"):
        return None, ("current is a real directory, not a link to a release: nothing to roll back to (see "
                      "docs/remediation.md: Moving an in-place server to the releases layout)")
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
    """Returns (HostResult, the planned steps or None). Never raises for host-side failures."""
    t_start = time.monotonic()
    result = HostResult(host.name, None)
    emit({"type": "host_start", "host": host.name, "release": None})
    steps = None
    try:
        with HostSession(host, emit, operator, pipeline) as s:
            try:
                steps = _rollback(s, host, pipeline, operator, result, to, dry_run, mark_bad, reason)
            except TransportError as exc:
                lost(result, result.release, exc)
            finally:
                result.executed = s.runner.executed
                result.installed = s.runner.installed
    except TransportError as exc:   # could not connect
        result.state, result.message = R.UNREACHABLE, str(exc)
    result.duration = time.monotonic() - t_start
    emit({"type": "host_end", "host": host.name, "result": result})
    return result, steps


def _rollback(s, host, pipeline, operator, result, to, dry_run, mark_bad, reason):
    state = read_state(s, host, pipeline, extra=[remote.listing(StepContext(host, pipeline, "-"))])
    live = result.previous = state["current"]
    target, why = rollback_target(state, to)
    if not target:
        result.state, result.message = R.FAILED, why
        return None
    result.release = target
    failed = mark_bad or (live if live and to is None else None)
    steps = planner.rollback(host, pipeline, target, operator, failed=failed,
                             reason=reason or ("manual rollback" if failed else ""), take_lock=True)
    if dry_run:
        result.state = R.PLANNED
        return steps
    s.runner.install(remote.missing(s.runner.facts.get("programs")))
    gone = None
    try:
        res = s.run(steps)
    except SessionLost as exc:
        res, gone = exc.results, exc
    result.steps.extend(res)
    if locks.held_by_other(res[0]):
        result.state = R.LOCKED
        result.message = "deploy lock is held: " + locks.describe(res[0].failed_command.output,
                                                                  pipeline.lock_stale_after, host.name)
        return steps
    switch = next(i for i, st in enumerate(steps) if kind_of(st).phase == "switch")
    if res[switch].status == "ok":
        result.switched = True
    else:
        result.switched = None if "go" in s.runner.gates else False
    if gone is not None:
        if not s.reconnect():
            lost(result, target, gone)
            return steps
        s.runner.kill_remote()
        if pipeline is None or pipeline.strategy != "in-place":
            result.switched = live_release(s, host) == target
        if result.switched:
            # The switch happened: finish the rollback's own steps (reset, reload, verify, history).
            k = max(i for i, r in enumerate(res) if r.status == "ok") + 1
            again = s.run(steps[k:])
            result.steps.extend(again)
            res = res[:k] + again
    failed_step = next((r for r in res if r.status == "failed"), None)
    if failed_step is None:
        result.state = R.ROLLED_BACK
        result.message = f"now serving {target} (was {live})" + schema_warning(s, host)
        return steps
    why = failure_text(failed_step) + (f" ({gone}; reconnected)" if gone else "")
    if not result.switched:
        result.state, result.message = R.FAILED, why   # nothing changed; the session gives the lock back
        return steps
    if live and live != target:
        # The target does not work: go back to the release that was live, and prove it.
        result.actions.append({"action": "rollback", "to": live, "why": f"{target} failed after the switch: {why}"})
        back = s.run(planner.rollback(host, pipeline, live, operator, failed=target, reason=why,
                                      action="rollback", unmark=failed))
        result.steps.extend(back)
        if all(r.status == "ok" for r in back):
            result.state = R.FAILED
            result.message = f"{why}; back on {live} (verified), {target} marked bad"
            return steps
        why += f"; going back to {live} FAILED too: {failure_text(next(r for r in back if r.status != 'ok'))}"
    result.state = R.NEEDS_HUMAN
    result.message = why
    needs_human_record(s, host, pipeline, target, operator, result.message, action="rollback")
    return steps
