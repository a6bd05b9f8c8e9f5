"""Whole-operation plans: the steps of a deploy or rollback for one host, as data.

The dry run prints exactly these; the executor runs exactly these. Nothing here touches a host.
"""

import dataclasses
import getpass
import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

from . import locks, remote
from .commands import PlannedStep
from .context import RELEASE_RE, StepContext
from .errors import ConfigError

ALREADY_LIVE_EXIT = 76  # prepare: the release id asked for is already the live release
IS_LIVE_EXIT = 77       # discard: the release to remove is the one current points to (never removed)


@dataclass(frozen=True)
class Operator:
    """Who runs this deploy: recorded in the lock and the history.

    `run`: the run id of a saved plan (deploy/planfile.py), chosen when the plan is made. It is
    then the token (the lock's owner, the history's `by`), so the commands do not depend on the
    process that runs the plan; such a plan's operator is the user and machine that made it,
    with pid 0 (no process to look for)."""

    user: str
    machine: str
    pid: int
    run: str | None = None

    @classmethod
    def here(cls, run=None):
        try:
            user = getpass.getuser()
        except Exception:  # no passwd entry (containers): still say something useful
            user = str(os.getuid())
        if run:
            return cls(user=user, machine=socket.gethostname(), pid=0, run=run)
        return cls(user=user, machine=socket.gethostname(), pid=os.getpid())

    @property
    def token(self):
        return self.run or f"{self.user}@{self.machine}:{self.pid}"


