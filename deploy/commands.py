"""A command is data: a trusted shell template plus values that are always quoted when rendered.

Steps build Commands; the executor renders and runs them; plans, logs and reports print the
masked rendering. Secrets render as *** everywhere except in the string actually executed.
"""

import shlex
from dataclasses import dataclass, field

MASK = "***"
SHELL_SYNTAX = ("&&", "||", ";", "|", ">", "<", "$(", "`", "\n")


class Secret:
    """A value that must never be printed. `str()` is masked on purpose."""

    __slots__ = ("value", "name")

    def __init__(self, value, name=None):
        self.value = str(value)
        self.name = name

    def __str__(self):
        return MASK

    __repr__ = __str__

    def __eq__(self, other):
        return isinstance(other, Secret) and other.value == self.value

    def __hash__(self):
        return hash(("secret", self.value))


class Raw:
    """A shell fragment written by the user in YAML (a `run` step, an inventory reload command).

    It is run as written, on purpose: quoting it would break pipes and redirects. Values that
    come from elsewhere must never be wrapped in Raw.
    """

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = str(text)

    def __eq__(self, other):
        return isinstance(other, Raw) and other.text == self.text

    def __hash__(self):
        return hash(("raw", self.text))


class Program:
    """The text of a program from deploy/remote/, passed to `sh -c` as one quoted word.

    Plans print its label (its path in the repository and its hash) instead of its text."""

    __slots__ = ("text", "label")

    def __init__(self, text, label):
        self.text = text
        self.label = label

    def __eq__(self, other):
        return isinstance(other, Program) and other.text == self.text

    def __hash__(self):
        return hash(("program", self.text))


def quote(value, reveal):
    if isinstance(value, Program):
        return shlex.quote(value.text) if reveal else f"<{value.label}>"
    if isinstance(value, Secret):
        return shlex.quote(value.value) if reveal else MASK
    if isinstance(value, Raw):
        return value.text
    return shlex.quote(str(value))


@dataclass(frozen=True)
class Command:
    """One shell command.

    template: shell text from this project's code, `{}` placeholders for values.
    args: the values (str, Secret, Raw), quoted at render time.
    sudo: wrap in `sudo -n sh -c` (the step decides; only set when the login user is not root).
    local: run on the controller (rsync), not on the host.
    ok_codes: exit codes that count as success.
    unless: a test (a Command, run as the login user, never through sudo): when it succeeds the
        command is skipped, saying so. So an expensive privileged command (a recursive setfacl)
        runs only when needed while sudo still sees the one program a sudoers rule allows.
    """

    template: str
    args: tuple = ()
    sudo: bool = False
    local: bool = False
    ok_codes: tuple = (0,)
    desc: str = ""
    capture: str | None = None  # the executor keeps this command's output under that name
    timeout: int | None = None  # seconds; None: the host's command_timeout
    gate: bool = False          # the switch of current: runs only on the executor's "go" (executor.py)
    hold: bool = False          # waits for the fleet's "go" like a gate, but switches nothing
    signal: str | None = None   # the executor reports this name and the exit code when it ends
    cut_on_stop: bool = True    # a first Ctrl-C may cut it before the switch (not a migration)
    unless: "Command | None" = None
    skipped: str = "skipped"    # what a skipped command prints (with `unless`)

    def render(self, reveal=False):
        text = self.render_command(reveal)
        if self.unless is None:
            return text
        return f"if {self.unless.render(reveal)}; then echo {shlex.quote(self.skipped)}; else {text}; fi"

    def render_command(self, reveal=False):
        """The command itself, without its `unless` test (what sudo is asked to run)."""
        text = self.template.format(*(quote(a, reveal) for a in self.args))
        if not self.sudo:
            return text
        if not any(op in self.template for op in SHELL_SYNTAX) and not any(isinstance(a, Raw) for a in self.args):
            # A simple command goes to sudo as is, so a sudoers rule can allow just that program.
            return f"sudo -n {text}"
        # A compound command goes to one root shell, so pipes and && stay under sudo too.
        if reveal:
            return "sudo -n sh -c " + shlex.quote(self.template.format(*(quote(a, True) for a in self.args)))
        # Masked: quote around placeholders, then put *** where each secret was.
        inner = self.template.format(*(f"__SECRET{i}__" if isinstance(a, Secret) else quote(a, True)
                                       for i, a in enumerate(self.args)))
        quoted = shlex.quote(inner)
        for i, a in enumerate(self.args):
            if isinstance(a, Secret):
                quoted = quoted.replace(f"__SECRET{i}__", MASK)
        return f"sudo -n sh -c {quoted}"

    def __str__(self):
        return self.render()

    @property
    def secrets(self):
        return [a.value for a in self.args if isinstance(a, Secret)] + (self.unless.secrets if self.unless else [])


def sh(template, *args, **kw):
    return Command(template, tuple(args), **kw)


def mask(text, secrets):
    """Replace every secret value in free text (command output) by ***."""
    for value in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text


@dataclass
class PlannedStep:
    name: str
    kind: str
    commands: list
    where: str = ""        # playbook file:line, for messages
    notes: list = field(default_factory=list)  # what the plan shows besides commands (no effect)

    def rendered(self):
        return [c.render() for c in self.commands]
