"""The per-host deploy lock: one shape for deploy, rollback, heal and `fab unlock`.

`<deploy_path>/.deploy/lock/` is taken with mkdir, which is atomic: exactly one contender gets
it. Its `info` holds who (user, machine, pid, token), what (action, release) and since when;
a refused contender prints it with its age and exits LOCKED_EXIT. Only the token that took
it gives it back; `fab unlock` removes any lock (for locks left by a dead deploy).

Inline shell on purpose: the lock is taken before the tool's programs are installed.
"""

import json

from .commands import PlannedStep

LOCKED_EXIT = 75   # the lock is held by someone else
NOT_A_LINK_EXIT = 78   # `current` is a real directory (releases layout): nothing is deployed there


def take(ctx, operator, action="deploy", require_path=False):
    """The lock step. require_path: refuse when the deploy path does not exist (heal on a
    wrong host must not create directories there). In the releases layout it also refuses,
    before writing anything, a `current` that is a real directory (a server laid out by hand):
    a switch could never replace it (NOT_A_LINK_EXIT)."""
    p = ctx.paths
    info = json.dumps({"user": operator.user, "machine": operator.machine, "pid": operator.pid,
                       "release": ctx.release, "action": action, "token": operator.token})
    commands = []
    if require_path:
        commands.append(ctx.cmd("test -d {} || {{ echo 'deploy path '{}' does not exist: nothing deployed to "
                                + action + "'; exit 1; }}", p.root, p.root, desc="check the deploy path"))
    guard = ""
    args = []
    if not ctx.in_place and not require_path:
        guard = ("if [ -e {} ] && [ ! -L {} ]; then echo {}' is a real directory, not a link to a release: a "
                 "switch cannot replace it. Move the server to the releases layout first (docs/remediation.md: "
                 "moving an in-place server), or deploy it with strategy: in-place'; exit "
                 + str(NOT_A_LINK_EXIT) + "; fi; ")
        args = [p.current, p.current, p.current]
    commands.append(ctx.cmd(
        guard + "mkdir -p {} && if mkdir {} 2>/dev/null; then printf '%s\\n' {} > {}; date -u +%Y-%m-%dT%H:%M:%SZ >> {};"
        " else echo LOCKED; cat {} 2>/dev/null; age=$(( $(date +%s) - $(stat -c %Y {}) )); echo \"AGE $age\"; exit "
        + str(LOCKED_EXIT) + "; fi",
        *args, p.meta, p.lock, info, p.lock + "/info", p.lock + "/info", p.lock + "/info", p.lock,
        desc="take the deploy lock"))
    return PlannedStep("lock", "lock", commands)


def release(ctx, operator):
    """Give back our own lock: a lock someone else took after a forced unlock is theirs.
    Prints "unlocked" (kept as the `unlocked` fact), so a session knows it is no longer held."""
    return ctx.cmd("if grep -qF -- {} {} 2>/dev/null; then rm -rf {}; fi; echo unlocked",
                   operator.token, ctx.paths.lock + "/info", ctx.paths.lock, capture="unlocked",
                   desc="release the deploy lock")


def release_step(ctx, operator):
    return PlannedStep("unlock", "unlock", [release(ctx, operator)])


def force_release(ctx):
    """`fab unlock`: remove whatever lock is there, printing what it said."""
    return ctx.cmd("if [ -d {} ]; then cat {} 2>/dev/null; rm -rf {}; echo REMOVED; else echo NOLOCK; fi",
                   ctx.paths.lock, ctx.paths.lock + "/info", ctx.paths.lock, desc="remove the deploy lock")


def held_by_other(step_result):
    failed = step_result.failed_command if step_result else None
    return bool(failed and failed.exit_code == LOCKED_EXIT)


def describe(output, stale_after=None, host="HOST", hint=True):
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
