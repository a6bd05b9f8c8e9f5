"""The command line: how `fab` reports argument errors, and the checks of flag values.

`fab` is Fabric's program (fabric.main.Fab, an invoke.Program). Its own parse errors (unknown
flag, flag without a value, stray argument) would exit 1 with Invoke's wording; the fabfile
hands the running program to `Program` below (adopt), which reports them like every other bad
input: one `error:` message naming the flag, a hint, exit code 2. Everything else (task help,
--list, parsing itself) stays Invoke's.

The value checks (parse_*) raise ConfigError naming the flag; deploy/cli.py calls them before it
reads any file.
"""

import difflib
import os
import re
import sys

import fabric.main
from invoke import Exit
from invoke.exceptions import ParseError

from .counts import check_count
from .errors import EXIT_BAD_INPUT, ConfigError

# Fabric's own connection options: this tool takes every connection setting from the inventory,
# so they would be silently ignored (or, for -H, run the task once per name).
FABRIC_CONNECTION_FLAGS = ("hosts", "identity", "ssh-config", "connect-timeout", "prompt-for-login-password",
                           "prompt-for-passphrase")


class Program(fabric.main.Fab):
    """Fabric's `fab`, with argument errors reported as bad input (exit 2, the tool's words)."""

    quick_exit = False   # set by adopt() on the `fab` process itself (execute)

    def parse_tasks(self):
        try:
            super().parse_tasks()
        except ParseError as exc:
            self._refuse(_explain(exc, self))
        except ValueError as exc:  # a core flag of type int given a non-number (-t abc after a task)
            word = re.search(r"'(.*)'$", str(exc))
            argv = list(self.argv)
            flag = argv[argv.index(word.group(1)) - 1] if word and word.group(1) in argv[1:] else "a flag"
            self._refuse(ConfigError(f"bad value for {flag} (an option of fab itself): {exc}",
                                     hint=_help_hint(self) + " (task flags are long: --release, --report, ...)"))
        self._check_parsed()

    def _check_parsed(self):
        """What Invoke accepts but this tool must not: several tasks, `-- CMD`, Fabric's
        connection options, core options after the task name."""
        if len(self.tasks) > 1:  # Invoke would run them one after the other: `plan ... deploy ...`
            names = " and ".join(t.name for t in self.tasks)
            self._refuse(ConfigError(f"one task per command, got {names}",
                                     hint=f"run them one at a time, e.g. fab {self.tasks[0].name} ...; "
                                          "`fab --list` lists the tasks"))
        if self.core.remainder:  # `fab ... -- CMD`: Fabric would run CMD on its -H hosts
            self._refuse(ConfigError(f"unexpected '-- {self.core.remainder}': this tool runs no ad-hoc commands",
                                     hint="put commands in a run step of the playbook (docs/pipeline.md); "
                                          + _help_hint(self)))
        # self.core now also holds the core flags given after the task name.
        for arg in self.core[0].args.values():
            if arg.got_value and set(arg.names) & set(FABRIC_CONNECTION_FLAGS):
                self._refuse(ConfigError(f"{_flag_names(arg)} is not used by this tool",
                                         hint="hosts come from --host and every connection setting from the inventory "
                                              "(docs/inventory.md)"))
        for arg in self.core_via_tasks.args.values():
            # A core flag after the task name is Invoke's or Fabric's, not the task's: `fab deploy
            # -r X` would silently set --search-root, not --release. Only --help means what it says.
            if arg.got_value and "help" not in arg.names:
                self._refuse(ConfigError(f"{_flag_names(arg)} is an option of fab itself, not a flag of this task",
                                         hint=_help_hint(self) + " (task flags are long: --release, --report, ...)"))

    def parse_cleanup(self):
        try:
            super().parse_cleanup()
        except ParseError as exc:  # `fab --help NOSUCHTASK`
            self._refuse(_explain(exc, self, from_help=True))

    def execute(self):
        """Run the task; in the real `fab` process (adopt), end the process as soon as it is done.

        What is left after the task is the interpreter's own shutdown (tearing down every module
        and object: 40 ms here, a tenth of a one-host deploy's overhead, docs/benchmark.md). The
        task has written its files and closed its connections by then, and its exit code is
        known: flush the output and exit with it. An exception that escapes the task (a bug) is
        left to Invoke and Python, so its traceback and exit code stay what they were."""
        if not self.quick_exit:
            return super().execute()
        code = 0
        try:
            super().execute()
        except Exit as exc:
            if exc.message:
                raise        # Invoke prints it
            code = exc.code
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    def _refuse(self, error):
        from .report import Reporter
        Reporter().error(str(error))
        raise Exit(code=EXIT_BAD_INPUT)


