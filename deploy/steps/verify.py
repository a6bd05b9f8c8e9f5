"""verify: HTTP check of the health URL on the host, retried for a bounded time.

With `expect_release` (default) the body must contain the release id: a 200 from the old code
is not a success.
"""

import math

from .. import fpmctl, values
from ..errors import ConfigError

KIND = "verify"
ON_ROLLBACK = True

# POSIX sh, so it runs under whatever login shell the deploy user has. Bounded by a deadline,
# not a count of tries: each curl may take up to its own --max-time.
SCRIPT = (
    "end=$(( $(date +%s) + {timeout} )); while :; do"
    " code=$(curl -sS -o {body} -w '%{{http_code}}' --max-time {max_time} {url} 2>/dev/null);"
    " if [ \"$code\" = {status} ]; then"
    " if [ -z {expect} ] || grep -qF -- {expect} {body}; then"
    " echo \"verified: HTTP $code from \"{url}; rm -f {body}; exit 0; fi;"
    " why=\"HTTP $code but the body does not contain release \"{expect}; else why=\"HTTP $code, want \"{status}; fi;"
    " if [ $(date +%s) -ge $end ]; then echo \"verify failed after {timeout}s: $why (\"{url}\")\";"
    " head -c 300 {body} 2>/dev/null; echo; rm -f {body}; exit 1; fi;"
    " sleep {interval}; done"
)


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
    commands = [ctx.script(SCRIPT, body=ctx.paths.meta + "/verify.body", url=url, status=str(settings["status"]),
                           expect=ctx.release if settings["expect_release"] else "",
                           timeout=str(settings["timeout"]), max_time=str(min(5, settings["timeout"])),
                           interval=str(settings["interval"]), desc=f"verify {url}")]
    if settings["probe"]:
        # Beside HTTP: the pool itself must execute the release, with no stale cached scripts
        # (DESIGN principle 6; the incident's validate_timestamps=0 case).
        commands.append(fpmctl.command(ctx, "verify", release=ctx.release))
    return commands
