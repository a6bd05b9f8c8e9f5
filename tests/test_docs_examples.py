"""The docs' plan examples are what `fab plan` prints today. No host, no SSH, no root.

A fenced block in README.md or docs/*.md that shows `fab plan` output is marked by an HTML
comment on the line before it, saying how it is made:

    <!-- plan: --inventory docs/examples/hosts/prod.yml --host prod1 --release abc123 -->
    <!-- plan: ... --release abc123 | steps: lock, prepare, finalize -->
    <!-- plan: ... --host web --release abc123 | steps: migrate | host: prod2 -->
    <!-- plan: ... --release abc123 | lines: on failure -->
    <!-- plan: ... --host web --release abc123 | only: lock, finalize | cut: 100 -->

Before the first `|`: the flags of `fab plan` (--host, --inventory, --pipeline, --source,
--release, --serial, --max-fail, --parallel, --rollback-all, --verbose), run from the
project's root. After it, which part of the output the block shows:

- `steps: A, B`: only those steps' sections (`## A` and its lines) of the first host shown
  (`host: NAME`: of that host), in plan order, with a line `   ...` where steps are left out
  between them;
- `only: A, B`: the whole output, but in each host's commands every other step's section is
  one line `   ...`;
- `lines: TEXT`: only the lines that start with TEXT (leading spaces ignored);
- `cut: N`: every line longer than N characters is cut to N and ends with ` ...`;
- `width: N`: the terminal width the steps table is drawn for (default 100);
- `env: A, B`: these environment variables are set (to `example-A`, ...) while planning, for
  playbooks that read a secret `from_env` (it prints as ***).

`<!-- file: PATH -->` before a block: the block is that file of the project, as it is.

What differs from machine to machine is written as it would be on a reader's machine with
the tool checked out in /opt/deploy: this project's directory is /opt/deploy, this Python is
/opt/deploy/.venv/bin/python3, the operator is alice@laptop:4242, the source's git commit is
GIT_COMMIT below. The hashes of deploy/remote programs (`@1a2b3c4d`) are compared as HASH, so
editing a program does not break the docs; regenerating writes the current ones.

A block that looks like a plan (a `## step` line followed by `$` command lines) but is not
made by `fab plan` (a rollback's dry run, which reads the host) says so instead:
`<!-- not generated: WHY -->`.

After a change of the plans, rewrite the blocks and read the diff:

    DOCS_EXAMPLES_UPDATE=1 .venv/bin/pytest -q -p no:cacheprovider tests/test_docs_examples.py
    git diff docs/ README.md
"""

import argparse
import io
import os
import re
import shlex
import sys
from pathlib import Path

import pytest

from deploy import cli_plan
from deploy import plan as planner
from deploy.report import Reporter

PROJECT = Path(__file__).resolve().parent.parent
DOCS = [PROJECT / "README.md"] + sorted((PROJECT / "docs").glob("*.md"))
UPDATE = os.environ.get("DOCS_EXAMPLES_UPDATE") == "1"

READER_PROJECT = "/opt/deploy"
READER_PYTHON = READER_PROJECT + "/.venv/bin/python3"
OPERATOR = planner.Operator(user="alice", machine="laptop", pid=4242)
GIT_COMMIT = "9c70689afd52a4a19ab9fefbfd746db2a8fed8f3"

MARK = re.compile(r"^\s*<!--\s*(plan|file|not generated):(.*?)-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)")
HASH = re.compile(r"(deploy/remote/[\w.-]+)@[0-9a-f]{8}\b")
STEP = re.compile(r"^## (.+?)(  \(.*\))?$")


def blocks(path):
    """Every fenced block of a markdown file: (first line index of its body, end index, the
    fence's indent, the marker comment before it as (kind, text) or None)."""
    lines = path.read_text().split("\n")
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m.group(1), m.group(2)
        end = i + 1
        while end < len(lines) and not (lines[end].startswith(indent + fence[0] * 3)
                                        and lines[end].strip() == fence):
            end += 1
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        mark = MARK.match(lines[j]) if j >= 0 else None
        found.append((i + 1, end, indent, (mark.group(1), mark.group(2).strip()) if mark else None))
        i = end + 1
    return lines, found


def marked():
    cases = []
    for path in DOCS:
        lines, found = blocks(path)
        for n, (start, _, _, mark) in enumerate(found):
            if mark and mark[0] in ("plan", "file"):
                cases.append(pytest.param(path, n, id=f"{path.name}:{start}"))
    return cases


FLAGS = argparse.ArgumentParser(prog="fab plan", add_help=False, exit_on_error=False)
for flag in ("--host", "--inventory", "--pipeline", "--source", "--release", "--serial", "--max-fail",
             "--parallel"):
    FLAGS.add_argument(flag)
FLAGS.add_argument("--rollback-all", action="store_true")
FLAGS.add_argument("--verbose", action="store_true")


def parse(spec):
    flags, *parts = [p.strip() for p in spec.split("|")]
    args = FLAGS.parse_args(shlex.split(flags))
    options = {}
    for part in parts:
        key, sep, value = part.partition(":")
        assert sep and key.strip() in ("steps", "host", "only", "lines", "cut", "width", "env"), \
            f"unknown part {part!r} in <!-- plan: {spec} -->"
        options[key.strip()] = value.strip()
    return args, options