def adopt(program=None):
    """Make the running `fab` report argument errors as this tool does (see the module doc).

    Called by the fabfile, which Fabric's program imports while it runs: the remaining steps of
    that run (parsing the task flags, --help) then use Program's methods. Any other program (a
    test importing the fabfile) is left alone."""
    program = program or fabric.main.program
    if type(program) is fabric.main.Fab:
        program.__class__ = Program
        program.quick_exit = True   # the `fab` process itself, not a test's program (execute)


def _flag_names(arg):
    return "/".join(("--" if len(n) > 1 else "-") + n for n in sorted(arg.names, key=len))


def _task_name(program):
    tasks = getattr(program, "tasks", None) or []
    if tasks:
        return tasks[-1].name
    names = set(program.collection.task_names) if getattr(program, "collection", None) else set()
    return next((word for word in getattr(program, "argv", []) if word in names), None)


def _help_hint(program, task=None):
    task = task or _task_name(program)
    return f"`fab --help {task}` lists its flags" if task else "`fab --list` lists the tasks"


def _explain(exc, program, from_help=False):
    """Invoke's ParseError -> ConfigError in the tool's words, naming the flag or the word."""
    text = str(exc)
    context = getattr(exc, "context", None)
    task = getattr(context, "name", None)
    flags = sorted(getattr(context, "flags", {}) or {}) if task else []
    tasks = sorted(program.collection.task_names) if getattr(program, "collection", None) else []
    unknown = re.match(r"No idea what '(.*)' is!$", text)
    if unknown:
        word = unknown.group(1)
        if word.startswith("-") and not task:
            return ConfigError(f"unknown option '{word}' of fab",
                               hint="`fab --help` lists fab's options; a task's flags go after the task: fab deploy --help")
        if from_help or not task:
            close = difflib.get_close_matches(word, tasks, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return ConfigError(f"unknown task '{word}'" + (" (from --help)" if from_help else ""),
                               hint=hint + "`fab --list` lists the tasks")
        for token in getattr(program, "argv", []):
            flag, _, given = token.partition("=")
            if given == word and flag in flags and not context.flags[flag].takes_value:
                return ConfigError(f"flag {flag} takes no value", hint=f"write just {flag}; " + _help_hint(program, task))
        if word.startswith("-"):
            close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1)
            hint = (f"did you mean {close[0]}? " if close else "") + _help_hint(program, task)
            return ConfigError(f"unknown flag '{word}' for fab {task}", hint=hint)
        argv = list(getattr(program, "argv", []))
        before = argv[argv.index(word) - 1] if word in argv[1:] else None
        if before in flags and context.flags[before].takes_value and argv.count(before) > 1:
            listing = " (a list is one value: --host a,b)" if before == "--host" else ""
            return ConfigError(f"flag {before} is given twice", hint=f"give it once{listing}; " + _help_hint(program, task))
        hint = (f"to choose hosts: --host {word}; " if "--host" in flags else "") + _help_hint(program, task)
        return ConfigError(f"unexpected argument '{word}' after fab {task} (every value follows its flag)", hint=hint)
    needs = re.match(r"Flag <Argument: ([\w-]+).*> needed value and was not given one!$", text)
    if needs:
        flag = "--" + needs.group(1).replace("_", "-")
        return ConfigError(f"flag {flag} needs a value", hint=f"e.g. {flag} VALUE; " + _help_hint(program, task))
    no_value = re.match(r"Flag <Argument: ([\w-]+).*> doesn't take any value!$", text)
    if no_value:
        flag = "--" + no_value.group(1).replace("_", "-")
        return ConfigError(f"flag {flag} takes no value", hint=f"write just {flag}; " + _help_hint(program, task))
    return ConfigError(f"bad command line: {text}", hint=_help_hint(program, task))


# ---------------------------------------------------------------------------- flag values

def flag_error(flag, value, message, hint=None):
    return ConfigError(f"bad {flag} value {value!r}: {message}", hint=hint)


