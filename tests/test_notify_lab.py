"""Notifications of real deploys and rollbacks on 2 sandbox hosts, received by a local HTTP server:
the right events with the right content, secrets never shown, and webhooks that fail or hang
change nothing about the deploy (its exit code, its hosts) but are reported."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import needs_root, start
from test_notify import Hooks

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labnotify")
URL_TOKEN = "T0KEN-in-the-url-4711"
HEADER_TOKEN = "Bearer header-token-0815"

PIPELINE = """
remediate: false
source: {source}
notify:
{notify}
steps:
  - sync
  - shared
  - composer
  - ownership
  - artisan: {{commands: [config:cache]}}
  - activate
  - opcache_reset
  - verify: {{timeout: 5, interval: 0.25}}
{after}
"""
FAIL_ON_LAB2 = "  - run: {name: smoke, commands: ['[ \"$DEPLOY_HOST\" != lab2 ]']}"
CI_ENV = {"GITHUB_SERVER_URL": "https://github.example", "GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "777",
          "GITHUB_ACTOR": "alice"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 2, slot_port(3350), slot_port(9350), tmp_path_factory.mktemp("labnotify"))
    yield the_lab
    labmod.down(ROOT, purge=True)


@pytest.fixture
def fleet(lab, tmp_path):
    for name in lab.hosts:
        lab.wipe(name)
    r = fab("deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path, "  []"),
            "--release", "r1")
    assert r.returncode == 0, r.stdout + r.stderr
    return lab


@pytest.fixture
def hooks():
    h = Hooks()
    yield h
    h.close()


def pipe(tmp_path, notify_yaml, after="", name="p.yml"):
    text = PIPELINE.format(source=PROJECT / "sample-app", notify=notify_yaml, after=after)
    return str(write(tmp_path / name, text))


def deploy(lab, pipeline, release, *extra, env=None):
    return fab("deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline", pipeline, "--release", release,
               *extra, env=env)


def bodies(hooks, path):
    return [r["body"] for r in hooks.to(path)]


def test_a_deploy_notifies_start_and_success_with_release_commit_hosts_and_ci_link(fleet, tmp_path, hooks):
    p = pipe(tmp_path, """
  - name: team
    url: {from_env: TEAM_WEBHOOK}
    format: slack
    headers: {Authorization: {from_env: TEAM_TOKEN}}
  - name: audit
    url: %s/ok/audit
""" % hooks.base)
    report, html = tmp_path / "r.json", tmp_path / "r.html"
    env = {"TEAM_WEBHOOK": f"{hooks.base}/ok/services/{URL_TOKEN}", "TEAM_TOKEN": HEADER_TOKEN, **CI_ENV}
    r = deploy(fleet, p, "r2", "--report", str(report), "--html", str(html), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    commit = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()

    audit = bodies(hooks, "/ok/audit")
    assert [b["event"] for b in audit] == ["start", "success"]
    started, done = audit
    assert started["hosts"] == [{"host": "lab1", "state": None, "release": None, "previous": None, "batch": None,
                                 "message": None}, {"host": "lab2", "state": None, "release": None, "previous": None,
                                                    "batch": None, "message": None}]
    assert started["exit_code"] is None and started["text"] == "deploy r2 started on 2 host(s): lab1, lab2"
    assert done["events"] == ["success"] and done["exit_code"] == 0
    assert {h["host"]: (h["state"], h["release"], h["previous"]) for h in done["hosts"]} == {
        "lab1": ("deployed", "r2", "r1"), "lab2": ("deployed", "r2", "r1")}
    for body in audit:
        assert body["release"] == "r2" and body["action"] == "deploy" and body["commit"] == commit
        assert body["playbook"] == p and body["actor"] == "alice"
        assert body["run_url"] == "https://github.example/acme/shop/actions/runs/777"

    team = hooks.to(f"/ok/services/{URL_TOKEN}")
    assert [t["body"]["text"] for t in team] == ["deploy r2 started on 2 host(s): lab1, lab2",
                                                 "deploy r2 succeeded (exit 0): 2 deployed"]
    assert all(t["headers"]["Authorization"] == HEADER_TOKEN for t in team)
    assert "<https://github.example/acme/shop/actions/runs/777|CI run>" in json.dumps(team[1]["body"])

    data = json.loads(report.read_text())
    assert [(n["webhook"], n["event"], n["ok"], n["status"]) for n in data["notifications"]] == [
        ("team", "start", True, 200), ("audit", "start", True, 200), ("team", "success", True, 200),
        ("audit", "success", True, 200)]
    assert data["notifications"][0]["url"].endswith("/***") and data["commit"] == commit
    assert "notify team (http://127.0.0.1:" in r.stdout and "/***): success sent (HTTP 200)" in r.stdout
    for text in (r.stdout, r.stderr, report.read_text(), html.read_text()):
        assert URL_TOKEN not in text and "header-token-0815" not in text


def test_failing_and_hanging_webhooks_do_not_change_the_deploy_and_are_reported(fleet, tmp_path, hooks):
    p = pipe(tmp_path, """
  - {name: all, url: %(base)s/ok/all}
  - {name: failures, url: %(base)s/ok/failures, events: [failure]}
  - {name: rollbacks, url: %(base)s/ok/rollbacks, events: [rollback], format: slack}
  - {name: broken, url: {from_env: BROKEN_WEBHOOK}}
  - {name: slow, url: %(base)s/hang, timeout: 1}
