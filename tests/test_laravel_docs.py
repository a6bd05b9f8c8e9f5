"""docs/laravel.md against the code, without a host: its sudoers rules allow every command the
example inventory's plan runs through sudo, its inventory and playbook load, and every `fab`
command line it shows names real tasks and flags. (tests/test_laravel_docs_lab.py runs its
server setup on a lab host.)"""

import re
import shlex

import pytest

from deploy import inventory, pipeline, plan, plancheck
from helpers import PROJECT, fab, write

DOC = (PROJECT / "docs" / "laravel.md").read_text()


def blocks(lang=None):
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```([a-z]*)\n(.*?)^```", DOC, re.S | re.M)
            if lang is None or m.group(1) == lang]


def sudoers_rules():
    """(program basename, argument pattern or None for any) of each rule for root."""
    text = next(b for _, b in blocks() if b.startswith("# /etc/sudoers.d/deploy"))
    rules = []
    for line in text.splitlines():
        m = re.match(r"deploy ALL=\(root\) NOPASSWD: (.*)", line)
        for spec in (m.group(1).split(", ") if m else []):
            path, _, args = spec.partition(" ")
            rules.append((path.rsplit("/", 1)[1], _sudoers_args(args) if args else None))
    return rules


def _sudoers_args(args):
    """sudoers' argument matching: `\\x` is x itself, `*` any characters (spaces included)."""
    out, i = "", 0
    while i < len(args):
        if args[i] == "\\" and i + 1 < len(args):
            out += re.escape(args[i + 1])
            i += 2
            continue
        out += ".*" if args[i] == "*" else re.escape(args[i])
        i += 1
    return re.compile(out + r"\Z")


def allowed(words):
    program, args = words[0].rsplit("/", 1)[-1], " ".join(str(w) for w in words[1:])
    return any(p == program and (pattern is None or pattern.match(args)) for p, pattern in sudoers_rules())


def test_the_sudoers_rules_allow_every_sudo_command_of_the_example_plan():
    hosts = inventory.load(PROJECT / "hosts" / "example.yml")
    pipe = pipeline.load(PROJECT / "playbooks" / "laravel.yml")
    for host in hosts.hosts.values():
        steps = plan.deploy(host, pipe, "abc123", plan.Operator("ci", "m", 1))
        checks = plancheck.sudo_commands(steps, host)
        assert checks["unchecked"] == []
        programs = {w[0] for w in checks["checks"]}
        assert {"setfacl", "systemctl", "supervisorctl"} <= programs, checks["shown"]
        for words in checks["checks"]:
            assert allowed(words), f"docs/laravel.md has no sudoers rule for: {' '.join(map(str, words))}"


def test_the_rule_matcher_is_strict_where_the_rules_are():
    assert allowed(["supervisorctl", "restart", "app:*"])
    assert not allowed(["supervisorctl", "restart", "app:queue_00"])     # \* is a literal star
    assert allowed(["systemctl", "reload", "php8.2-fpm"]) and not allowed(["systemctl", "stop", "php8.2-fpm"])
    assert allowed(["setfacl", "-m", "u:www-data:r", "/var/www/app/shared/.env"])
    assert not allowed(["chown", "-R", "www-data", "/var/www/app"])


def test_the_inventory_and_the_playbook_on_the_page_load(tmp_path):
    yaml_blocks = [b for _, b in blocks("yaml")]
    inv = next(b for b in yaml_blocks if b.startswith("defaults:"))
    loaded = inventory.load(write(tmp_path / "hosts" / "production.yml", inv))
    assert [h.name for h in loaded.select("production")] == ["web1", "web2"]
    assert loaded.hosts["web1"].primary and loaded.hosts["web1"].example is None
    playbook = next(b for b in yaml_blocks if b.startswith("source:"))
    (tmp_path / "build").mkdir()
    pipe = pipeline.load(write(tmp_path / "playbooks" / "app.yml", playbook))
    assert [s.kind for s in pipe.steps] == [s.kind for s in pipeline.load(PROJECT / "playbooks" / "laravel.yml").steps]
    steps = plan.deploy(loaded.hosts["web1"], pipe, "abc123", plan.Operator("ci", "m", 1), primary="web1")
    assert steps


def test_every_fab_command_line_on_the_page_names_real_tasks_and_flags():
    lines = [line for _, b in blocks() for line in b.splitlines() if line.startswith("fab ")]
    lines += re.findall(r"`(fab [^`]+)`", DOC)
    assert len(lines) > 10
    known = {}
    for line in lines:
        words = shlex.split(line.split("#")[0])
        task = words[1]
        if task not in known:
            r = fab("--help", task, timeout=60)
            assert r.returncode == 0, f"docs/laravel.md: unknown task in {line!r}"
            known[task] = set(re.findall(r"^\s+(--[a-z-]+)", r.stdout, re.M))
        for word in words[2:]:
            if word.startswith("--"):
                flag = word.split("=")[0]
                assert flag in known[task] or flag.replace("--[no-]", "--") in known[task], f"{line!r}: {flag}"


@pytest.mark.parametrize("anchor", sorted(set(re.findall(r"\]\(((?:[a-z]+\.md)?#[a-z0-9-]+)\)", DOC))))
def test_links_to_headings_exist(anchor):
    page, _, frag = anchor.partition("#")
    text = (PROJECT / "docs" / page).read_text() if page else DOC
    slugs = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
             for h in re.findall(r"^#+ (.*)$", text, re.M)} | set(re.findall(r'<a id="([^"]+)">', text))
    assert frag in slugs, f"docs/laravel.md links to {anchor}, which is not a heading there"
