"""sync: rsync the source into releases/<id>, hard-linking unchanged files from the live release."""

import shlex
import sys
from pathlib import Path

from .. import remote
from ..errors import ConfigError
from . import BUILD, Kind
from ._paths import relative_paths

KIND = Kind("sync", order=10, phase=BUILD, ships_code=True,
            summary="copy the code into a new release dir, sending only changed files")


# Never shipped, whatever the pipeline says: RELEASE is written per release, and cache files
# would be hard-linked from the live release (--link-dest) and then rewritten in place by
# artisan, changing the live release's files too.
ALWAYS_EXCLUDE = ["/RELEASE", "/bootstrap/cache/*.php"]
DEFAULT_EXCLUDE = [".git", "node_modules", "/.env", "/storage/logs/*.log"]


def parse(section):
    excludes = section.string_list("exclude", DEFAULT_EXCLUDE)
    # keep_assets: built files of the live release that the new one lacks are hard-linked into
    # it, so pages rendered just before the switch still load them (deploy/remote/keep_assets.sh).
    return {"exclude": excludes, "keep_assets": relative_paths(section, "keep_assets", [])}


RSH = Path(__file__).resolve().parent.parent / "rsh.py"


def ssh_command(host):
    """rsync's remote shell: deploy/rsh.py, which tunnels through the tool's own SSH connection
    to the host (one connection per host; its host key was checked when it was opened).
    -I -S: it needs the standard library only, and Python starts in 14 ms instead of 21."""
    return " ".join(shlex.quote(p) for p in (sys.executable, "-I", "-S", str(RSH)))


def remote_spec(host, path):
    address = f"[{host.address}]" if ":" in host.address else host.address
    return f"{host.user}@{address}:{path}/"


# In place, these live in the tree and must survive: excluded paths are also protected from
# --delete.
IN_PLACE_PROTECT = ["/.deploy", "/storage", "/.env"]
# ...and vendor/ when a composer step builds it on the host (it is not in the source).
COMPOSER_PROTECT = ["/vendor"]


def plan(settings, ctx):
    host = ctx.host
    source = ctx.pipeline.source.rstrip("/") + "/"
    excludes = ALWAYS_EXCLUDE + list(settings["exclude"])
    if ctx.in_place:
        if settings["keep_assets"]:
            step = ctx.pipeline.first("sync")
            raise ConfigError("keep_assets needs the releases strategy: in place the old files are replaced where they are",
                              step.file, step.line, key=f"steps[{ctx.pipeline.steps.index(step)}].sync.keep_assets",
                              hint="drop keep_assets, or use strategy: releases")
        # --checksum --no-times: only changed content is written, and it gets a fresh mtime,
        # so the pool probe can tell which cached scripts went stale.
        built_here = COMPOSER_PROTECT if any(s.kind == "composer" for s in ctx.pipeline.steps) else []
        excludes = IN_PLACE_PROTECT + built_here + excludes
        template = ("rsync --archive --no-times --omit-dir-times --checksum --no-owner --no-group --delete"
                    " --secluded-args --stats --chmod=go-w,Dgo+rx,Fgo+r" + " --exclude={}" * len(excludes) + " -e {} {} {}")
        args = [*excludes, ssh_command(host), source, remote_spec(host, ctx.release_dir)]
        return [
            ctx.cmd(template, *args, local=True, desc="send the code into the live tree (in place)"),
            # tmp + rename: RELEASE may be a hard link into the snapshot, which must keep its id.
            ctx.cmd("printf '%s\\n' {} > {} && mv -f {} {}", ctx.release, ctx.release_dir + "/RELEASE.tmp",
                    ctx.release_dir + "/RELEASE.tmp", ctx.release_dir + "/RELEASE", desc="record the release id"),
        ]
    # --checksum: a file whose content changed but whose size and mtime did not (a same-size
    # edit, builds that normalise mtimes: git archive, zip artifacts) must not be hard-linked
    # from the live release. Costs one read of both trees (docs/benchmark.md).
    template = ("rsync --archive --no-owner --no-group --delete --secluded-args --stats --checksum"
                " --chmod=go-w,Dgo+rx,Fgo+r --link-dest={}" + " --exclude={}" * len(excludes) + " -e {} {} {}")
    args = [ctx.paths.current + "/", *excludes, ssh_command(host), source, remote_spec(host, ctx.release_dir)]
    # RELEASE is written by activate, when the build is complete: a release dir without it is
    # an abandoned build that rollback must never pick.
    commands = [ctx.cmd(template, *args, local=True, desc="send the code, hard-linking unchanged files")]
    if settings["keep_assets"]:
        commands.append(remote.run(ctx, "keep_assets.sh", host.deploy_path, ctx.release, *settings["keep_assets"],
                                   desc="keep the live release's assets that the new one lacks"))
    return commands