""" % {"base": hooks.base}, after=FAIL_ON_LAB2)
    report = tmp_path / "r.json"
    t0 = time.monotonic()
    r = deploy(fleet, p, "r2", "--max-fail", "1", "--report", str(report),
               env={"BROKEN_WEBHOOK": f"{hooks.base}/fail/{URL_TOKEN}"})
    elapsed = time.monotonic() - t0
    # What the deploy alone decides: lab2 failed its smoke step and went back, lab1 stays.
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert {h["host"]: h["state"] for h in data["hosts"]} == {"lab1": "deployed", "lab2": "rolled back"}
    assert fleet.get("lab1") == (200, "r2") and fleet.get("lab2") == (200, "r1")
    assert elapsed < 50, "the hanging webhook (60 s) must not hold the deploy"

    assert [(b["event"], b["events"]) for b in bodies(hooks, "/ok/all")] == [
        ("start", ["start"]), ("rollback", ["failure", "rollback"])]
    assert [b["event"] for b in bodies(hooks, "/ok/failures")] == ["failure"]
    slack, = bodies(hooks, "/ok/rollbacks")
    assert slack["text"] == "deploy r2 FAILED (exit 1): 1 deployed, 1 rolled back"
    assert "`lab2` rolled back: step 'smoke' failed (exit 1)" in slack["blocks"][1]["text"]["text"]
    end = bodies(hooks, "/ok/all")[1]
    assert end["exit_code"] == 1 and end["hosts"][1]["message"].endswith("rolled back to r1")

    records = {(n["webhook"], n["event"]): n for n in data["notifications"]}
    assert records["broken", "start"]["status"] == 500 and not records["broken", "start"]["ok"]
    assert records["broken", "rollback"]["error"].startswith("HTTP 500")
    assert records["slow", "start"]["error"] == "no answer within 1s"
    assert not records["slow", "rollback"]["ok"]
    assert all(records[k]["ok"] for k in records if k[0] in ("all", "failures", "rollbacks"))
    assert r.stdout.count("NOT delivered") == 4
    assert "notify broken (http://127.0.0.1:" in r.stdout and "/***): start NOT delivered: HTTP 500" in r.stdout
    for text in (r.stdout, r.stderr, report.read_text()):
        assert URL_TOKEN not in text


def test_fab_rollback_notifies_rollback(fleet, tmp_path, hooks):
    p = pipe(tmp_path, "  - {url: %s/ok/ops, events: [start, rollback]}" % hooks.base)
    assert deploy(fleet, p, "r2").returncode == 0
    hooks.requests.clear()
    r = fab("rollback", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", p)
    assert r.returncode == 0, r.stdout + r.stderr
    started, done = bodies(hooks, "/ok/ops")
    assert started["event"] == "start" and started["action"] == "rollback" and started["text"].startswith("rollback")
    assert done["event"] == "rollback" and done["events"] == ["success", "rollback"] and done["exit_code"] == 0
    assert done["hosts"] == [{"host": "lab1", "state": "rolled back", "release": "r1", "previous": "r2",
                              "batch": None, "message": "now serving r1 (was r2)"}]
    assert done["text"] == "rollback succeeded (exit 0): 1 rolled back"


def test_a_missing_webhook_variable_exits_2_before_any_host_and_a_plan_does_not_need_it(fleet, tmp_path, hooks):
    p = pipe(tmp_path, "  - url: {from_env: NOTIFY_LAB_UNSET}")
    sshd_log = Path(fleet.hosts["lab1"].sshd_log)
    logins = sshd_log.read_text().count("Accepted publickey")
    r = deploy(fleet, p, "r3")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "environment variable NOTIFY_LAB_UNSET is not set on this machine" in r.stderr
    assert f"{p}:4: key 'notify[0].url'" in r.stderr and "Traceback" not in r.stderr
    assert sshd_log.read_text().count("Accepted publickey") == logins
    plan = fab("plan", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", p)
    assert plan.returncode == 0, plan.stderr
    assert f"## notify webhook 1: json to $NOTIFY_LAB_UNSET on start, success, failure, rollback  ({p}:4)" in plan.stdout
    assert fab("deploy", "--dry-run", "--host", "lab1", "--inventory", fleet.inventory,
               "--pipeline", p).returncode == 0
    assert hooks.requests == []
