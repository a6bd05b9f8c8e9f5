"""shared: link shared/ dirs and files (storage, .env) into the release; they outlive every release."""

import posixpath

from ._paths import relative_paths
from . import BUILD, Kind

KIND = Kind("shared", order=20, phase=BUILD, summary="link storage/ and .env from shared/ into the release")


def parse(section):
    return {
        "dirs": relative_paths(section, "dirs", ["storage"]),
        "files": relative_paths(section, "files", [".env"]),
    }


def plan(settings, ctx):
    if ctx.in_place:
        return []  # in place, storage/ and .env stay where they are (sync never touches them)
    shared, release = ctx.paths.shared, ctx.release_dir
    commands = []
    for d in settings["dirs"]:
        s, r = posixpath.join(shared, d), posixpath.join(release, d)
        # First deploy seeds shared/ from the release's copy; later ones never touch shared data.
        commands.append(ctx.cmd(
            "if [ ! -e {} ]; then mkdir -p {} && if [ -d {} ]; then cp -a {} {}; else mkdir -p {}; fi; fi"
            " && rm -rf {} && mkdir -p {} && ln -s {} {}",
            s, posixpath.dirname(s), r, r, s, s, r, posixpath.dirname(r), s, r,
            desc=f"link shared dir {d}"))
    for f in settings["files"]:
        s, r = posixpath.join(shared, f), posixpath.join(release, f)
        commands.append(ctx.cmd(
            "if [ ! -e {} ]; then mkdir -p {} && if [ -f {} ]; then cp -p {} {}; else touch {}; fi && chmod 0640 {}; fi"
            " && rm -rf {} && mkdir -p {} && ln -s {} {}",
            s, posixpath.dirname(s), r, r, s, s, s, r, posixpath.dirname(r), s, r,
            desc=f"link shared file {f}"))
    return commands
