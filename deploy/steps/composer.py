"""composer: `composer install` in the new release, as the deploy user, before the switch.

When composer.lock is unchanged from the live release, the live vendor/ is reused first
(deploy/remote/vendor.sh: hard links, with the files composer rewrites in place copied; or a
full copy), so composer finds everything installed and only checks composer.json and rewrites
the autoloader. composer always runs: a broken composer.json fails the step (and so discards
the release) even when the lock did not change.
"""

import posixpath
import shlex

from .. import envvars, remote
from . import BUILD, Kind

KIND = Kind("composer", order=40, phase=BUILD,
            summary="composer install in the new release (reusing the live vendor/ when composer.lock is unchanged)")
DEFAULT_OPTIONS = ["--no-dev", "--prefer-dist", "--optimize-autoloader"]
REUSE = {True: "hardlink", "hardlink": "hardlink", "copy": "copy", False: "none"}


def parse(section):
    reuse = section.get("reuse_vendor", (bool, str), True)
    if reuse not in REUSE:
        raise section.error("reuse_vendor", f"unknown value {reuse!r}",
                            "use true (hard links, the files composer rewrites copied), 'copy' or false")
    command = section.string("command", "composer")
    if not shlex.split(command):
        raise section.error("command", "empty command")
    options = section.string_list("options", DEFAULT_OPTIONS)
    for option in options:
        if not option.startswith("-"):
            raise section.error("options", f"'{option}' is not an option of composer install",
                                "list flags only, e.g. [--no-dev, --optimize-autoloader]")
    return {
        "command": command,
        "options": options,
        "env": envvars.parse(section.section("env")),
        "home": section.string("home"),
        "reuse_vendor": REUSE[reuse],
    }


def plan(settings, ctx):
    meta = ctx.paths.meta
    home = settings["home"] or posixpath.join(meta, "composer")
    live = ctx.release_dir if ctx.in_place else ctx.paths.current
    env = {"COMPOSER_HOME": home}
    # The host's env (inventory) first, the step's own values win (as in `run`).
    for name, spec in {**ctx.host.env, **settings["env"]}.items():
        env[name] = envvars.resolve(name, spec)
    words = shlex.split(settings["command"]) + ["install", *settings["options"], "--no-interaction"]
    exports = " ".join(f"{name}={{}}" for name in env)
    return [
        ctx.cmd("mkdir -p {}", home, desc="composer's home (cache) on the host"),
        remote.run(ctx, "vendor.sh", live, ctx.release_dir, settings["reuse_vendor"],
                   desc="reuse the live vendor/ when composer.lock is unchanged"),
        ctx.cmd("cd {} && export " + exports + " &&" + " {}" * len(words), ctx.release_dir, *env.values(), *words,
                desc="composer install"),
    ]
