"""fpm_reload: the inventory's reload command, then wait until the pool answers again.

A graceful reload (SIGUSR2) clears in-memory OPCache and JIT (docs/why.md); waiting for the pool
keeps the next step from hitting a pool that is still restarting.
"""

from .. import fpmctl
from ..commands import Raw
from ..errors import ConfigError
from . import ANY, Kind

KIND = Kind("fpm_reload", order=80, phase=ANY, on_rollback=True, resets_pool=True, healable=True,
            summary="reload PHP-FPM gracefully and wait until the pool answers")


def parse(section):
    return {"wait": section.integer("wait", 30, minimum=1)}


def plan(settings, ctx):
    if not ctx.host.fpm.reload:
        raise ConfigError(f"host '{ctx.host.name}' has no fpm.reload command but the pipeline has a fpm_reload step",
                          ctx.host.source, key="fpm.reload",
                          hint="set fpm: {reload: 'sudo systemctl reload php8.3-fpm'} in the inventory")
    return [
        ctx.cmd("{}", Raw(ctx.host.fpm.reload), desc="reload PHP-FPM (inventory command)"),
        fpmctl.command(ctx, "wait", timeout=settings["wait"]),
    ]
