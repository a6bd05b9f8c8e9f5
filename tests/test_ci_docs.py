"""docs/ci.md's recipes, taken from the page itself: the YAML parses, every shell part passes
ShellCheck (the JavaScript of the comment step passes `node --check`), and the plan and deploy
steps' scripts, run as written in a copy of the project against sandbox hosts, save a plan,
compose the comment/note, and deploy exactly that plan."""

import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml

from helpers import PROJECT, slot_port, slot_root, write
from labfixture import needs_root, start

DOC = (PROJECT / "docs" / "ci.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC, re.S)
GITHUB = yaml.safe_load(next(b for b in BLOCKS if b.startswith("# .github/workflows/deploy.yml")))
GITLAB = yaml.safe_load(next(b for b in BLOCKS if b.startswith("# .gitlab-ci.yml")))


def github_runs():
    """(job, step name, script) of every `run:` of the workflow."""
    return [(job, step.get("name", "?"), step["run"]) for job, spec in GITHUB["jobs"].items()
            for step in spec["steps"] if "run" in step]


def gitlab_script(job):
    spec = GITLAB[job]
    base = GITLAB[spec["extends"]] if "extends" in spec else {}
    return "\n".join(base.get("before_script", []) + spec.get("script", []))


def tool(name):
    if shutil.which(name):
        return name
    if os.environ.get("REQUIRE_LINTERS") == "1":
        pytest.fail(f"{name} is not installed")
    pytest.skip(f"{name} is not installed")


def shellcheck(text, tmp_path, name):
    script = tmp_path / f"{re.sub(r'[^A-Za-z0-9]+', '-', name)}.sh"
    script.write_text("#!/bin/bash\n" + text)
    return subprocess.run([tool("shellcheck"), "-s", "bash", str(script)], capture_output=True, text=True)


def test_both_recipes_parse_and_plan_then_deploy_the_saved_plan():
    jobs = GITHUB["jobs"]
    plan = "\n".join(s.get("run", "") for s in jobs["plan"]["steps"])
    deploy = "\n".join(s.get("run", "") for s in jobs["deploy"]["steps"])
    assert "fab plan --host web --release \"$SHA\" --out plan.json" in plan
    assert "fab deploy --plan approved/plan.json" in deploy and "--release" not in deploy
    upload = next(s for s in jobs["plan"]["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "plan.json" in upload["with"]["path"]
    assert jobs["deploy"]["permissions"]["actions"] == "read"
    assert jobs["plan"]["permissions"] == {"contents": "read", "pull-requests": "write"}  # no secrets, no key
    assert "fab plan --host web --release \"$CI_COMMIT_SHA\" --out plan.json" in gitlab_script("plan")
    assert "fab deploy --plan approved/plan.json" in gitlab_script("deploy")
    assert "plan.json" in GITLAB["plan"]["artifacts"]["paths"]


@pytest.mark.parametrize("job, name, script", github_runs(), ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_github_run_steps_pass_shellcheck(job, name, script, tmp_path):
    # Expressions go through env:, never into the script text (no injection from a branch name).
    assert "${{" not in script, name
    r = shellcheck(script, tmp_path, name)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("job", ["plan", "deploy"])
def test_gitlab_scripts_pass_shellcheck(job, tmp_path):
    r = shellcheck(gitlab_script(job), tmp_path, job)
    assert r.returncode == 0, r.stdout + r.stderr


def test_comment_script_is_valid_javascript(tmp_path):
    step = next(s for s in GITHUB["jobs"]["plan"]["steps"] if s.get("uses", "").startswith("actions/github-script"))
    # github-script runs the text as the body of an async function.
    (tmp_path / "comment.js").write_text("(async () => {\n" + step["with"]["script"] + "\n})();\n")
    r = subprocess.run([tool("node"), "--check", str(tmp_path / "comment.js")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- run them

@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from deploy import lab as labmod
    the_lab = start(slot_root("/srv/labci"), 2, slot_port(3470), slot_port(9470), tmp_path_factory.mktemp("labci"))
    yield the_lab
    labmod.down(the_lab.root, purge=True)


@pytest.fixture
def project(lab, tmp_path):
    """A checkout as the recipes assume: the tool, hosts/ with a group `web`, the playbook, the app."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(PROJECT / "fabfile.py", root / "fabfile.py")
    (root / ".venv").symlink_to(PROJECT / ".venv")
    shutil.copytree(PROJECT / "sample-app", root / "app", symlinks=True, ignore=shutil.ignore_patterns("vendor"))
    text = Path(lab.inventory).read_text().replace("groups:\n  lab:", "groups:\n  web:")
    write(root / "hosts" / "production.yml", text)
    write(root / "playbooks" / "laravel.yml", """
        remediate: false
        source: app
        steps:
          - sync
          - shared
          - ownership
          - composer
          - artisan: {commands: [config:cache]}
          - activate
          - opcache_reset
          - fpm_reload
          - verify: {timeout: 10}
          - run: {commands: ["test -n \\"$DB_PASSWORD\\""], env: {DB_PASSWORD: {from_env: PROD_DB_PASSWORD}}}
    """)
    for name in lab.hosts:
        lab.wipe(name)
    return root


def bash(script, cwd, env):
    full = {k: v for k, v in os.environ.items() if k not in ("PROD_DB_PASSWORD",)}
    full.update(COLUMNS="160", TTY_COMPATIBLE="0", **env)
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


def step(job, name):
    return next(s for s in GITHUB["jobs"][job]["steps"] if s.get("name") == name)


@needs_root
@pytest.mark.lab
def test_github_plan_and_deploy_steps_run_as_written(lab, project, tmp_path):
    out = tmp_path / "output"
    plan = step("plan", "fab plan")
    r = bash(plan["run"], project, {**plan["env"], "SHA": "ci1", "GITHUB_OUTPUT": str(out),
                                    **GITHUB["jobs"]["plan"]["env"]})
    assert r.returncode == 0, r.stdout + r.stderr
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    saved = project / "plan.json"
    assert outputs == {"code": "0", "sha256": hashlib.sha256(saved.read_bytes()).hexdigest()}
    text = (project / "plan.txt").read_text()
    assert text.startswith("deploy plan: release ci1 to 2 host(s): lab1, lab2") and "\n# host lab1 (" in text
    assert "placeholder-for-plan" not in saved.read_text() and "DB_PASSWORD=***" in text

    # The deploy job: the artifact of the plan job, the real secret, the step as written.
    (project / "approved").mkdir()
    shutil.copy(saved, project / "approved" / "plan.json")
    deploy = step("deploy", "fab deploy --plan")
    r = bash(deploy["run"], project, {"PROD_DB_PASSWORD": "the-real-one", "SLACK_WEBHOOK_URL": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deployed the approved plan" in r.stdout
    assert lab.get("lab1") == (200, "ci1") and lab.get("lab2") == (200, "ci1")
    summary = tmp_path / "summary.md"
    r = bash(step("deploy", "What ran is what was approved")["run"], project, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"saved plan sha256 `{outputs['sha256']}`" in summary.read_text()
    assert "| lab1 | deployed | yes |" in summary.read_text() and "| lab2 | deployed | yes |" in summary.read_text()


class _Notes(http.server.BaseHTTPRequestHandler):
    received = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        _Notes.received.append((self.path, urllib.parse.parse_qs(body)["body"][0]))
        self.send_response(201)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@needs_root
@pytest.mark.lab
def test_gitlab_plan_note_and_deploy_script_run_as_written(lab, project, tmp_path):
    # The notes API is GitLab's; here a local listener receives the POST the script makes.
    server = http.server.HTTPServer(("127.0.0.1", 0), _Notes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Notes.received.clear()
    env = {"CI_COMMIT_SHA": "gl1", "CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4",
           "CI_PROJECT_ID": "7", "CI_MERGE_REQUEST_IID": "12", "PLAN_NOTE_TOKEN": "t",
           **{k: str(v) for k, v in GITLAB["plan"]["variables"].items()}}
    try:
        r = bash("\n".join(GITLAB["plan"]["script"]), project, env)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stdout + r.stderr
    (path, note), = _Notes.received
    assert path == "/api/v4/projects/7/merge_requests/12/notes"
    digest = hashlib.sha256((project / "plan.json").read_bytes()).hexdigest()
    assert note.startswith("### Deploy plan for gl1\n\nSaved plan `plan.json`, sha256 `" + digest + "`.")
    summary, commands = note.split("<details>")
    assert "deploy plan: release gl1 to 2 host(s)" in summary and "steps (commands per host)" in summary
    assert "# host" not in summary and "\n# host lab1 (" in commands
    # The deploy job's fab part (the last script item), with the plan it fetched.
    (project / "approved").mkdir()
    shutil.copy(project / "plan.json", project / "approved" / "plan.json")
    r = bash(GITLAB["deploy"]["script"][-1], project, {"PROD_DB_PASSWORD": "the-real-one", "SLACK_WEBHOOK_URL": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deployed the approved plan" in r.stdout
    assert "lab1 deployed ran exactly the approved commands" in r.stdout
    assert json.loads((project / "deploy.json").read_text())["plan_sha256"] == digest
