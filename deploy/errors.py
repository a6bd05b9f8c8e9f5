"""The few error types the tool raises, and the exit codes they map to.

Exit codes are part of the interface (docs/commands.md): scripts and CI branch on them.
"""

EXIT_OK = 0
EXIT_FAILED = 1        # a deploy/rollback failed, every host left on a complete live release
EXIT_BAD_INPUT = 2     # bad YAML, unknown host, bad flag: nothing was run on any host
EXIT_NEEDS_HUMAN = 3   # a host may not be serving what we intended: rollback failed, unreachable after switch
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM, hosts left consistent (see the summary)


class DeployError(Exception):
    """Base class: every error carries the exit code it should end the program with."""

    exit_code = EXIT_FAILED


class ConfigError(DeployError):
    """Bad input: names the file, line and key, and says what to do."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message, file=None, line=None, key=None, hint=None):
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.hint = hint
        super().__init__(str(self))

    def __str__(self):
        where = ""
        if self.file:
            where = str(self.file)
            if self.line:
                where += f":{self.line}"
            where += ": "
        key = f"key '{self.key}': " if self.key else ""
        text = f"{where}{key}{self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text
