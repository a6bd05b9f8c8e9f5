"""Pipeline: playbooks/*.yml -> a typed, validated list of Steps.

Validation happens before any host is contacted: a bad playbook never half-runs.
"""

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import gitsource
from . import notify as notify_mod
from . import yamlfile
from .counts import count_ok
from .errors import ConfigError
from .steps import BUILD, KINDS, LIVE, SWITCH

TOP_KEYS = ("source", "keep_releases", "remediate", "strategy", "steps", "serial", "max_fail", "parallel",
            "lock_stale_after", "notify", "health")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Step:
    kind: str
    name: str
    settings: dict
    file: str
    line: int

    @property
    def module(self):
        return KINDS[self.kind]

    @property
    def spec(self):
        return self.module.KIND

    @property
    def on_rollback(self):
        """Planned again for the release a rollback goes back to: by its kind, or by the
        step's own `on_rollback: true` (run steps)."""
        return self.spec.on_rollback or bool(self.settings.get("on_rollback"))

    @property
    def where(self):
        return f"{self.file}:{self.line}"


@dataclass
class Pipeline:
    file: str
    source: str
    keep_releases: int
    steps: list
    remediate: bool = True
    strategy: str = "releases"
    serial: list = field(default_factory=lambda: ["100%"])
    max_fail: str | int = 0
    parallel: int | None = None
    lock_stale_after: int = 3600
    notify: list = field(default_factory=list)   # notify.Webhook, docs/pipeline.md#notify
    health: dict = field(default_factory=lambda: {"required_env": ["APP_KEY"]})   # what `fab health` checks
    git: object = None     # gitsource.GitSource when the source is a git commit (source is then its export)

    def split(self):
        """Steps before the switch, the switch (activate), and the steps after it."""
        index = next(i for i, s in enumerate(self.steps) if s.spec.phase == SWITCH)
        return self.steps[:index], self.steps[index], self.steps[index + 1:]

    def first(self, kind):
        """The first step of a kind, or None (steps that read another step's settings)."""
        return next((s for s in self.steps if s.kind == kind), None)

    def resets_pool_after_switch(self):
        return any(s.spec.resets_pool for s in self.split()[2])


def load(path, source_override=None):
    path = Path(path)
    data = yamlfile.load(path)
    top = yamlfile.Section(data, path)
    source = _source(top, path, source_override)
    keep = top.integer("keep_releases", 5, minimum=2)
    remediate = top.boolean("remediate", True)
    strategy = top.string("strategy", "releases")
    if strategy not in ("releases", "in-place"):
        raise top.error("strategy", f"unknown strategy '{strategy}'", "use 'releases' (default) or 'in-place'")
    serial = top.get("serial", (list, int, str), ["100%"])
    if not isinstance(serial, list):
        serial = [serial]
    for item in serial:
        _check_count(top, "serial", item)
    max_fail = top.get("max_fail", (int, str), 0)
    _check_count(top, "max_fail", max_fail, allow_zero=True)
    parallel = top.integer("parallel", None, minimum=1)
    lock_stale_after = top.integer("lock_stale_after", 3600, minimum=1)
    notify = notify_mod.parse(top)
    health = _health(top)
    raw_steps = top.get("steps", list, required=True, hint="list the steps, e.g. - sync, - activate")
    top.done()

    steps = []
    lines = getattr(raw_steps, "item_lines", None) or []
    for index, item in enumerate(raw_steps):
        line = lines[index] if index < len(lines) else raw_steps.line
        steps.append(_step(item, path, line, index))
    _check_order(steps, path, raw_steps.line)
    source, git = source()
    return Pipeline(file=str(path), source=source, keep_releases=keep, steps=steps,
                    remediate=remediate, strategy=strategy, serial=serial, max_fail=max_fail, parallel=parallel,
                    lock_stale_after=lock_stale_after, notify=notify, health=health, git=git)


def _health(top):
    """`health: {required_env: [KEY, ...]}`: the .env keys `fab health` requires of the live
    release (docs/remediation.md); default APP_KEY, [] requires none."""
    section = top.section("health")
    keys = section.string_list("required_env", ["APP_KEY"])
    for key in keys:
        if not ENV_NAME.match(key):
            raise section.error("required_env", f"'{key}' is not an environment variable name",
                                "letters, digits and _, not starting with a digit, e.g. APP_KEY")
    section.done()
    return {"required_env": keys}


