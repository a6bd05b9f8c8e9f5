"""verify: HTTP check of the health URL on the host (deploy/remote/verify.sh), retried for a bounded time.

With `expect_release` (default) the body must contain the release id: a 200 from the old code
is not a success.
"""

import math

from .. import fpmctl, remote, values
from ..errors import ConfigError
from . import ANY, Kind

KIND = Kind("verify", order=90, phase=ANY, on_rollback=True, healable=True,
            summary="the health URL answers with the new release id, and the pool runs no stale code")


def parse(section):
    interval = section.get("interval", (int, float), 0.5)
    if isinstance(interval, bool) or not math.isfinite(interval) or interval <= 0:
        raise section.error("interval", f"must be a number of seconds more than 0, got {interval!r}", "e.g. 0.5")
    status = section.integer("status", 200, minimum=100)
    if status > 599:
        raise section.error("status", f"not an HTTP status code: {status}", "e.g. 200 (100-599)")
    return {
        "url": section.string("url", rule=values.http_url),
        "status": status,
        "expect_release": section.boolean("expect_release", True),
        "timeout": section.integer("timeout", 30, minimum=1),
        "interval": interval,
        "probe": section.boolean("probe", True),
    }


def plan(settings, ctx):
    url = settings["url"] or ctx.host.health_url
    if not url:
        raise ConfigError(f"no URL to verify for host '{ctx.host.name}'", ctx.host.source, key="health_url",
                          hint="set health_url on the host (or defaults), or url: on the verify step")
    commands = [remote.run(ctx, "verify.sh", url, str(settings["status"]),
                           ctx.release if settings["expect_release"] else "", str(settings["timeout"]),
                           str(settings["interval"]), ctx.paths.meta + "/verify.body", desc=f"verify {url}")]
    if settings["probe"]:
        # Beside HTTP: the pool itself must execute the release, with no stale cached scripts
        # (the incident's validate_timestamps=0 case: docs/why.md#validate-timestamps).
        commands.append(fpmctl.command(ctx, "verify", release=ctx.release))
    return commands
