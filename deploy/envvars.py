"""Environment variables for `run` steps, from the pipeline or the inventory.

A value is a plain string, or {value: ..., secret: true}, or {from_env: NAME} (read from the
controller's environment at plan time, secret by default: CI passes credentials that way).
Secret values render as *** in plans, logs and reports.
"""

import os
import re

from .commands import Secret
from . import values
from .errors import ConfigError
from .yamlfile import Section

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def variable_name(text):
    """A rule (deploy/values.py style) for the name of an environment variable."""
    if not NAME.match(text):
        raise values.Invalid(f"invalid environment variable name {text!r}",
                             "letters, digits and '_', not starting with a digit, e.g. DB_PASSWORD")
    return text


def parse(section):
    """`section` is the yamlfile.Section of an `env:` mapping."""
    env = {}
    for name in section.data:
        section.seen.add(name)
        if not NAME.match(str(name)):
            raise section.error(name, "invalid environment variable name",
                                "letters, digits and '_', not starting with a digit, e.g. DB_PASSWORD")
        value = section.data[name]
        where = {"file": str(section.file), "line": section.line_of(name), "key": section.key_path(name)}
        if isinstance(value, dict):
            spec = Section(value, section.file, section.key_path(name), section.line_of(name))
            # A value may be empty or span lines (a PEM key); it still cannot hold NUL or escapes.
            literal = spec.string("value", empty=True, multiline=True)
            from_env = spec.string("from_env", rule=variable_name)
            secret = spec.boolean("secret", from_env is not None)
            spec.done()
            if (literal is None) == (from_env is None):
                raise section.error(name, "give exactly one of value: or from_env:",
                                    "e.g. {value: abc, secret: true} or {from_env: CI_VARIABLE}")
            env[name] = {"value": literal, "from_env": from_env, "secret": secret, **where}
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            env[name] = {"value": section.text(name, str(value), empty=True, multiline=True),
                         "from_env": None, "secret": False, **where}
        else:
            raise section.error(name, "expected a string or {value|from_env, secret}",
                                "quote true/false/null values, e.g. APP_DEBUG: 'false'")
    return env


def resolve(name, spec):
    """The value to put in a command: a str, or a Secret that prints as ***."""
    if spec["from_env"] is not None:
        if spec["from_env"] not in os.environ:
            raise ConfigError(f"environment variable {spec['from_env']} is not set on this machine",
                              spec.get("file"), spec.get("line"), spec.get("key", name),
                              f"export {spec['from_env']}=... before running, or use value:")
        raw = os.environ[spec["from_env"]]
    else:
        raw = spec["value"]
    return Secret(raw, name) if spec["secret"] else raw
