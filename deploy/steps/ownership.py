"""ownership: code stays owned by the deploy user and read-only for the web user; only the
writable dirs (storage, bootstrap/cache) become writable by the pool user.

Never `chown -R` the whole tree to the web user (the incident's fix): that lets PHP rewrite code.
"""

import posixpath

from ._paths import relative_paths
from . import BUILD, Kind

KIND = Kind("ownership", order=30, phase=BUILD,
            summary="code read-only for the web user; only storage/ and bootstrap/cache writable by it")
MODES = ("acl", "chown")


def parse(section):
    mode = section.string("mode", "acl")
    if mode not in MODES:
        raise section.error("mode", f"unknown mode '{mode}'", "use 'acl' (default, setfacl) or 'chown'")
    return {"mode": mode, "writable": relative_paths(section, "writable", ["storage", "bootstrap/cache"])}


def _shared_files(ctx):
    shared = ctx.pipeline.first("shared")
    return shared.settings["files"] if shared else []


def _has_default_acl(ctx, path, users):
    """The test that skips the recursive setfacl: `path` has the default ACL entry of each user."""
    test = " && ".join(["getfacl --omit-header {} 2>/dev/null | grep -q {}"] * len(users))
    args = [a for u in users for a in (path, f"^default:user:{u}:rwx")]
    return ctx.cmd(test, *args)


def plan(settings, ctx):
    web, user = ctx.host.web_user, ctx.host.user
    dirs = [posixpath.join(ctx.release_dir, w) for w in settings["writable"]]
    commands = [ctx.cmd("mkdir -p" + " {}" * len(dirs), *dirs, desc="create the writable dirs")]
    if settings["mode"] == "acl":
        # rwX for the pool user and the deploy user, also as default ACLs so files the app
        # creates later (logs, compiled views) stay writable by both.
        spec = f"u:{web}:rwX,d:u:{web}:rwX"
        users = [web] if ctx.host.is_root else [web, user]
        if not ctx.host.is_root:
            spec += f",u:{user}:rwX,d:u:{user}:rwX"
        for d, w in zip(dirs, settings["writable"]):
            # -L: shared dirs are symlinks into shared/; without it setfacl only touches the link's
            # target dir. In the releases layout a dir that already carries the default ACL
            # (shared storage/, from an earlier deploy) is not walked again: what was created in
            # it since inherited the ACL, and rsync never writes there. In place, rsync writes
            # into these dirs and its chmod narrows the ACL mask of what it writes: always walk.
            # `fab health` checks what is writable, and `fab heal` walks it when it is not.
            unless = None if ctx.in_place else _has_default_acl(ctx, d, users)
            commands.append(ctx.cmd("setfacl -L -R -m {} {}", spec, d, sudo=True, unless=unless,
                                    skipped=f"{w}: has the default ACL already",
                                    desc=f"let {web} write {w} (ACL; not walked again once set)"))
        for f in _shared_files(ctx):
            s = posixpath.join(ctx.release_dir if ctx.in_place else ctx.paths.shared, f)
            command = "if [ -e {} ]; then setfacl -m {} {}; fi" if ctx.in_place else "setfacl -m {} {}"
            args = (s, f"u:{web}:r", s) if ctx.in_place else (f"u:{web}:r", s)
            commands.append(ctx.cmd(command, *args, sudo=True, desc=f"let {web} read shared {f}"))
    else:
        # -H / trailing slash: follow the symlinked shared dirs given on the command line.
        commands.append(ctx.cmd("chown -R -H {}" + " {}" * len(dirs), f"{web}:{web}", *dirs, sudo=True,
                                desc=f"give the writable dirs to {web}"))
        commands.append(ctx.cmd("chmod -R ug+rwX" + " {}" * len(dirs), *[d + "/" for d in dirs], sudo=True,
                                desc="writable by owner and group"))
    return commands
