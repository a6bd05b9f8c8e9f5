"""activate: switch `current` atomically: a symlink under a temporary name, renamed over `current`.

rename(2) replaces the link in one step, so a request sees the old or the new release, never none.
"""

from . import SWITCH, Kind

KIND = Kind("activate", order=60, phase=SWITCH, on_rollback=True,
            summary="switch current to the new release in one atomic rename")


def parse(section):
    return {}


def plan(settings, ctx):
    p = ctx.paths
    if ctx.in_place:
        # Nothing to switch: the code went live when sync wrote it (no atomicity in place;
        # the snapshot taken in prepare is what rollback restores).
        return [ctx.cmd("test -f {}", ctx.release_dir + "/RELEASE", desc="in place: the code is already live")]
    tmp = p.root + "/.current.tmp"
    # RELEASE marks the build complete (and tells the app its id); then the switch.
    return [ctx.cmd("test -d {} && printf '%s\\n' {} > {} && ln -sfn {} {} && mv -fT {} {}",
                    ctx.release_dir, ctx.release, ctx.release_dir + "/RELEASE", "releases/" + ctx.release, tmp, tmp,
                    p.current, gate=True, desc=f"switch current to {ctx.release}")]
