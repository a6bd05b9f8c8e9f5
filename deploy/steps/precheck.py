"""precheck: before the switch, the live PHP-FPM pool must serve the NEW release correctly.

One FastCGI request for the health URL, sent to the host's real pool socket (so executed by a
pool worker, as the pool user, with the pool's php.ini, OPCache and extensions) for the new
release's front controller, with the params nginx sends (deploy/remote/precheck.sh, through
fpmctl.php `request`). It must answer as `verify` expects: the status, and the release id in
the body. A release that fails it is discarded like any failed build step: current never
moves, so no user request ever reaches it (also on a first deploy, with nothing to roll back to).

The app reads its id from RELEASE, which also marks a build complete (a rollback target), so
precheck.sh writes it only for the duration of the request, under a bad mark that survives
only if the program is killed mid-check.
"""

from urllib.parse import urlsplit

from .. import remote, values
from ..errors import ConfigError
from . import BUILD, Kind

KIND = Kind("precheck", order=55, phase=BUILD,
            summary="the live pool serves the new release's health URL as verify expects, before the switch")

DEFAULT_FRONT = "public/index.php"


def parse(section):
    path = section.string("path")
    if path is not None and (not path.startswith("/") or any(c.isspace() for c in path)):
        raise section.error("path", f"must be a URL path starting with /, got {path!r}", "e.g. /up or /version")
    url = section.string("url", rule=values.http_url)
    if path is not None and url is not None:
        raise section.error("path", "give url or path, not both", "path replaces the path of the health URL")
    front = section.string("front_controller", DEFAULT_FRONT)
    if front.startswith("/") or ".." in front.split("/") or not front.endswith(".php"):
        raise section.error("front_controller", f"must be a .php file inside the release, got {front!r}",
                            "e.g. public/index.php")
    status = section.integer("status", None, minimum=100, maximum=599)
    return {
        "url": url,
        "path": path,
        "status": status,
        "expect_release": section.boolean("expect_release", None),
        "front_controller": front,
        "timeout": section.integer("timeout", 10, minimum=1),
        "graceful_reload": section.boolean("graceful_reload", True),
    }


def _target(settings, ctx):
    """URL, status and expect_release: the step's own, else those of the pipeline's verify step,
    else the host's health_url, 200 and true (what verify checks after the switch)."""
    verify = ctx.pipeline.first("verify")
    checked = verify.settings if verify else {}
    url = settings["url"] or checked.get("url") or ctx.host.health_url
    if not url:
        step = ctx.pipeline.first("precheck")
        raise ConfigError(f"no URL to check for host '{ctx.host.name}' before the switch",
                          step.file if step else ctx.host.source, step.line if step else None,
                          key=f"steps[{ctx.pipeline.steps.index(step)}].precheck.url" if step else "health_url",
                          hint="set health_url on the host (or defaults), or url: on the precheck or verify step")
    parts = urlsplit(url)
    uri = settings["path"] or ((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
    status = settings["status"] or checked.get("status") or 200
    expect = settings["expect_release"]
    if expect is None:
        expect = checked.get("expect_release", True)
    return parts, uri, status, expect


def _check_order(ctx):
    """precheck sees the release as it will go live: nothing may change it afterwards."""
    steps = ctx.pipeline.steps
    mine = next(i for i, s in enumerate(steps) if s.kind == "precheck")
    later = next((s for s in steps[mine + 1:] if s.spec.phase == BUILD), None)
    if later is not None:
        raise ConfigError(f"'{later.name}' comes after 'precheck' and would change the release it checked",
                          later.file, later.line, key="steps",
                          hint="put precheck last before activate")


def _reloads_always(ctx):
    """Does the pipeline reload PHP-FPM after the switch on every deploy?"""
    _, _, after = ctx.pipeline.split()
    return any(s.kind == "fpm_reload" and s.settings.get("when", "always") == "always" for s in after)


def plan(settings, ctx):
    if ctx.in_place:
        step = ctx.pipeline.first("precheck")
        raise ConfigError("precheck needs the releases strategy: in place the code is live as soon as sync writes it",
                          step.file, step.line, key=f"steps[{ctx.pipeline.steps.index(step)}].precheck",
                          hint="drop precheck, or use strategy: releases")
    _check_order(ctx)
    parts, uri, status, expect = _target(settings, ctx)
    graceful = settings["graceful_reload"] and _reloads_always(ctx)
    return [remote.run(ctx, "precheck.sh", ctx.host.deploy_path, ctx.release, ctx.php(), ctx.paths.fpmctl,
                       ctx.host.fpm.socket, settings["front_controller"], uri, parts.netloc.rpartition("@")[2],
                       "1" if parts.scheme == "https" else "0", str(status), ctx.release if expect else "",
                       str(settings["timeout"]), "1" if graceful else "0",
                       desc=f"the pool serves {uri} from the new release, before the switch")]
