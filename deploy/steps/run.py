"""run: the user's own shell commands, in the release (or another dir), with optional env vars.

Commands are run as written (they are the user's shell); env values are quoted, and values
marked secret (or read from the controller's environment with from_env) print as ***.
"""

from .. import envvars, values
from ..commands import Raw
from . import ANY, Kind

KIND = Kind("run", order=100, phase=ANY, summary="your own commands")


def parse(section):
    return {
        "commands": section.string_list("commands", required=True, multiline=True),
        "cwd": section.string("cwd", rule=values.absolute_path),
        "env": envvars.parse(section.section("env")),
        "sudo": section.boolean("sudo", False),
        "on_rollback": section.boolean("on_rollback", False),
    }


def plan(settings, ctx):
    cwd = settings["cwd"] or ctx.release_dir
    env = {"DEPLOY_RELEASE": ctx.release, "DEPLOY_RELEASE_PATH": ctx.release_dir,
           "DEPLOY_PATH": ctx.host.deploy_path, "DEPLOY_HOST": ctx.host.name}
    # The host's env (inventory) first, the step's own values win.
    for name, spec in {**ctx.host.env, **settings["env"]}.items():
        env[name] = envvars.resolve(name, spec)
    exports = " ".join(f"{name}={{}}" for name in env)
    return [ctx.cmd("cd {} && export " + exports + " && {}", cwd, *env.values(), Raw(command),
                    sudo=settings["sudo"], desc=f"run: {command}")
            for command in settings["commands"]]
