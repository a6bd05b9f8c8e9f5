"""maintenance: `php artisan down` while migrations run, only when some are pending, and
`php artisan up` guaranteed afterwards: the tool adds it to every end of the operation
(success, a failure before or after the switch, a rollback, a signal), right before the lock is
given back. Optional: with expand/contract migrations (docs/pipeline.md) the site never needs
to go down.
"""

from .. import remote
from . import BUILD, Kind

KIND = Kind("maintenance", order=44, phase=BUILD,
            summary="maintenance mode while migrations run (only when some are pending); up again at the end")


def parse(section):
    return {}


def plan(settings, ctx):
    return [remote.run(ctx, "schema.sh", "down", ctx.host.deploy_path, ctx.release_dir, ctx.php(),
                       desc="php artisan down, if migrations are pending")]


def up(ctx):
    """Out of maintenance mode, if this tool put the host there (any release's artisan works:
    the mark lives in the shared storage)."""
    return remote.run(ctx, "schema.sh", "up", ctx.host.deploy_path, ctx.php(), desc="php artisan up, if we took it down")
