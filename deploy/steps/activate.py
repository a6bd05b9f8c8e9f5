"""activate: switch `current` atomically: a symlink under a temporary name, renamed over `current`.

rename(2) replaces the link in one step, so a request sees the old or the new release, never none.
"""

KIND = "activate"
ON_ROLLBACK = True


def parse(section):
    return {}


def plan(settings, ctx):
    p = ctx.paths
    tmp = p.root + "/.current.tmp"
    return [ctx.cmd("test -f {} && ln -sfn {} {} && mv -fT {} {}",
                    ctx.release_dir + "/RELEASE", "releases/" + ctx.release, tmp, tmp, p.current,
                    desc=f"switch current to {ctx.release}")]
