"""The core deploy on real sandbox hosts: real sshd, PHP-FPM (OPCache on, validate_timestamps=0),
nginx and the sample Laravel app. Every test deploys with `fab`, as a user would."""

import json
import re
from pathlib import Path

import pytest

from deploy import inventory, operations, pipeline, plan
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import app_copy, needs_root, start

pytestmark = [needs_root, pytest.mark.lab]

PIPELINE = """
source: {source}
keep_releases: {keep}
steps:
  - sync
  - shared
  - ownership
  - composer
  - artisan:
      commands: {artisan}
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 8, interval: 0.25}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from deploy import lab as labmod
    the_lab = start(slot_root("/srv/labcore"), 3, slot_port(2700), slot_port(8700), tmp_path_factory.mktemp("labcore"))
    yield the_lab
    labmod.down(the_lab.root, purge=True)


@pytest.fixture
def host(lab, request):
    name = f"lab{request.param if hasattr(request, 'param') else 1}"
    lab.wipe(name)
    return name


def pipe(tmp_path, source=None, artisan='["config:cache", "route:cache", "view:cache", "event:cache"]', keep=5,
         name="p.yml", remediate=False):
    text = PIPELINE.format(source=source or PROJECT / "sample-app", artisan=artisan, keep=keep)
    if not remediate:
        text = "remediate: false\n" + text
    return str(write(tmp_path / name, text))


def deploy(lab, host, release, pipeline, *extra):
    return fab("deploy", "--host", host, "--inventory", lab.inventory, "--pipeline", pipeline,
               "--release", release, *extra)


def test_deploy_r1_then_r2_serves_each_and_sends_only_the_changed_file(lab, host, tmp_path):
    p = pipe(tmp_path)
    r = deploy(lab, host, "r1", p)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get(host) == (200, "r1")

    changed = app_copy(tmp_path, edit={"resources/views/welcome.blade.php": lambda s: s + "\n<!-- r2 -->\n"})
    report = tmp_path / "r2.json"
    sshd_log = Path(lab.hosts[host].sshd_log)
    logins = sshd_log.read_text().count("Accepted publickey")
    r = deploy(lab, host, "r2", pipe(tmp_path, source=changed, name="p2.yml"), "--report", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get(host) == (200, "r2")
    # ONE SSH connection for the whole deploy: every step, the upload and rsync (tunnelled).
    assert sshd_log.read_text().count("Accepted publickey") == logins + 1
    data = json.loads(report.read_text())
    assert data["hosts"][0]["state"] == "deployed"
    # --link-dest: only the one edited file crossed the wire.
    assert data["hosts"][0]["rsync_files_transferred"] == 1
    # The summary shows each step's time.
    assert "step times" in r.stdout and "artisan" in r.stdout
    root = lab.deploy_path(host)
    assert (root / "current").readlink().as_posix() == "releases/r2"
    assert (root / "releases" / "r1" / "RELEASE").read_text().strip() == "r1"
    history = [json.loads(l) for l in (root / ".deploy" / "history.jsonl").read_text().splitlines()]
    assert [(h["release"], h["state"]) for h in history] == [("r1", "deployed"), ("r2", "deployed")]
    assert not (root / ".deploy" / "lock").exists()


def test_code_is_read_only_for_the_web_user_and_writable_dirs_are_writable(lab, host, tmp_path):
    import subprocess
    assert deploy(lab, host, "r1", pipe(tmp_path)).returncode == 0
    rel = lab.deploy_path(host) / "releases" / "r1"

    def www_can_write(path):
        return subprocess.run(["runuser", "-u", "www-data", "--", "test", "-w", str(path)]).returncode == 0

    assert not www_can_write(rel / "app" / "Http" / "Controllers" / "VersionController.php")
    assert not www_can_write(rel / "routes")
    assert not www_can_write(rel)
    assert www_can_write(rel / "bootstrap" / "cache")
    assert www_can_write(rel / "storage" / "logs")
    assert (rel / "storage").is_symlink()


def test_shared_storage_and_env_survive_deploys_and_rollbacks(lab, host, tmp_path):
    p = pipe(tmp_path)
    assert deploy(lab, host, "r1", p).returncode == 0
    shared = lab.deploy_path(host) / "shared"
    (shared / "storage" / "app" / "keep.txt").write_text("user upload")
    (shared / ".env").write_text("APP_NAME=kept\n")
    assert deploy(lab, host, "r2", p).returncode == 0
    assert lab.get(host) == (200, "r2")
    r = fab("rollback", "--host", host, "--inventory", lab.inventory, "--pipeline", p)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get(host) == (200, "r1")
    assert (shared / "storage" / "app" / "keep.txt").read_text() == "user upload"
    assert (shared / ".env").read_text() == "APP_NAME=kept\n"
    for rel in ("r1", "r2"):
        release = lab.deploy_path(host) / "releases" / rel
        assert (release / ".env").resolve() == shared / ".env"
        assert (release / "storage").resolve() == shared / "storage"


def test_failing_artisan_command_leaves_r1_live_and_removes_the_half_built_release(lab, host, tmp_path):
    assert deploy(lab, host, "r1", pipe(tmp_path)).returncode == 0
    bad = pipe(tmp_path, artisan='["config:cache", "no-such:command"]', name="bad.yml")
    r = deploy(lab, host, "r2", bad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed before switch" in r.stdout
    assert "no-such:command" in r.stdout
    assert lab.get(host) == (200, "r1")
    root = lab.deploy_path(host)
    assert not (root / "releases" / "r2").exists()
    assert (root / "current").readlink().as_posix() == "releases/r1"
    assert not (root / ".deploy" / "lock").exists()
    last = json.loads((root / ".deploy" / "history.jsonl").read_text().splitlines()[-1])
    assert last["release"] == "r2" and last["state"] == "failed before switch"


def test_release_answering_500_is_rolled_back_automatically(lab, host, tmp_path):
    p = pipe(tmp_path)
    assert deploy(lab, host, "r1", p).returncode == 0
    broken = app_copy(tmp_path, edit={"app/Http/Controllers/VersionController.php":
                                      lambda s: s.replace("$file = base_path('RELEASE');",
                                                          "throw new \\RuntimeException('boom');")})
    r = deploy(lab, host, "r3", pipe(tmp_path, source=broken, name="broken.yml"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rolled back" in r.stdout
    assert lab.get(host) == (200, "r1")
    root = lab.deploy_path(host)
    assert (root / ".deploy" / "bad" / "r3").exists()
    assert (root / "releases" / "r3" / "RELEASE").exists()  # kept for inspection, marked bad
    listing = fab("releases", "--host", host, "--inventory", lab.inventory)
    assert listing.returncode == 0
    assert "LIVE" in listing.stdout and "bad" in listing.stdout
    assert not (root / ".deploy" / "lock").exists()


def test_fab_rollback_and_releases(lab, host, tmp_path):
    p = pipe(tmp_path)
    for rel in ("r1", "r2"):
        assert deploy(lab, host, rel, p).returncode == 0
    r = fab("releases", "--host", host, "--inventory", lab.inventory, "--json")
    state = json.loads(r.stdout)[0]
    assert state["current"] == "r2" and [x["id"] for x in state["releases"]] == ["r2", "r1"]

    dry = fab("rollback", "--host", host, "--inventory", lab.inventory, "--pipeline", p, "--dry-run")
    assert dry.returncode == 0 and "releases/r1" in dry.stdout
    assert lab.get(host) == (200, "r2")  # the dry run changed nothing

    r = fab("rollback", "--host", host, "--inventory", lab.inventory, "--pipeline", p)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get(host) == (200, "r1")
    state = json.loads(fab("releases", "--host", host, "--inventory", lab.inventory, "--json").stdout)[0]
    assert state["current"] == "r1" and "r2" in state["bad"]

    # A second rollback has nowhere to go: r2 is bad, nothing older than r1.
    r = fab("rollback", "--host", host, "--inventory", lab.inventory, "--pipeline", p)
    assert r.returncode == 1 and "no earlier good release" in r.stdout
    # --to goes anywhere on purpose, even to a release marked bad.
    r = fab("rollback", "--host", host, "--inventory", lab.inventory, "--pipeline", p, "--to", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get(host) == (200, "r2")


def test_keep_releases_prunes_old_ones_but_never_current_or_last_good(lab, host, tmp_path):
    p = pipe(tmp_path, keep=2)
    for rel in ("r1", "r2", "r3"):
        assert deploy(lab, host, rel, p).returncode == 0
    releases = lab.deploy_path(host) / "releases"
    assert sorted(x.name for x in releases.iterdir()) == ["r2", "r3"]
    # Mark r2 bad: pruning after r4 must keep r3 (newest good besides current), drop r2.
    (lab.deploy_path(host) / ".deploy" / "bad" / "r2").write_text("test\n")
    assert deploy(lab, host, "r4", p).returncode == 0
    assert sorted(x.name for x in releases.iterdir()) == ["r3", "r4"]


def test_commands_a_real_deploy_runs_equal_the_plan(lab, host, tmp_path):
    inv = inventory.load(lab.inventory)
    h = inv.select(host)[0]
    pipe_obj = pipeline.load(pipe(tmp_path))
    operator = plan.Operator.here()
    planned = [c.render() for s in plan.deploy(h, pipe_obj, "r1", operator) for c in s.commands]
    result = operations.deploy_host(h, pipe_obj, "r1", operator, lambda e: None)
    assert result.state == "deployed", result.message
    assert result.executed == planned
    assert lab.get(host) == (200, "r1")


def test_plan_changes_nothing_and_connects_to_nothing(lab, host, tmp_path):
    # Same host, but its sshd port is closed: a plan must still print every command.
    text = open(lab.inventory).read().replace(f"port: {lab.hosts[host].ssh_port}", "port: 9")
    inv = write(tmp_path / "dead.yml", text)
    before = sorted(p.name for p in lab.deploy_path(host).iterdir())
    r = fab("plan", "--host", host, "--inventory", str(inv), "--pipeline", pipe(tmp_path), "--release", "r9")
    assert r.returncode == 0, r.stderr
    for expected in ("## prepare", "## sync", "local$ rsync", "## activate", "releases/r9", "fpmctl.php reset",
                     "## verify", "on failure after activate"):
        assert expected in r.stdout
    assert sorted(p.name for p in lab.deploy_path(host).iterdir()) == before
    # `deploy --dry-run` is the same plan (only the operator's pid, in the lock, differs).
    r2 = fab("deploy", "--dry-run", "--host", host, "--inventory", str(inv), "--pipeline", pipe(tmp_path), "--release", "r9")
    pid = re.compile(r'("pid": |:)\d+')
    assert pid.sub(r"\1PID", r2.stdout) == pid.sub(r"\1PID", r.stdout)


@pytest.mark.parametrize("playbook, words", [
    ("source: {src}\nsteps:\n  - sync\n  - teleport\n  - activate\n", ["bad.yml:4", "unknown step kind 'teleport'"]),
    ("source: {src}\nsteps:\n  - sync\n  - activate\n  - verify: {{timeout: soon}}\n", ["bad.yml:5", "steps[2].verify.timeout"]),
    ("source: {src}\nsteps: [sync, activate\n", ["bad.yml:3", "invalid YAML"]),
    ("source: {src}\nkeep_releases: 3\n", ["bad.yml", "key 'steps': missing required key"]),
])
def test_bad_input_exits_2_with_file_line_key_and_touches_no_host(lab, host, tmp_path, playbook, words):
    bad = write(tmp_path / "bad.yml", playbook.format(src=PROJECT / "sample-app"))
    r = fab("deploy", "--host", host, "--inventory", lab.inventory, "--pipeline", str(bad))
    assert r.returncode == 2, r.stdout + r.stderr
    for w in words:
        assert w in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert list(lab.deploy_path(host).iterdir()) == []


def test_unknown_host_exits_2(lab, host):
    r = fab("deploy", "--host", "nosuchhost", "--inventory", lab.inventory)
    assert r.returncode == 2
    assert "unknown host or group 'nosuchhost'" in r.stderr and "lab1" in r.stderr
