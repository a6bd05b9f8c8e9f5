"""Read-only views of a host (nothing written): its releases, live one, bad marks, lock and
recent history (deploy/remote/state.sh); and `fab unlock`."""

import json

from .. import locks, remote
from ..commands import PlannedStep
from ..context import StepContext
from ..session import HostSession
from ..transport import TransportError
from .results import release_of


def read_state(session, host, pipeline, extra=()):
    """Parse state.sh's lines. `extra`: more commands for the same session (one round trip)."""
    ctx = StepContext(host, pipeline, "-")
    cmd = remote.run(ctx, "state.sh", host.deploy_path, "in-place" if ctx.in_place else "releases",
                     capture="state", desc="read releases, current, bad marks, lock")
    res = session.run([PlannedStep("state", "state", [cmd] + list(extra))])
    output = res[0].commands[0].output if res[0].commands else ""
    return parse_state(output)


def parse_state(output):
    state = {"path": True, "current": None, "releases": [], "bad": {}, "lock": None, "history": [],
             "current_is_dir": False}
    for line in output.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "NOPATH":
            state["path"] = False
        elif tag == "NOTALINK":
            state["current_is_dir"] = True
        elif tag == "CURRENT":
            state["current"] = release_of(rest)
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


def on_host(host, work):
    """Connect, run work(session), close: errors become {"host", "error"} for read-only tasks."""
    try:
        with HostSession(host, lambda e: None) as s:
            return work(s)
    except TransportError as exc:
        return {"host": host.name, "error": str(exc)}


def host_state(host, pipeline, emit=None):
    """Read-only: releases, live one, bad marks, lock and recent history of one host."""
    return on_host(host, lambda s: {**read_state(s, host, pipeline), "host": host.name})


def unlock_host(host, pipeline=None, emit=None):
    """Clear a lock left by a dead deploy; returns what the lock said (who/when)."""
    def work(s):
        res = s.run([PlannedStep("unlock", "unlock", [locks.force_release(StepContext(host, pipeline, "-"))])])
        out = res[0].commands[0].output if res[0].commands else ""
        if "NOLOCK" in out:
            return {"host": host.name, "removed": False, "was": None}
        return {"host": host.name, "removed": True, "was": locks.describe(out.replace("REMOVED", ""), hint=False)}
    return on_host(host, work)