def new_release_id(now=None):
    """Sortable UTC timestamp, the default release id."""
    return (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")


def check_release_id(release, flag="--release"):
    if not RELEASE_RE.match(release or ""):
        raise ConfigError(f"invalid release id {release!r} (from {flag})",
                          hint="use letters, digits, '.', '_' and '-' (a git sha works), at most 128 characters")
    return release


def _json_line(record):
    # __NOW__ is replaced by the host's clock when the line is written: the plan stays exact.
    return json.dumps({"time": "__NOW__", **record}, sort_keys=False)


def append_history(ctx, record):
    return ctx.cmd("printf '%s\\n' {} | sed \"s/__NOW__/$(date -u +%Y-%m-%dT%H:%M:%SZ)/\" >> {}",
                   _json_line(record), ctx.paths.history, desc="append to the deploy history")


def prepare(ctx):
    p = ctx.paths
    if ctx.in_place:
        return prepare_in_place(ctx)
    return PlannedStep("prepare", "prepare", [
        ctx.cmd("mkdir -p {} {} {} {} && chmod 0755 {}", p.releases, p.shared, p.bad, p.meta + "/bin", p.meta,
                desc="create the release layout"),
        ctx.cmd("readlink {} || true", p.current, capture="previous", desc="read the live release"),
        ctx.cmd("if [ -e {} ]; then live=$(readlink {}); if [ \"$live\" = {} ]; then echo 'release is already live';"
                " exit " + str(ALREADY_LIVE_EXIT) + "; fi; rm -rf {}; fi; rm -f {}",
                ctx.release_dir, p.current, "releases/" + ctx.release, ctx.release_dir, p.bad + "/" + ctx.release,
                desc="remove a leftover build of this release id"),
        remote.listing(ctx),
    ], notes=[remote.installed_note(ctx)])


def prepare_in_place(ctx):
    """In place there is no new directory to build in: snapshot the live tree first.

    The snapshot hard-links every file (cheap), except bootstrap/cache/*.php which artisan
    rewrites in place (a hard link would change the snapshot too). rsync replaces changed
    files by rename, so the snapshot keeps the old content.
    """
    p, root = ctx.paths, ctx.host.deploy_path
    return PlannedStep("prepare", "prepare", [
        ctx.cmd("mkdir -p {} {} {} && chmod 0755 {} && rm -f {}", p.bad, p.meta + "/bin", p.snapshots, p.meta,
                p.bad + "/" + ctx.release, desc="create the metadata dirs; a redeployed id is no longer bad"),
        ctx.cmd("cat {} 2>/dev/null || true", root + "/RELEASE", capture="previous", desc="read the live release"),
        remote.run(ctx, "snapshot.sh", "take", root, desc="hard-link snapshot of the live tree"),
        remote.listing(ctx),
    ], notes=[remote.installed_note(ctx)])


def restore_snapshot(ctx):
    """In place, 'activate' for a rollback: put the snapshot's files back into the live tree."""
    return remote.run(ctx, "snapshot.sh", "restore", ctx.host.deploy_path, ctx.release, gate=True,
                      desc=f"restore the snapshot of {ctx.release}")


def prune(ctx):
    keep = ctx.pipeline.keep_releases
    if ctx.in_place:
        return remote.run(ctx, "prune.sh", "snapshots", ctx.host.deploy_path, str(keep),
                          desc=f"keep the {keep - 1} newest snapshots")
    return remote.run(ctx, "prune.sh", "releases", ctx.host.deploy_path, str(keep),
                      desc=f"keep the {keep} newest releases")


def closing(ctx, operator):
    """The end of every operation under the lock (finalize, discard, a rollback, a needs-human
    record, a session given up): out of maintenance mode if the pipeline has that step, then
    the lock given back."""
    pipe = ctx.pipeline
    up = [pipe.first("maintenance").module.up(ctx)] if pipe is not None and pipe.first("maintenance") else []
    return up + [locks.release(ctx, operator)]


def deploy(host, pipeline, release, operator, primary=None):
    """The success path of a deploy: lock, prepare, every pipeline step, finalize.

    primary: the host that runs the once-per-fleet steps (migrate); None: this one."""
    ctx = StepContext(host=host, pipeline=pipeline, release=release)
    steps = [locks.take(ctx, operator), prepare(ctx)]
    waiting = False   # a host that does not run the once-per-fleet step goes on past it only after it ran
    for step in pipeline.steps:
        if step.spec.once_per_fleet and primary not in (None, host.name):
            steps.append(PlannedStep(step.name, step.kind, [], step.where,
                                     notes=[f"runs once per deploy, on {primary}: not on this host"]))
            waiting = True
            continue
        commands = step.module.plan(step.settings, ctx)
        notes = []
        if waiting and commands and not commands[0].gate:
            commands = [dataclasses.replace(commands[0], hold=True)] + commands[1:]
            notes = [f"waits until the migration on {primary} ended"]
        waiting = waiting and not commands
        steps.append(PlannedStep(step.name, step.kind, commands, step.where, notes=notes))
    steps.append(PlannedStep("finalize", "finalize", [
        prune(ctx),
        *([] if ctx.in_place else [remote.run(ctx, "manifest.sh", "record", host.deploy_path, release,
                                              desc="remember the files of the verified release")]),
        append_history(ctx, {"action": "deploy", "release": release, "state": "deployed", "by": operator.token,
                              **({"migrated_on": primary} if primary not in (None, host.name)
                                 and any(s.spec.once_per_fleet for s in pipeline.steps) else {})}),
        *closing(ctx, operator),
    ]))
    return steps


def discard(host, pipeline, release, operator, reason):
    """A step failed before activation: drop the half-built release, the live one was never touched."""
    ctx = StepContext(host=host, pipeline=pipeline, release=release)
    # In place the "release dir" is the live tree: never remove it (nothing was built aside).
    # discard.sh asks the host: the release current points to is never removed (IS_LIVE_EXIT).
    remove = [] if ctx.in_place else [remote.run(ctx, "discard.sh", host.deploy_path, release,
                                                 desc="remove the half-built release")]
    return [PlannedStep("discard", "discard", remove + [
        append_history(ctx, {"action": "deploy", "release": release, "state": "failed before switch",
                              "reason": reason, "by": operator.token}),
        *closing(ctx, operator),
    ])]


def rollback(host, pipeline, target, operator, failed=None, reason="", action="rollback", take_lock=False,
             unmark=None):
    """Switch back to `target` and make the pool execute it: check that its files are still
    the ones it was verified with, activate, then the post-activation steps whose kind reruns
    on rollback (opcache_reset, fpm_reload, verify; run steps with on_rollback: true).
    `failed` is marked bad; `unmark`: a release whose bad mark this rollback takes back."""
    ctx = StepContext(host=host, pipeline=pipeline, release=target, phase="rollback")
    steps = []
    if take_lock:
        steps.append(locks.take(ctx, operator, action))
        steps.append(PlannedStep("prepare", "prepare", [
            ctx.cmd("mkdir -p {} {}", ctx.paths.bad, ctx.paths.meta + "/bin", desc="create the metadata dirs")]))
    if not ctx.in_place:
        steps.append(PlannedStep("check target", "check", [
            remote.run(ctx, "manifest.sh", "check", host.deploy_path, target,
                       desc=f"the files {target} was verified with are still there")]))
    if pipeline.first("migrate") and not ctx.in_place:
        # The schema is never rolled back: say so when the target lacks migrations the database has.
        steps.append(PlannedStep("schema", "check", [
            remote.run(ctx, "schema.sh", "ahead", ctx.paths.current, ctx.release_dir, ctx.php(), capture="schema",
                       desc=f"migrations the database has that {target} does not know")]))
    if failed or unmark:
        steps.append(PlannedStep("mark bad", "mark", (
            [ctx.cmd("mkdir -p {} && printf '%s\\n' {} > {}", ctx.paths.bad, reason or "failed verification",
                     ctx.paths.bad + "/" + failed, desc=f"mark {failed} bad")] if failed else []) + (
            [ctx.cmd("rm -f {}", ctx.paths.bad + "/" + unmark, desc=f"{unmark} is good again")] if unmark else [])))
    _, activate, after = pipeline.split()
    if ctx.in_place:
        steps.append(PlannedStep(f"{activate.name} (rollback)", "activate", [restore_snapshot(ctx)], activate.where))
    else:
        steps.append(PlannedStep(f"{activate.name} (rollback)", "activate",
                                 activate.module.plan(activate.settings, ctx), activate.where))
    if not pipeline.resets_pool_after_switch():
        # The pool must drop the failed release's code even when the pipeline never resets it.
        from .steps import opcache_reset
        steps.append(PlannedStep("opcache_reset (rollback)", "opcache_reset", opcache_reset.plan({}, ctx)))
    for step in after:
        if step.on_rollback:
            steps.append(PlannedStep(f"{step.name} (rollback)", step.kind, step.module.plan(step.settings, ctx), step.where))
    steps.append(PlannedStep("finalize", "finalize", [
        append_history(ctx, {"action": action, "release": target, "from": failed, "state": "rolled back",
                              "reason": reason, "by": operator.token}),
        *closing(ctx, operator),
    ]))
    return steps
