"""opcache_reset: reset OPCache inside the FPM pool (FastCGI to its socket) and prove it happened.

fpmctl.php reads the pool's restart counters, asks the pool to reset, and fails unless the
counters moved. When the inventory sets fpm.file_cache, that on-disk cache is cleared too: it
survives resets and reloads (docs/why.md).
"""

from .. import fpmctl
from . import ANY, Kind

KIND = Kind("opcache_reset", order=70, phase=ANY, on_rollback=True, resets_pool=True, healable=True,
            summary="reset OPCache inside the PHP-FPM pool and prove it by its counters")


def parse(section):
    return {}


def plan(settings, ctx):
    commands = []
    if ctx.host.fpm.file_cache:
        commands.append(ctx.cmd("find {} -mindepth 1 -delete", ctx.host.fpm.file_cache, sudo=True,
                                desc="clear the OPCache file cache"))
    commands.append(fpmctl.command(ctx, "reset"))
    return commands
