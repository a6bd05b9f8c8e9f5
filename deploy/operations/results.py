"""What an operation on a host ends in: one named state (docs/commands.md: host states), and
what the report shows about it."""

import posixpath
from dataclasses import dataclass, field

from .. import steps

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

# The declarations of the tool's own steps (lock, prepare, finalize, ...): none apply.
NO_KIND = steps.Kind("-", 0, "-", "")


def kind_of(step):
    return steps.spec(step.kind) or NO_KIND


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
    prepared: dict | None = None  # the facts of a prepare run in the fleet's lock pass (None: not run there)

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


def release_of(link):
    return posixpath.basename(link.strip().rstrip("/")) if link and link.strip() else None


def rsync_files(step_results):
    for s in step_results:
        for c in s.commands:
            if c.local and "Number of regular files transferred:" in c.output:
                for line in c.output.splitlines():
                    if line.startswith("Number of regular files transferred:"):
                        return int(line.split(":")[1].strip().replace(",", ""))
    return None


def failure_text(step_result):
    """One line for summaries, bad marks and history: which step, how, and what it said last
    (the full command and output are in the log and the JSON report)."""
    failed = step_result.failed_command
    if not failed:
        return f"step '{step_result.name}' {step_result.status}"
    code = "did not finish" if failed.exit_code is None else f"exit {failed.exit_code}"
    lines = [l.strip() for l in failed.output.strip().splitlines() if l.strip()]
    said = lines[-1][:300] if lines else f"no output from: {failed.command[:160]}"
    return f"step '{step_result.name}' failed ({code}): {said}"


def lost(result, release, exc):
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
