"""Fleets on 8 real sandbox hosts: canary, thresholds, locks, dead hosts, Ctrl-C, host keys, reports."""

import json
import os
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import FAB, PROJECT, fab, slot_port, slot_root, write
from labfixture import needs_root, start

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labfleet")
HOSTS = [f"lab{i}" for i in range(1, 9)]

PIPELINE = """
remediate: false
source: {source}
{extra}
steps:
  - sync
  - shared
  - ownership
  - composer
  - artisan: {{commands: [config:cache, route:cache]}}
{before}
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 10, interval: 0.25}}
{after}
"""


def pipe(tmp_path, name="p.yml", extra="", before="", after=""):
    return str(write(tmp_path / name, PIPELINE.format(source=PROJECT / "sample-app", extra=extra,
                                                      before=before, after=after)))


def fail_on(hosts, when="after"):
    test = " && ".join(f'[ "$DEPLOY_HOST" != {h} ]' for h in hosts)
    return f"  - run: {{name: fail on some hosts, commands: ['{test}']}}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 8, slot_port(2800), slot_port(8800), tmp_path_factory.mktemp("labfleet"))
    yield the_lab
    labmod.down(ROOT, purge=True)


@pytest.fixture
def fleet(lab, tmp_path):
    """Every host freshly deployed with r1."""
    for name in HOSTS:
        lab.wipe(name)
    r = fab("deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path, "base.yml"),
            "--release", "r1", "--parallel", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    return lab


def live(lab, name):
    return (lab.deploy_path(name) / "current").readlink().name


def assert_consistent(lab):
    """No host without a complete live release, no lock left behind."""
    for name in HOSTS:
        current = lab.deploy_path(name) / "current"
        assert current.is_symlink() and (current / "RELEASE").is_file(), name
        assert not (lab.deploy_path(name) / ".current.tmp").exists(), name
        assert not (lab.deploy_path(name) / ".deploy" / "lock").exists(), name


def deploy(lab, pipeline, release, *extra):
    return fab("deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline", pipeline,
               "--release", release, *extra)


def test_canary_failure_stops_the_rollout_and_rolls_the_canary_back(fleet, tmp_path):
    p = pipe(tmp_path, extra='serial: [1, "100%"]', after=fail_on(["lab1"]))
    r = deploy(fleet, p, "r2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "stopping the rollout" in r.stdout
    assert live(fleet, "lab1") == "r1" and (fleet.deploy_path("lab1") / ".deploy" / "bad" / "r2").exists()
    for name in HOSTS[1:]:
        assert live(fleet, name) == "r1"
        assert not (fleet.deploy_path(name) / "releases" / "r2").exists(), name
    assert all(fleet.get(n) == (200, "r1") for n in HOSTS)
    assert_consistent(fleet)


def test_failures_under_the_threshold_continue(fleet, tmp_path):
    report = tmp_path / "report.json"
    p = pipe(tmp_path, extra="serial: [4]\nmax_fail: 1", after=fail_on(["lab2"]))
    r = deploy(fleet, p, "r2", "--report", str(report))
    assert r.returncode == 1, r.stdout
    states = {h["host"]: h["state"] for h in json.loads(report.read_text())["hosts"]}
    assert states.pop("lab2") == "rolled back"
    assert set(states.values()) == {"deployed"}
    assert live(fleet, "lab2") == "r1" and all(live(fleet, n) == "r2" for n in HOSTS if n != "lab2")
    assert_consistent(fleet)


def test_failures_over_the_threshold_stop_and_roll_back_the_batch(fleet, tmp_path):
    report = tmp_path / "report.json"
    p = pipe(tmp_path, extra="serial: [4]\nmax_fail: 1", after=fail_on(["lab2", "lab3"]))
    r = deploy(fleet, p, "r2", "--report", str(report))
    assert r.returncode == 1, r.stdout
    states = {h["host"]: h["state"] for h in json.loads(report.read_text())["hosts"]}
    assert states == {"lab1": "rolled back", "lab2": "rolled back", "lab3": "rolled back", "lab4": "rolled back",
                      "lab5": "untouched", "lab6": "untouched", "lab7": "untouched", "lab8": "untouched"}
    assert all(live(fleet, n) == "r1" for n in HOSTS)
    assert all(fleet.get(n) == (200, "r1") for n in HOSTS[:4])
    assert_consistent(fleet)


def test_two_deploys_at_once_exactly_one_proceeds(fleet, tmp_path):
    p = pipe(tmp_path)
    env = dict(os.environ, COLUMNS="200")
    cmds = [[FAB, "deploy", "--host", "lab", "--inventory", fleet.inventory, "--pipeline", p, "--release", rel]
            for rel in ("ra", "rb")]
    procs = [subprocess.Popen(c, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for c in cmds]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 1], (codes, outs)
    winner = ("ra", "rb")[codes.index(0)]
    loser_out = outs[codes.index(1)][0]
    assert "lock is held" in loser_out and "pid" in loser_out and f"deploy {winner}" in loser_out
    assert all(fleet.get(n) == (200, winner) for n in HOSTS)
    loser = ("ra", "rb")[codes.index(1)]
    assert not any((fleet.deploy_path(n) / "releases" / loser).exists() for n in HOSTS)
    assert_consistent(fleet)


def test_host_whose_sshd_dies_mid_deploy_is_unreachable_others_finish(fleet, tmp_path):
    slow = "  - run: {name: slow on lab3, commands: ['if [ \"$DEPLOY_HOST\" = lab3 ]; then sleep 6; fi']}"
    p = pipe(tmp_path, before=slow)
    report = tmp_path / "r.json"
    killer = threading.Timer(2.5, lambda: labmod.stop_sshd("lab3", root=ROOT))
    killer.start()
    t0 = time.monotonic()
    try:
        # max_fail 1: the dead host alone does not stop the others (default 0 would roll them back).
        r = deploy(fleet, p, "r2", "--parallel", "8", "--max-fail", "1", "--report", str(report))
    finally:
        killer.cancel()
        labmod.start_sshd("lab3", root=ROOT)
    elapsed = time.monotonic() - t0
    assert r.returncode == 1, r.stdout
    assert elapsed < 60
    states = {h["host"]: h["state"] for h in json.loads(report.read_text())["hosts"]}
    assert states.pop("lab3") == "unreachable"
    assert set(states.values()) == {"deployed"}
    assert live(fleet, "lab3") == "r1" and fleet.get("lab3") == (200, "r1")
    # Its lock could not be released over a dead connection: unlock shows who held it.
    u = fab("unlock", "--host", "lab3", "--inventory", fleet.inventory)
    assert u.returncode == 0 and "lock removed" in u.stdout and "r2" in u.stdout
    assert_consistent(fleet)


def test_hanging_host_fails_in_bounded_time(fleet, tmp_path):
    # A host whose sshd hangs (SIGSTOP: the TCP connect succeeds, no banner ever comes).
    text = open(fleet.inventory).read().replace("  web_user: www-data", "  web_user: www-data\n  connect_timeout: 3")
    inv = write(tmp_path / "inv.yml", text)
    labmod.freeze_sshd("lab7", root=ROOT)
    t0 = time.monotonic()
    try:
        r = fab("deploy", "--host", "lab6,lab7", "--inventory", str(inv), "--pipeline", pipe(tmp_path),
                "--release", "r2", "--max-fail", "1")
    finally:
        labmod.thaw_sshd("lab7", root=ROOT)
    assert time.monotonic() - t0 < 40
    assert r.returncode == 1
    assert "lab7 unreachable" in r.stdout
    assert live(fleet, "lab6") == "r2" and live(fleet, "lab7") == "r1"


def test_sigint_mid_run_leaves_every_host_complete_and_unlocked(fleet, tmp_path):
    p = pipe(tmp_path)
    proc = subprocess.Popen([FAB, "deploy", "--host", "lab", "--inventory", fleet.inventory, "--pipeline", p,
                             "--release", "r2", "--parallel", "2"], cwd=PROJECT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, COLUMNS="200"))
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    print(out)
    assert proc.returncode in (1, 130), out + err
    assert "SIGINT" in out
    served = {n: live(fleet, n) for n in HOSTS}
    assert set(served.values()) <= {"r1", "r2"}
    assert "r1" in served.values(), "the interrupt came too late to matter"
    for n, rel in served.items():
        assert fleet.get(n) == (200, rel)
        if rel == "r1":
            assert not (fleet.deploy_path(n) / "releases" / "r2").exists(), n
    assert_consistent(fleet)


def test_changed_or_unknown_host_key_is_refused_and_nothing_runs(fleet, tmp_path):
    known = Path(ROOT) / "ssh" / "known_hosts"
    original = known.read_text()
    port8 = fleet.hosts["lab8"].ssh_port
    key1 = next(l for l in original.splitlines() if l.startswith(f"[127.0.0.1]:{fleet.hosts['lab1'].ssh_port} "))
    forged = [l for l in original.splitlines() if not l.startswith(f"[127.0.0.1]:{port8} ")]
    try:
        known.write_text("\n".join(forged + [key1.replace(f":{fleet.hosts['lab1'].ssh_port} ", f":{port8} ")]) + "\n")
        before = sorted(p.name for p in (fleet.deploy_path("lab8") / ".deploy").iterdir())
        r = fab("deploy", "--host", "lab8", "--inventory", fleet.inventory, "--pipeline", pipe(tmp_path), "--release", "r2")
        assert r.returncode == 1
        assert "CHANGED" in r.stdout and "ssh-keygen -R" in r.stdout
        assert sorted(p.name for p in (fleet.deploy_path("lab8") / ".deploy").iterdir()) == before
        known.write_text("\n".join(forged) + "\n")
        r = fab("deploy", "--host", "lab8", "--inventory", fleet.inventory, "--pipeline", pipe(tmp_path), "--release", "r2")
        assert r.returncode == 1 and "unknown" in r.stdout and "ssh-keyscan" in r.stdout
        assert not (fleet.deploy_path("lab8") / "releases" / "r2").exists()
    finally:
        known.write_text(original)


def test_reports_parse_and_secrets_never_appear(fleet, tmp_path):
    secret = "TopSecret-4242"
    run = ("  - run:\n      name: use token\n      commands: ['echo \"token is $API_TOKEN\"', 'echo \"db is $DB_PASS\"']\n"
           "      env: {API_TOKEN: {value: '" + secret + "', secret: true}, DB_PASS: {from_env: FLEET_DB_PASS}}")
    p = pipe(tmp_path, after=run)
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    env = {"FLEET_DB_PASS": "DbPass-777"}
    plan = fab("plan", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", p, env=env)
    r = fab("deploy", "--host", "lab1,lab2", "--inventory", fleet.inventory, "--pipeline", p, "--release", "r2",
            "--report", str(report), "--junit", str(junit), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(report.read_text())
    assert data["release"] == "r2" and data["exit_code"] == 0
    assert {h["host"]: h["state"] for h in data["hosts"]} == {"lab1": "deployed", "lab2": "deployed"}
    run_cmds = [c for h in data["hosts"] for s in h["steps"] if s["name"] == "use token" for c in s["commands"]]
    assert len(run_cmds) == 4 and all(c["exit_code"] == 0 for c in run_cmds)
    assert "token is ***" in run_cmds[0]["output"]
    suite = ET.parse(junit).getroot()
    assert int(suite.get("failures")) == 0 and int(suite.get("tests")) >= 20
    assert {c.get("classname") for c in suite.iter("testcase")} == {"lab1", "lab2"}
    texts = [plan.stdout, plan.stderr, r.stdout, r.stderr, report.read_text(), junit.read_text()]
    for name in ("lab1", "lab2"):
        meta = fleet.deploy_path(name) / ".deploy"
        texts += [f.read_text(errors="replace") for f in meta.rglob("*") if f.is_file() and f.suffix != ".php"]
    for text in texts:
        assert secret not in text and "DbPass-777" not in text
    assert "API_TOKEN=***" in plan.stdout and "DB_PASS=***" in plan.stdout
