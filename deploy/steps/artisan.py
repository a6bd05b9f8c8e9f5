"""artisan: Laravel commands run one by one in the new release, each exit code checked.

`optimize` and `optimize:clear` exit 0 even when a step inside fails, and `*:clear`
ignores failed unlinks, so the aggregate commands are refused here (docs/why.md#artisan-exit-codes).
"""

import shlex

from . import BUILD, Kind

KIND = Kind("artisan", order=50, phase=BUILD,
            summary="rebuild Laravel's caches, one command at a time, each exit code checked")
DEFAULT = ["config:cache", "route:cache", "view:cache", "event:cache"]
REFUSED = {"optimize", "optimize:clear"}


def parse(section):
    commands = section.string_list("commands", DEFAULT)
    for command in commands:
        try:
            words = shlex.split(command)
        except ValueError as exc:  # an unclosed quote
            raise section.error("commands", f"cannot split {command!r} into words: {exc}",
                                "close the quote, or drop it: each word is quoted for you") from None
        if not words:
            raise section.error("commands", "empty artisan command")
        if words[0] in REFUSED:
            raise section.error("commands", f"'{words[0]}' exits 0 even when one of its steps fails",
                                "list the cache commands one by one: config:cache, route:cache, view:cache, event:cache")
    return {"commands": commands}


def plan(settings, ctx):
    out = []
    for command in settings["commands"]:
        words = shlex.split(command)
        template = "cd {} && {} artisan" + " {}" * len(words) + " --no-interaction"
        out.append(ctx.cmd(template, ctx.release_dir, ctx.php(), *words, desc=f"artisan {command}"))
    return out