def _source(top, path, source_override):
    """`source`: a directory (str), or a git commit (`{git: REF, repo, path}`, or `--source
    git:REF`). The key is read now; the directory is checked once the steps are (so errors come
    in file order). Returns a function giving (directory or None, gitsource.GitSource or None):
    a git source has its directory only once its commit is resolved and exported."""
    project = path.resolve().parent.parent  # relative sources: from the dir above playbooks/
    ref = gitsource.override_ref(source_override)
    if source_override and ref is None:
        top.seen.add("source")
        return lambda: (_directory(top, Path(source_override), Path.cwd(), from_flag=True), None)
    if isinstance(top.data.get("source"), dict):
        git = gitsource.parse(top.section("source"), project)
        return lambda: (None, replace(git, ref=ref, origin="--source") if ref else git)
    source = top.string("source", required=True, hint="the local directory of the app to ship (or pass --source DIR)")
    if ref:  # --source git:REF on a directory source: that directory, as of the commit
        return lambda: (None, gitsource.GitSource(repo=_directory(top, Path(source), project), ref=ref, path=None))
    return lambda: (_directory(top, Path(source), project), None)


def _directory(top, source, base, from_flag=False):
    resolved = source.expanduser()
    if not resolved.is_absolute():
        resolved = (base / resolved).resolve()
    if not resolved.is_dir():
        if from_flag:
            raise ConfigError(f"source directory {resolved} does not exist (from --source)",
                              hint="pass the local directory of the app to ship (relative to the current directory)")
        raise top.error("source", f"source directory {resolved} does not exist",
                        "point source: at the app to ship, relative to the project root, or pass --source DIR")
    return str(resolved)


def _check_count(section, key, value, allow_zero=False):
    if not count_ok(value, allow_zero):
        low = 0 if allow_zero else 1
        raise section.error(key, f"expected a count or a percentage like '25%', got {value!r}",
                            f"a whole number >= {low}, or a percentage '{low}%'-'100%' in quotes")


def _step(item, file, line, index):
    if isinstance(item, str):
        kind, raw = item, None
    elif isinstance(item, dict) and len(item) == 1:
        kind, raw = next(iter(item.items()))
    else:
        raise ConfigError("each step is a kind name or a one-key mapping {kind: settings}", file, line,
                          f"steps[{index}]", "e.g. '- sync' or '- verify: {timeout: 30}'")
    if kind not in KINDS:
        raise ConfigError(f"unknown step kind '{kind}'", file, line, f"steps[{index}]",
                          "known kinds: " + ", ".join(KINDS))
    module = KINDS[kind]
    if kind == "run" and isinstance(raw, (str, list)):
        raw = yamlfile.LineDict(commands=raw)
    if raw is None:
        raw = yamlfile.LineDict()
    section = yamlfile.Section(raw, file, f"steps[{index}].{kind}", line)
    name = section.string("name", kind)
    settings = module.parse(section)
    section.done()
    return Step(kind=kind, name=name, settings=settings, file=str(file), line=line)


def _check_order(steps, file, line):
    """Order rules, from each kind's declared phase (deploy/steps/__init__.py)."""
    switches = [s for s in steps if s.spec.phase == SWITCH]
    if len(switches) != 1:
        raise ConfigError(f"the pipeline needs exactly one 'activate' step (found {len(switches)})",
                          file, line, "steps", "add '- activate' after the build steps")
    at = steps.index(switches[0])
    for kind in (m.KIND for m in KINDS.values() if m.KIND.ships_code):
        if not any(s.kind == kind.name for s in steps[:at]):
            raise ConfigError(f"the pipeline needs a '{kind.name}' step before 'activate'", file, line, "steps")
    for step in steps[:at]:
        if step.kind == "run" and step.settings.get("on_rollback"):
            raise ConfigError("on_rollback only applies to run steps after 'activate'", step.file, step.line,
                              "on_rollback", "move the step after activate, or drop on_rollback")
        if step.spec.phase == LIVE:
            raise ConfigError(f"'{step.kind}' works on the live release and must come after 'activate'",
                              step.file, step.line, step.kind)
    for step in steps[at + 1:]:
        if step.spec.phase == BUILD:
            raise ConfigError(f"'{step.kind}' builds the release and must come before 'activate'",
                              step.file, step.line, step.kind)
    names = [s.name for s in steps]
    for step in steps:
        if names.count(step.name) > 1:
            raise ConfigError(f"two steps are named '{step.name}'", step.file, step.line, "name",
                              "give one of them a different name:")
