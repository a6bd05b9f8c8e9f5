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

from .. import workers
from . import LIVE, Kind

KIND = Kind("workers", order=95, phase=LIVE, on_rollback=True, healable=True,
            summary="restart the queue workers and the scheduler, then prove each runs the live release")


def parse(section):
    return {
        "expect": section.integer("expect", None, minimum=0),
        "harder": section.boolean("harder", True),
    }


def expected(settings, host):
    """How many workers must be proven: the step's `expect`, else 1 on a host whose inventory
    says it has workers (`workers.restart` or `workers.processes`), else 0 (whatever runs is
    proven; a host without workers passes)."""
    if settings.get("expect") is not None:
        return settings["expect"]
    return 1 if (host.workers.restart or host.workers.processes) else 0


def plan(settings, ctx):
    return [workers.restart_command(ctx),
            workers.proof_command(ctx, expect=expected(settings, ctx.host), harder=settings["harder"])]
