"""Signals on real sandbox hosts, the way CI cancels a job (GitHub Actions: SIGINT, SIGTERM
7.5 s later, SIGKILL 2.5 s after that) and the way a person presses Ctrl-C in a terminal
(SIGINT to the whole process group). Every host ends in a complete, recorded state, its lock
given back, the report written, and the exit code says what happened (docs/commands.md)."""

import json
import os
import signal
import subprocess
import time

import pytest

from deploy import lab as labmod
from helpers import FAB, PROJECT, slot_port, slot_root, write
from labfixture import app_copy, needs_root, start, wait_for

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labsignal")
HOSTS = ("lab1", "lab2", "lab3")

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - ownership
  - composer
{before}
  - activate
  - opcache_reset
  - verify: {{timeout: 10, interval: 0.25}}
{after}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 3, slot_port(3800), slot_port(9800), tmp_path_factory.mktemp("labsignal"))
    yield the_lab
    labmod.down(ROOT, purge=True)


def pipe(tmp_path, name="p.yml", before="", after="", source=None):
    return str(write(tmp_path / name, PIPELINE.format(source=source or PROJECT / "sample-app", before=before,
                                                      after=after)))


@pytest.fixture
def hosts(lab, tmp_path):
    for name in HOSTS:
        lab.wipe(name)
    r = subprocess.run([FAB, "deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline",
                        pipe(tmp_path, "base.yml"), "--release", "r1"], cwd=PROJECT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return lab


def live(lab, name):
    return (lab.deploy_path(name) / "current").readlink().name


def start_fab(*args, group=False):
    return subprocess.Popen([FAB, *args], cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, COLUMNS="200"), start_new_session=group)


def cancel_like_github(proc):
    """SIGINT; SIGTERM after 7.5 s if still running; SIGKILL 2.5 s later. Returns what was sent."""
    sent = ["SIGINT"]
    proc.send_signal(signal.SIGINT)
    for sig, wait in ((signal.SIGTERM, 7.5), (signal.SIGKILL, 2.5)):
        try:
            proc.wait(timeout=wait)
            return sent
        except subprocess.TimeoutExpired:
            proc.send_signal(sig)
            sent.append(sig.name)
    proc.wait(timeout=30)
    return sent


def left_in(root, args):
    """Processes running `args` in a directory under root (on these hosts: a release dir), not
    any other test's processes on the same machine."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cmdline == args and cwd.startswith(str(root) + "/"):
            found.append((int(pid), cwd))
    return found


def consistent(lab, name):
    current = lab.deploy_path(name) / "current"
    assert current.is_symlink() and (current / "RELEASE").is_file(), name
    assert lab.get(name) == (200, live(lab, name))
    assert not (lab.deploy_path(name) / ".deploy" / "lock").exists(), name


def test_ci_cancel_during_the_build_cancels_every_host_at_once(hosts, tmp_path):
    slow = "  - run: {name: slow build, commands: ['sleep 60']}"
    out = tmp_path / "r.json"
    proc = start_fab("deploy", "--host", "lab", "--inventory", hosts.inventory, "--pipeline",
                     pipe(tmp_path, before=slow), "--release", "r2", "--report", str(out))
    assert wait_for(lambda: all((hosts.deploy_path(n) / "releases" / "r2").exists() for n in HOSTS), timeout=60)
    time.sleep(1)
    sent = cancel_like_github(proc)
    stdout = proc.stdout.read()
    assert sent == ["SIGINT"], (sent, stdout)        # it ended on its own, before CI had to insist
    assert proc.returncode == 130, stdout
    states = {h["host"]: h["state"] for h in json.loads(out.read_text())["hosts"]}
    assert set(states.values()) == {"untouched"}, states
    for name in HOSTS:
        assert live(hosts, name) == "r1" and not (hosts.deploy_path(name) / "releases" / "r2").exists()
        consistent(hosts, name)
    assert not left_in(ROOT, "sleep 60"), "the cancelled build's commands were stopped on the hosts"


def test_ci_cancel_after_the_switch_records_the_unverified_release_within_the_grace(hosts, tmp_path):
    after = "  - run: {name: slow after, commands: ['sleep 60']}"
    out = tmp_path / "r.json"
    proc = start_fab("deploy", "--host", "lab1", "--inventory", hosts.inventory, "--pipeline",
                     pipe(tmp_path, after=after), "--release", "r2", "--report", str(out))
    assert wait_for(lambda: live(hosts, "lab1") == "r2", timeout=60, interval=0.05)
    time.sleep(1)
    sent = cancel_like_github(proc)
    stdout = proc.stdout.read()
    # The first signal lets a switched host finish; the second (SIGTERM) stops it: never SIGKILL.
    assert sent == ["SIGINT", "SIGTERM"], (sent, stdout)
    assert proc.returncode == 3, stdout
    h = json.loads(out.read_text())["hosts"][0]
    assert h["state"] == "needs human" and h["switched"] is True
    assert "r2 is live (complete) but not verified" in h["message"]
    assert live(hosts, "lab1") == "r2"
    consistent(hosts, "lab1")
    hist = [json.loads(l) for l in (hosts.deploy_path("lab1") / ".deploy" / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["state"] == "needs human" and hist[-1]["release"] == "r2"


def test_terminal_ctrl_c_during_rsync_leaves_the_host_untouched(hosts, tmp_path):
    app = app_copy(tmp_path)
    with open(app / "public" / "big.bin", "wb") as fh:   # enough to keep rsync busy for a while
        fh.write(os.urandom(200 * 1024 * 1024))
    out = tmp_path / "r.json"
    proc = start_fab("deploy", "--host", "lab2", "--inventory", hosts.inventory, "--pipeline",
                     pipe(tmp_path, source=app), "--release", "r2", "--report", str(out), group=True)
    assert wait_for(lambda: (hosts.deploy_path("lab2") / "releases" / "r2").exists(), timeout=60, interval=0.05)
    os.killpg(proc.pid, signal.SIGINT)             # what a terminal's Ctrl-C does: the whole group
    proc.wait(timeout=120)
    stdout = proc.stdout.read()
    assert proc.returncode == 130, stdout
    h = json.loads(out.read_text())["hosts"][0]
    assert h["state"] == "untouched", h["message"]
    sync = next(s for s in h["steps"] if s["name"] == "sync")
    assert sync["status"] == "ok", sync                # rsync was not killed by the terminal's signal
    assert live(hosts, "lab2") == "r1" and not (hosts.deploy_path("lab2") / "releases" / "r2").exists()
    consistent(hosts, "lab2")


def test_ctrl_c_during_a_fleet_rollback_still_rolls_back_every_host(hosts, tmp_path):
    p2 = pipe(tmp_path, "r2.yml")
    r = subprocess.run([FAB, "deploy", "--host", "lab", "--inventory", hosts.inventory, "--pipeline", p2,
                        "--release", "r2"], cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    slow = "  - run: {name: settle, on_rollback: true, commands: ['sleep 3']}"
    proc = start_fab("rollback", "--host", "lab", "--inventory", hosts.inventory, "--pipeline",
                     pipe(tmp_path, after=slow), "--parallel", "1")
    assert wait_for(lambda: any(live(hosts, n) == "r1" for n in HOSTS), timeout=60, interval=0.05)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    stdout = proc.stdout.read()
    assert proc.returncode == 0, stdout             # every host rolled back: the documented success
    assert "the rollback goes on on every host" in stdout
    for name in HOSTS:
        assert live(hosts, name) == "r1"
        consistent(hosts, name)
