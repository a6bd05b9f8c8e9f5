"""run: the user's own shell commands, in the release (or another dir), with optional env vars.

Commands are run as written (they are the user's shell); env values are quoted, and values
marked secret (or read from the controller's environment with from_env) print as ***.
"""

import os
import re

from ..commands import Raw, Secret
from ..errors import ConfigError
from ..yamlfile import Section

KIND = "run"
ON_ROLLBACK = False
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse(section):
    commands = section.string_list("commands", required=True)
    env = {}
    env_section = section.section("env")
    for name in env_section.data:
        env_section.seen.add(name)
        if not ENV_NAME.match(str(name)):
            raise env_section.error(name, "invalid environment variable name")
        value = env_section.data[name]
        if isinstance(value, dict):
            spec = Section(value, section.file, env_section.key_path(name))
            literal = spec.string("value")
            from_env = spec.string("from_env")
            secret = spec.boolean("secret", from_env is not None)
            spec.done()
            if (literal is None) == (from_env is None):
                raise env_section.error(name, "give exactly one of value: or from_env:")
            env[name] = {"value": literal, "from_env": from_env, "secret": secret,
                         "line": env_section.line_of(name), "file": section.file}
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            env[name] = {"value": str(value), "from_env": None, "secret": False}
        else:
            raise env_section.error(name, "expected a string or {value|from_env, secret}")
    return {
        "commands": commands,
        "cwd": section.string("cwd"),
        "env": env,
        "sudo": section.boolean("sudo", False),
        "on_rollback": section.boolean("on_rollback", False),
    }


def _value(name, spec):
    if spec["from_env"] is not None:
        if spec["from_env"] not in os.environ:
            raise ConfigError(f"environment variable {spec['from_env']} is not set on this machine",
                              spec.get("file"), spec.get("line"), f"env.{name}",
                              f"export {spec['from_env']}=... before running, or use value:")
        raw = os.environ[spec["from_env"]]
    else:
        raw = spec["value"]
    return Secret(raw, name) if spec["secret"] else raw


def plan(settings, ctx):
    cwd = settings["cwd"] or ctx.release_dir
    env = {"DEPLOY_RELEASE": ctx.release, "DEPLOY_RELEASE_PATH": ctx.release_dir,
           "DEPLOY_PATH": ctx.host.deploy_path, "DEPLOY_HOST": ctx.host.name}
    env.update({name: _value(name, spec) for name, spec in settings["env"].items()})
    exports = " ".join(f"{name}={{}}" for name in env)
    return [ctx.cmd("cd {} && export " + exports + " && {}", cwd, *env.values(), Raw(command),
                    sudo=settings["sudo"], desc=f"run: {command}")
            for command in settings["commands"]]
