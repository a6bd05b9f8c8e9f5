"""The app's long-running workers (queue workers, Horizon, the scheduler's schedule:work): the
commands that restart them and prove they run the live release. Commands only, as data: the
workers remedy of `fab heal` plans with them, and so can a pipeline step.

    ctx = StepContext(host, pipeline, live_release_id)      # in place: the deploy path
    restart_command(ctx)                 # the inventory's workers.restart, else queue:restart
    proof_command(ctx, switched_at=None, expect=1)          # deploy/remote/workers.sh

PHP workers load the code once, when they start: after a switch they keep running the old
release until they are restarted, and `current` pointing elsewhere changes nothing for them
(their working directory is the release they started in).
"""

from . import remote
from .commands import Raw

DEFAULT_RESTART = "artisan queue:restart"


def describe_restart(host):
    """What the restart runs, in words (findings and plans)."""
    return host.workers.restart or f"{host.php} {DEFAULT_RESTART}"


def restart_command(ctx):
    """Restart the workers, in the live release (ctx.release_dir): the inventory's
    `workers.restart` as written (e.g. `sudo supervisorctl restart app:*`), else
    `php artisan queue:restart` as the deploy user: every queue worker exits after its current
    job and its process manager starts it again, from the live release. (queue:restart does
    not reach `schedule:work` or Horizon: give those hosts a workers.restart.)"""
    restart = ctx.host.workers.restart
    if restart:
        return ctx.cmd("cd {} && {}", ctx.release_dir, Raw(restart), desc="restart the workers (inventory workers.restart)")
    return ctx.cmd("cd {} && {} artisan queue:restart --no-interaction", ctx.release_dir, ctx.php(),
                   desc="restart the queue workers (artisan queue:restart)")


def proof_command(ctx, switched_at=None, expect=1, harder=False):
    """deploy/remote/workers.sh: every worker of the app runs the live release and started at or
    after `switched_at`, at least `expect` of them, checked again until `workers.timeout` passes;
    with `harder`, stragglers get SIGTERM, then SIGKILL, each followed by another wait.

    switched_at: epoch seconds on the HOST's clock; None: when the live release went live, read
    on the host by workers.sh (current's own mtime: activate renames a fresh symlink into place;
    in place, the mtime of RELEASE). Run as the deploy user, never through sudo (that would need
    a sudoers rule for a shell): a process whose /proc/PID/cwd it cannot read still counts when
    it started after the switch through `<deploy_path>/current`, and is `unknown`, never proven,
    otherwise."""
    w = ctx.host.workers
    args = ["--wait", str(w.timeout), "--expect", str(int(expect))]
    if w.processes:
        args += ["--pattern", w.processes]
    if harder:
        args.append("--kill")
    args += [ctx.host.deploy_path, ctx.release_dir, "current" if switched_at is None else f"{float(switched_at):.3f}"]
    # A second and a third round when restarting harder, plus the scans themselves.
    rounds = 3 if harder else 1
    return remote.run(ctx, "workers.sh", *args, timeout=rounds * w.timeout + 30,
                      desc=f"prove every worker runs the live release (within {w.timeout}s)")
