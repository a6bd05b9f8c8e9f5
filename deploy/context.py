"""What a step needs to plan: the host, the pipeline, the release and the paths derived from them.

Passed explicitly to every step (never global), so plans are pure functions of their inputs.
"""

import posixpath
import re
from dataclasses import dataclass

from .commands import Command

RELEASE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Paths:
    root: str

    @property
    def releases(self):
        return posixpath.join(self.root, "releases")

    @property
    def shared(self):
        return posixpath.join(self.root, "shared")

    @property
    def current(self):
        return posixpath.join(self.root, "current")

    @property
    def meta(self):
        return posixpath.join(self.root, ".deploy")

    @property
    def lock(self):
        return posixpath.join(self.meta, "lock")

    @property
    def bad(self):
        return posixpath.join(self.meta, "bad")

    @property
    def history(self):
        return posixpath.join(self.meta, "history.jsonl")

    @property
    def snapshots(self):
        return posixpath.join(self.meta, "snapshots")

    @property
    def fpmctl(self):
        return posixpath.join(self.meta, "bin", "fpmctl.php")

    def release(self, release_id):
        return posixpath.join(self.releases, release_id)


@dataclass(frozen=True)
class StepContext:
    host: object          # inventory.Host
    pipeline: object      # pipeline.Pipeline
    release: str          # the release this plan builds or switches to
    phase: str = "deploy"  # "deploy" or "rollback"

    @property
    def paths(self):
        return Paths(self.host.deploy_path)

    @property
    def in_place(self):
        """strategy in-place: code directly under deploy_path, hard-link snapshots for rollback."""
        return getattr(self.pipeline, "strategy", "releases") == "in-place"

    @property
    def release_dir(self):
        return self.host.deploy_path if self.in_place else self.paths.release(self.release)

    def cmd(self, template, *args, sudo=False, **kw):
        """Build a Command; `sudo` only takes effect when the login user is not root."""
        return Command(template, tuple(args), sudo=bool(sudo) and not self.host.is_root, **kw)

    def script(self, template, sudo=False, **values):
        """Like cmd() for longer scripts: `{name}` placeholders, each value quoted once per use."""
        args = []

        def take(match):
            args.append(values[match.group(1)])
            return "{}"

        # `{{`/`}}` stay literal braces, as in str.format.
        positional = re.sub(r"(?<!\{)\{([a-z_][a-z0-9_]*)\}(?!\})", take, template)
        return self.cmd(positional, *args, sudo=sudo, **{k: v for k, v in values.items() if k in ("desc", "ok_codes")})

    def php(self):
        return self.host.php