def nonempty(flag, value, hint):
    """A flag that, when given, needs a real value: `--release ""` is an unset variable, not a choice."""
    if value is not None and not str(value).strip():
        raise ConfigError(f"empty {flag} value (an unset variable?)", hint=hint)
    return value


def parse_host(value):
    if value is None:
        raise ConfigError("missing --host: which hosts?", hint="pass --host NAME: a host, a group, or a comma-separated list")
    nonempty("--host", value, "pass --host NAME: a host, a group, or a comma-separated list")
    if any(not part.strip() for part in str(value).split(",")):
        raise flag_error("--host", value, "an empty name in the list", "e.g. --host prod1,prod2 (no empty items)")
    return value


def parse_selection(host, inventory, pipeline=None):
    """--host, --inventory and --pipeline, as every host command takes them."""
    return parse_host(host), parse_path("--inventory", inventory), parse_path("--pipeline", pipeline)


def parse_release(value, flag="--release"):
    """A release id given on the command line; None when the flag was not given."""
    nonempty(flag, value, f"pass {flag} ID (e.g. \"$GIT_SHA\", which must be set), or leave the flag out"
                          + (" for a UTC timestamp id" if flag == "--release" else ""))
    from .plan import check_release_id  # the planner loads only when a task runs
    return None if value is None else check_release_id(value, flag)


def parse_count(flag, value, minimum=1):
    """--parallel, --attempts, --hosts: a whole number >= minimum; None when not given."""
    if value is None:
        return None
    text = str(value).strip()
    if not re.fullmatch(r"-?[0-9]+", text) or int(text) < minimum:
        raise flag_error(flag, value, f"expected a whole number of at least {minimum}", f"e.g. {flag} {max(minimum, 2)}")
    return int(text)


def parse_port(flag, value, span=0, example=12200):
    """--ssh-base, --db-port: a TCP port, leaving room for `span` more above it; None when not given."""
    if value is None:
        return None
    text = str(value).strip()
    top = 65535 - span
    if not re.fullmatch(r"[0-9]+", text) or not 1 <= int(text) <= top:
        why = f" (host labN listens on BASE+N, up to BASE+{span})" if span else ""
        raise flag_error(flag, value, f"expected a port number from 1 to {top}{why}", f"e.g. {flag} {example}")
    return int(text)


def parse_serial(value):
    """--serial 1,25%,100% -> [1, '25%', '100%']; None when not given."""
    if value is None:
        return None
    nonempty("--serial", value, "e.g. --serial 1,25%,100%, or leave it out for the playbook's serial")
    items = [x.strip() for x in str(value).split(",")]
    if any(not x for x in items):
        raise flag_error("--serial", value, "an empty item in the list", "e.g. --serial 1,25%,100%")
    out = [int(x) if x.isdigit() else x for x in items]
    for item in out:
        check_count("--serial", item, hint="e.g. --serial 1,25%,100%")
    return out


def parse_max_fail(value):
    if value is None:
        return None
    nonempty("--max-fail", value, "a count (2) or a percentage (10%), or leave it out for the playbook's max_fail")
    text = str(value).strip()
    parsed = int(text) if text.isdigit() else text
    check_count("--max-fail", parsed, allow_zero=True, hint="a count (2) or a percentage (10%)")
    return parsed


def parse_path(flag, value):
    """--inventory, --pipeline, --source: when given, not empty (an empty one is not 'the default')."""
    return nonempty(flag, value, f"pass {flag} PATH, or leave the flag out for the default")


def parse_output(flag, value):
    """--report/--junit/--html FILE: checked before the run, so a typo is not found after the deploy."""
    if value is None:
        return None
    nonempty(flag, value, f"pass {flag} FILE, or leave the flag out")
    path = os.path.abspath(os.path.expanduser(value))
    parent = os.path.dirname(path)
    if os.path.isdir(path):
        raise ConfigError(f"{flag} {value} is a directory", hint=f"name a file, e.g. {flag} {os.path.join(value, 'report.out')}")
    if not os.path.isdir(parent):
        raise ConfigError(f"{flag} {value}: directory {parent} does not exist",
                          hint=f"create it first (mkdir -p {parent}) or write the file elsewhere")
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag} {value}: cannot write there as this user", hint="write the file elsewhere")
    return value
