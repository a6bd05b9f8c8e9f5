"""workers: after the switch, restart the app's long-running PHP processes (queue workers,
Horizon, the scheduler's schedule:work) the way the host is set up, then PROVE that every
one of them runs the release now live.

Restart: the host's `workers.restart` command from the inventory (a supervisorctl or systemctl
command, run as written in the live release), else `php artisan queue:restart`. The latter
only reaches `queue:work` and `horizon` processes, through the app's cache: give each host its
own cache prefix, or one host's restart stops every host's workers; `schedule:work` needs its
supervisor. Proof (deploy/remote/workers.sh): every matching process started after `current`
moved and works in the live release (/proc/PID/cwd), within `workers.timeout` seconds; one
that does not is restarted harder (SIGTERM, its supervisor starts a new one) and proven again.
A worker still on the old release then fails the step, naming its pid, command line and the
release it runs: healing runs, then the host is rolled back, and since this kind reruns on
rollback, the workers are restarted and proven on the old release too.
"""

from .. import remote
from ..commands import Raw
from . import LIVE, Kind

KIND = Kind("workers", order=95, phase=LIVE, on_rollback=True, healable=True,
            summary="restart the queue workers and the scheduler, then prove each runs the live release")


def parse(section):
    return {
        "expect": section.integer("expect", 1, minimum=0),
        "harder": section.boolean("harder", True),
    }


def restart(ctx):
    """The restart command of this host, run in the release being made live."""
    command = ctx.host.workers.restart
    if command:
        return ctx.cmd("cd {} && {}", ctx.release_dir, Raw(command), desc="restart the workers (inventory command)")
    return ctx.cmd("cd {} && {} artisan queue:restart --no-interaction", ctx.release_dir, ctx.php(),
                   desc="php artisan queue:restart")


def proof(ctx, expect=1, harder=True):
    """workers.sh: every worker started after the switch and runs the live release."""
    w = ctx.host.workers
    args = ["--wait", str(w.timeout), "--expect", str(expect)]
    if w.processes:
        args += ["--pattern", w.processes]
    if harder:
        args.append("--kill")
    # Twice the wait (a second round after restarting harder), plus the start of the scan.
    return remote.run(ctx, "workers.sh", *args, ctx.host.deploy_path, ctx.release_dir, "current",
                      timeout=2 * w.timeout + 30, desc=f"prove every worker runs {ctx.release}")


def plan(settings, ctx):
    return [restart(ctx), proof(ctx, settings["expect"], settings["harder"])]
