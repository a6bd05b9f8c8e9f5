"""Plan cases as data: tests/plans/*.yml, each an inventory, a playbook and a release id, and
the exact plan deploy/plan.py makes of them (or the one error it must give). No host, no SSH.

A case file:

    # what the case shows (comments are kept when expectations are rewritten)
    release: r1
    host: web1                  # optional: a host, a group or a comma list (as --host); default: every host
    inventory: |                # hosts/*.yml, as a user writes it
      ...
    pipeline: |                 # playbooks/*.yml; `source: app` is a directory the test creates
      ...
    expect:                     # LAST key: per host (in deploy order), per step (in plan order)
      web1:
        lock: [...]
        ...
    # or, for bad input, instead of expect:
    error: "{dir}/playbooks/p.yml:5: key 'steps[0]...': ..."

Each planned step is a list of lines: its notes first (`# note`), then its commands as plans
print them (masked: secrets are ***), each prefixed by what the executor does with it besides
running it: `[local]` (runs on the controller: rsync), `[gate]` (the switch: waits for "go"),
`[hold]` (waits for the fleet's "go"), `[capture=NAME]`, `[signal=NAME]`, `[no-cut]`,
`[timeout=N]`, `[ok=0,3]`. What differs from machine to machine is written as a placeholder:
{dir} (the case's directory), {python} (this interpreter), {project} (the repository), and
every deploy/remote program's hash as HASH (the programs' text is tested on its own, in
tests/test_remote_scripts.py). The hosts of a fleet are planned as `fab deploy` plans them:
the primary (deploy/rollout.py primary()) first, every plan naming it.

After a deliberate change of the plans, regenerate the expectations and review the diff:

    PLAN_CASES_UPDATE=1 .venv/bin/pytest -q -p no:cacheprovider tests/test_plan_cases.py
    git diff tests/plans/

That rewrites each file's `expect:` (or `error:`) section, the last key, and keeps everything
above it as written. A new case: write everything but `expect:`, run with PLAN_CASES_UPDATE=1,
read what it wrote.
"""

import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from deploy import inventory, pipeline, plan, rollout
from deploy.errors import ConfigError
from helpers import PROJECT, write

CASES = sorted((Path(__file__).parent / "plans").glob("*.yml"))
UPDATE = os.environ.get("PLAN_CASES_UPDATE") == "1"
OP = plan.Operator(user="ci", machine="runner", pid=42)
LAST_KEY = re.compile(r"^(expect|error):", re.M)


def make(case, tmp_path):
    """The case's plans {host: {step: lines}} or its error message, placeholders in."""
    (tmp_path / "app").mkdir()
    try:
        inv = inventory.load(write(tmp_path / "hosts" / "hosts.yml", case["inventory"]))
        pipe = pipeline.load(write(tmp_path / "playbooks" / "p.yml", case["pipeline"]))
        hosts = inv.select(case["host"]) if case.get("host") else list(inv.hosts.values())
        release = plan.check_release_id(str(case["release"]))
        primary, hosts = rollout.primary(hosts, pipe)
        plans = {h.name: plan.deploy(h, pipe, release, OP, primary=primary) for h in hosts}
    except ConfigError as exc:
        return None, placeholders(str(exc), tmp_path)
    for steps in plans.values():
        for s in steps:
            for c in s.commands:
                for secret in c.secrets:
                    assert secret not in c.render(), f"secret printed in {s.name}: {c.render()}"
    return {name: {s.name: [f"# {n}" for n in s.notes] + [line(c) for c in s.commands] for s in steps}
            for name, steps in plans.items()}, None


def line(cmd):
    flags = [name for name, on in (("local", cmd.local), ("gate", cmd.gate), ("hold", cmd.hold),
                                   ("no-cut", not cmd.cut_on_stop)) if on]
    flags += [f"{name}={value}" for name, value in (("capture", cmd.capture), ("signal", cmd.signal),
                                                    ("timeout", cmd.timeout)) if value]
    if tuple(cmd.ok_codes) != (0,):
        flags.append("ok=" + ",".join(str(c) for c in cmd.ok_codes))
    text = cmd.render()
    return f"[{' '.join(flags)}] {text}" if flags else text


def placeholders(text, tmp_path):
    for value, name in ((str(tmp_path), "{dir}"), (sys.executable, "{python}"), (str(PROJECT), "{project}")):
        text = text.replace(value, name)
    return re.sub(r"(deploy/remote/[\w.-]+)@[0-9a-f]{8}", r"\1@HASH", text)


class _Dumper(yaml.SafeDumper):
    """Commands as literal blocks (`|-`) where YAML would quote them: the text exactly as
    printed, no doubled quotes or escapes to read through."""


def _literal(dumper, value):
    quoted = yaml.safe_dump(value, width=100000)[:1] in ("'", '"')
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if quoted else None)


_Dumper.add_representer(str, _literal)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_plan_case(path, tmp_path):
    text = path.read_text()
    case = yaml.safe_load(text)
    for key in ("release", "inventory", "pipeline"):
        assert key in case, f"{path.name}: missing key '{key}'"
    plans, error = make(case, tmp_path)
    if plans is not None:
        plans = {h: {s: [placeholders(l, tmp_path) for l in lines] for s, lines in steps.items()}
                 for h, steps in plans.items()}
    if UPDATE:
        m = LAST_KEY.search(text)
        head = text[:m.start()] if m else text.rstrip("\n") + "\n"
        tail = {"error": error} if error is not None else {"expect": plans}
        path.write_text(head + yaml.dump(tail, Dumper=_Dumper, sort_keys=False, width=100000, allow_unicode=True))
        return
    if "error" in case:
        assert error == case["error"], f"{path.name}: a plan was made where an error was expected" \
            if error is None else f"{path.name}: another error"
        return
    assert error is None, f"{path.name}: {error}"
    assert "expect" in case, f"{path.name}: no expect: (write it with PLAN_CASES_UPDATE=1)"
    expected = case["expect"]
    assert list(plans) == list(expected), f"{path.name}: hosts (in deploy order)"
    for host, steps in expected.items():
        assert list(plans[host]) == list(steps), f"{path.name}: {host}'s steps (in plan order)"
        for step, lines in steps.items():
            assert plans[host][step] == lines, f"{path.name}: {host}, step '{step}'"


def test_there_are_cases_of_every_kind():
    """The cases cover both strategies, a fleet, and bad input (a guard against an empty glob)."""
    cases = [yaml.safe_load(p.read_text()) for p in CASES]
    assert len(cases) >= 6
    assert any("in-place" in c["pipeline"] for c in cases)
    assert any("error" in c for c in cases) and any("expect" in c and len(c["expect"]) > 1 for c in cases)