def run_plan(args, options, monkeypatch):
    monkeypatch.chdir(PROJECT)
    for name in filter(None, (n.strip() for n in options.get("env", "").split(","))):
        monkeypatch.setenv(name, f"example-{name}")
    width = int(options.get("width", 100))
    monkeypatch.setenv("COLUMNS", str(width))
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):  # plain text, as in a pipe
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(planner.Operator, "here", classmethod(lambda cls, run=None: OPERATOR))
    out = io.StringIO()
    code = cli_plan.plan_cmd(args.host, args.inventory, args.pipeline, args.source, args.release, args.serial,
                             args.max_fail, args.parallel, args.rollback_all, verbose=args.verbose,
                             reporter=Reporter(live=False, stream=out))
    assert code == 0, f"fab plan exited {code}"
    return reader_view(out.getvalue())


def reader_view(text):
    """The output as on a reader's machine (module docstring)."""
    text = text.replace(sys.executable, READER_PYTHON).replace(str(PROJECT), READER_PROJECT)
    # A checkout with uncommitted changes, or none at all (an unpacked archive), reads as a clean one.
    return re.sub(r"^(  source     \S+)(  \(git commit .*\))?$", rf"\1  (git commit {GIT_COMMIT})", text, flags=re.M)


def sections(lines, host=None):
    """{step: its lines} of one host's part of a plan (the first host shown, or `host`)."""
    found, current, inside = {}, None, False
    for line in lines:
        if line.startswith("# host "):
            if inside and found:
                break
            inside = host is None or line.startswith(f"# host {host} ")
            current = None
            continue
        if not inside:
            continue
        if not line.strip():
            current = None
            continue
        m = STEP.match(line)
        if m:
            current = m.group(1)
            found[current] = [line]
        elif current:
            found[current].append(line)
    return found


def part(text, options):
    lines = text.rstrip("\n").split("\n")
    if "steps" in options:
        wanted = [s.strip() for s in options["steps"].split(",")]
        have = sections(lines, options.get("host"))
        missing = [s for s in wanted if s not in have]
        assert not missing, f"no step {missing} in the plan (its steps: {', '.join(have)})"
        order = list(have)
        picked, last = [], None
        for name in sorted(wanted, key=order.index):
            if last is not None and order.index(name) != last + 1:
                picked.append("   ...")
            picked += have[name]
            last = order.index(name)
        lines = picked
    if "only" in options:
        keep = {s.strip() for s in options["only"].split(",")}
        shown, skipping, inside = [], False, False
        for line in lines:
            if line.startswith("# host "):
                inside, skipping = True, False
            elif not line.strip() or not line.startswith(("#", " ")):
                inside, skipping = False, False
            m = STEP.match(line) if inside else None
            if m:
                skipping = m.group(1) not in keep
                if skipping and shown[-1] != "   ...":
                    shown.append("   ...")
            if not (skipping and line.startswith(("## ", "   "))):
                shown.append(line)
        lines = shown
    if "lines" in options:
        lines = [line for line in lines if line.lstrip().startswith(options["lines"])]
        assert lines, f"no line starts with {options['lines']!r}"
    if "cut" in options:
        n = int(options["cut"])
        lines = [line if len(line) <= n else line[:n].rstrip() + " ..." for line in lines]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def expected(kind, spec, monkeypatch):
    if kind == "file":
        return (PROJECT / spec).read_text().rstrip("\n").split("\n")
    args, options = parse(spec)
    return part(run_plan(args, options, monkeypatch), options)


def comparable(lines):
    return [HASH.sub(r"\1@HASH", line.rstrip()) for line in lines]


@pytest.mark.parametrize("path,index", marked())
def test_doc_block_is_what_the_code_prints(path, index, monkeypatch):
    lines, found = blocks(path)
    start, end, indent, (kind, spec) = found[index]
    want = expected(kind, spec, monkeypatch)
    shown = [line[len(indent):] if line.startswith(indent) else line for line in lines[start:end]]
    if UPDATE and shown != want:
        lines[start:end] = [(indent + line) if line else line for line in want]
        path.write_text("\n".join(lines))
        return
    assert comparable(shown) == comparable(want), (
        f"{path.relative_to(PROJECT)}:{start} is not what <!-- {kind}: {spec} --> gives today; "
        "rewrite it with DOCS_EXAMPLES_UPDATE=1 (see tests/test_docs_examples.py) and read the diff")


def test_every_plan_example_says_how_it_is_made():
    """A block with a `## step` line followed by commands is marked, or says why it is not generated."""
    unmarked = []
    for path in DOCS:
        lines, found = blocks(path)
        for start, end, _, mark in found:
            body = [line.strip() for line in lines[start:end]]
            looks = any(STEP.match(a) and re.match(r"^(local)?\$ ", b) for a, b in zip(body, body[1:]))
            if looks and mark is None:
                unmarked.append(f"{path.relative_to(PROJECT)}:{start}")
    assert not unmarked, ("plan examples without <!-- plan: ... --> (or <!-- not generated: WHY -->) "
                          f"before them: {', '.join(unmarked)}")


def test_the_markers_are_found():
    """The parametrized test above is not vacuous: pipeline.md's examples are marked."""
    assert sum(1 for p in marked() if p.values[0].name == "pipeline.md") >= 10
