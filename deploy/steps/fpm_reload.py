"""fpm_reload: the inventory's reload command, then wait until the pool answers again.

A graceful reload (SIGUSR2) clears in-memory OPCache and JIT (docs/why.md); waiting for the pool
keeps the next step from hitting a pool that is still restarting.

A reload is also the one step of a deploy that can fail user requests: with FPM's default
process_control_timeout = 0 the master kills the requests in flight (nginx answers 502), and
even a graceful one holds new requests until the old workers are done. `when: needed` reloads
only when the pool, asked itself (fpmctl.php verify), does not already execute the release
with no stale cached script: after a proven in-pool OPCache reset it never has to.
"""

from .. import fpmctl
from ..commands import Raw
from ..errors import ConfigError
from . import ANY, Kind

KIND = Kind("fpm_reload", order=80, phase=ANY, on_rollback=True, resets_pool=True, healable=True,
            summary="reload PHP-FPM gracefully and wait until the pool answers")

WHEN = ("always", "needed")


def parse(section):
    when = section.string("when", "always")
    if when not in WHEN:
        raise section.error("when", f"unknown value {when!r}",
                            "use 'always' (reload on every deploy) or 'needed' (only when the pool does not "
                            "already run the release)")
    return {"wait": section.integer("wait", 30, minimum=1), "when": when}


def plan(settings, ctx):
    if not ctx.host.fpm.reload:
        raise ConfigError(f"host '{ctx.host.name}' has no fpm.reload command but the pipeline has a fpm_reload step",
                          ctx.host.source, key="fpm.reload",
                          hint="set fpm: {reload: 'sudo systemctl reload php8.3-fpm'} in the inventory")
    reload = ctx.cmd("{}", Raw(ctx.host.fpm.reload), desc="reload PHP-FPM (inventory command)")
    wait = fpmctl.command(ctx, "wait", timeout=settings["wait"])
    if settings["when"] == "always":
        return [reload, wait]
    check = fpmctl.command(ctx, "verify", release=ctx.release)
    skip = f"no reload needed: the pool executes {ctx.release} with no stale cached script"
    return [ctx.cmd("if " + check.template + "; then echo {}; else " + reload.template + " && " + wait.template + "; fi",
                    *check.args, skip, *reload.args, *wait.args,
                    desc="reload PHP-FPM only if the pool does not already run the release")]
