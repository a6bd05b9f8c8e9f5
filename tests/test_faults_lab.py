"""Injected faults on real sandbox hosts (sshd, PHP-FPM, nginx): whatever happens to a session,
no host is left without a complete live release, the release `current` points to is never
removed, and the report tells the truth about what was switched."""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import app_copy, needs_root, start, wait_for

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labfault")

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - composer
  - ownership
  - artisan: {{commands: [config:cache, route:cache]}}
{before}
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 10, interval: 0.25}}
{after}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 3, slot_port(3600), slot_port(9600), tmp_path_factory.mktemp("labfault"))
    yield the_lab
    labmod.down(ROOT, purge=True)


@pytest.fixture
def hosts(lab, tmp_path):
    """Every host freshly deployed with r1."""
    for name in lab.hosts:
        lab.wipe(name)
    r = fab("deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path, "base.yml"),
            "--release", "r1")
    assert r.returncode == 0, r.stdout + r.stderr
    return lab


def pipe(tmp_path, name="p.yml", before="", after="", source=None):
    return str(write(tmp_path / name, PIPELINE.format(source=source or PROJECT / "sample-app", before=before,
                                                      after=after)))


def inventory(lab, tmp_path, extra):
    text = open(lab.inventory).read().replace("  web_user: www-data", "  web_user: www-data\n" + extra)
    return str(write(tmp_path / "inv.yml", text))


def live(lab, name):
    return (lab.deploy_path(name) / "current").readlink().name


def assert_complete(lab, name):
    """A complete live release that answers."""
    current = lab.deploy_path(name) / "current"
    assert current.is_symlink() and (current / "RELEASE").is_file(), name
    assert lab.get(name) == (200, live(lab, name))


def report(path):
    return {h["host"]: h for h in json.loads(Path(path).read_text())["hosts"]}


def when_live(lab, name, release, action, timeout=60):
    """Run action() as soon as `current` on the host points to `release` (in a thread)."""
    def watch():
        if wait_for(lambda: (lab.deploy_path(name) / "current").is_symlink() and live(lab, name) == release,
                    timeout=timeout, interval=0.02):
            action()
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_session_outliving_command_timeout_after_the_switch_never_deletes_the_live_release(hosts, tmp_path):
    # A slow step after activate runs past the command timeout: the output of the session so
    # far shows the switch, the host is asked before anything is removed, and it rolls back.
    inv = inventory(hosts, tmp_path, "  command_timeout: 8")
    slow = "  - run: {name: slow, commands: ['sleep 15']}"
    out = tmp_path / "r.json"
    t0 = time.monotonic()
    r = fab("deploy", "--host", "lab1", "--inventory", inv, "--pipeline", pipe(tmp_path, after=slow),
            "--release", "r2", "--report", str(out))
    assert time.monotonic() - t0 < 60
    assert r.returncode == 1, r.stdout + r.stderr
    h = report(out)["lab1"]
    assert h["switched"] is True
    assert h["state"] == "rolled back", h["message"]
    assert "timed out after 8s" in h["message"]
    assert live(hosts, "lab1") == "r1"
    assert (hosts.deploy_path("lab1") / "releases" / "r2").is_dir()   # kept, marked bad
    assert (hosts.deploy_path("lab1") / ".deploy" / "bad" / "r2").is_file()
    assert_complete(hosts, "lab1")
    # The timed-out command was stopped on the host, not left running.
    ps = subprocess.run(["pgrep", "-f", "sleep 15"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_discard_never_removes_the_release_current_points_to(hosts, tmp_path):
    # Even when the tool wrongly believes a release was never switched, the host refuses.
    from deploy import inventory as inv_mod, pipeline, plan
    from deploy.executor import Runner
    from deploy.operations import connect
    h = inv_mod.load(hosts.inventory).select("lab2")[0]
    p = pipeline.load(pipe(tmp_path))
    op = plan.Operator.here()
    runner = Runner(connect(h), h, lambda e: None)
    try:
        res = runner.run(plan.discard(h, p, "r1", op, "test"))
    finally:
        runner.transport.close()
    assert res[0].status == "failed"
    assert res[0].failed_command.exit_code == plan.IS_LIVE_EXIT
    assert "is live: not removed" in res[0].failed_command.output
    assert (hosts.deploy_path("lab2") / "releases" / "r1" / "RELEASE").is_file()
    assert_complete(hosts, "lab2")


def test_same_size_edit_with_the_old_mtime_ships_the_new_content(hosts, tmp_path):
    # rsync's quick check (size + mtime) would hard-link the live file: the old code would ship.
    controller = "app/Http/Controllers/VersionController.php"
    src = app_copy(tmp_path)
    f = src / controller
    text = f.read_text()
    assert "'version'" in text or "version" in text
    marker = "/* v1 */"
    f.write_text(text + marker + "\n")
    r = fab("deploy", "--host", "lab1", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, "a.yml", source=src),
            "--release", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    stat = f.stat()
    f.write_text(text + "/* v2 */\n")     # same size
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # touch -r: the old mtime
    assert f.stat().st_size == stat.st_size and f.stat().st_mtime_ns == stat.st_mtime_ns
    r = fab("deploy", "--host", "lab1", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, "b.yml", source=src),
            "--release", "r3")
    assert r.returncode == 0, r.stdout + r.stderr
    releases = hosts.deploy_path("lab1") / "releases"
    assert (releases / "r3" / controller).read_text().endswith("/* v2 */\n")
    assert (releases / "r2" / controller).read_text().endswith("/* v1 */\n")
    assert (releases / "r3" / controller).stat().st_ino != (releases / "r2" / controller).stat().st_ino


def test_connection_lost_after_the_switch_is_needs_human_with_the_truth(hosts, tmp_path):
    # Three hosts, max_fail 0; lab2 loses its connection (sshd and its sessions killed) right
    # after current moved to r2. The others are rolled back; lab2 is reported as switched and
    # unverified, exit 3 -- not "failed before switch".
    slow = "  - run: {name: settle, commands: ['if [ \"$DEPLOY_HOST\" = lab2 ]; then sleep 4; fi']}"
    out = tmp_path / "r.json"
    watcher = when_live(hosts, "lab2", "r2", lambda: labmod.stop_sshd("lab2", root=ROOT))
    try:
        r = fab("deploy", "--host", "lab", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, after=slow),
                "--release", "r2", "--parallel", "3", "--report", str(out))
    finally:
        watcher.join(timeout=1)
        labmod.start_sshd("lab2", root=ROOT)
    assert r.returncode == 3, r.stdout + r.stderr
    hs = report(out)
    assert hs["lab2"]["state"] == "needs human", hs["lab2"]["message"]
    assert hs["lab2"]["switched"] is True
    assert "after the switch" in hs["lab2"]["message"] and "NOT verified" in hs["lab2"]["message"]
    assert {hs["lab1"]["state"], hs["lab3"]["state"]} == {"rolled back"}
    assert live(hosts, "lab1") == "r1" and live(hosts, "lab3") == "r1"
    assert live(hosts, "lab2") == "r2"   # the truth the report tells
    for name in hosts.hosts:
        assert_complete(hosts, name)
    # Its lock stayed (the connection was gone); unlock shows who held it.
    u = fab("unlock", "--host", "lab2", "--inventory", hosts.inventory)
    assert u.returncode == 0 and "lock removed" in u.stdout


def test_connection_lost_after_the_switch_and_back_is_rolled_back(hosts, tmp_path):
    # The connection drops after the switch but the host comes back at once: the tool
    # reconnects, reads current from the host, and rolls back to the verified release.
    slow = "  - run: {name: settle, commands: ['sleep 4']}"
    out = tmp_path / "r.json"

    def blip():
        labmod.stop_sshd("lab3", root=ROOT)
        labmod.start_sshd("lab3", root=ROOT)
    watcher = when_live(hosts, "lab3", "r2", blip)
    r = fab("deploy", "--host", "lab3", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, after=slow),
            "--release", "r2", "--report", str(out))
    watcher.join(timeout=1)
    assert r.returncode == 1, r.stdout + r.stderr
    h = report(out)["lab3"]
    assert h["state"] == "rolled back", h["message"]
    assert h["switched"] is True and "reconnected" in h["message"]
    assert live(hosts, "lab3") == "r1"
    assert_complete(hosts, "lab3")
    assert not (hosts.deploy_path("lab3") / ".deploy" / "lock").exists()


def test_connection_lost_before_the_switch_is_unreachable_and_nothing_live_changed(hosts, tmp_path):
    slow = "  - run: {name: slow build, commands: ['sleep 6']}"
    out = tmp_path / "r.json"
    killer = threading.Timer(3.0, lambda: labmod.stop_sshd("lab1", root=ROOT))
    killer.start()
    try:
        r = fab("deploy", "--host", "lab1", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, before=slow),
                "--release", "r2", "--report", str(out))
    finally:
        killer.cancel()
        labmod.start_sshd("lab1", root=ROOT)
    assert r.returncode == 1, r.stdout + r.stderr
    h = report(out)["lab1"]
    assert h["state"] == "unreachable" and h["switched"] is False
    assert "before the switch" in h["message"]
    assert live(hosts, "lab1") == "r1"
    assert_complete(hosts, "lab1")


def test_rollback_losing_its_connection_after_the_switch_is_needs_human(hosts, tmp_path):
    r = fab("deploy", "--host", "lab2", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, "r2.yml"),
            "--release", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    slow = "  - run: {name: settle, on_rollback: true, commands: ['sleep 4']}"
    out = tmp_path / "rb.json"
    watcher = when_live(hosts, "lab2", "r1", lambda: labmod.stop_sshd("lab2", root=ROOT))
    try:
        r = fab("rollback", "--host", "lab2", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, after=slow),
                "--report", str(out))
    finally:
        watcher.join(timeout=1)
        labmod.start_sshd("lab2", root=ROOT)
    assert r.returncode == 3, r.stdout + r.stderr
    h = report(out)["lab2"]
    assert h["state"] == "needs human" and h["switched"] is True, h
    assert "r1 is live but NOT verified" in h["message"]
    assert live(hosts, "lab2") == "r1"
    assert_complete(hosts, "lab2")
    fab("unlock", "--host", "lab2", "--inventory", hosts.inventory)


def test_rollback_never_switches_to_a_gutted_release(hosts, tmp_path):
    r = fab("deploy", "--host", "lab1", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, "r2.yml"),
            "--release", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    gutted = hosts.deploy_path("lab1") / "releases" / "r1"
    import shutil
    shutil.rmtree(gutted / "app")        # the code deleted by hand, RELEASE kept
    assert (gutted / "RELEASE").is_file()
    for extra in ([], ["--to", "r1"]):
        out = tmp_path / "rb.json"
        r = fab("rollback", "--host", "lab1", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path),
                "--report", str(out), *extra)
        assert r.returncode == 1, r.stdout + r.stderr
        h = report(out)["lab1"]
        assert h["state"] == "failed" and h["switched"] is False
        assert "changed on disk since it was verified" in h["message"]
        assert live(hosts, "lab1") == "r2"
        assert not (hosts.deploy_path("lab1") / ".deploy" / "bad" / "r2").exists()
        assert_complete(hosts, "lab1")
        assert not (hosts.deploy_path("lab1") / ".deploy" / "lock").exists()


def test_rollback_target_failing_verification_goes_back_to_the_live_release(hosts, tmp_path):
    r = fab("deploy", "--host", "lab3", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path, "r2.yml"),
            "--release", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    # A same-size edit, so the manifest still matches: only verify can tell that r1 is broken now.
    controller = hosts.deploy_path("lab3") / "releases" / "r1" / "app" / "Http" / "Controllers" / "VersionController.php"
    text = controller.read_text()
    assert "trim($release)" in text
    controller.unlink()   # a new inode: the release's files are hard links shared with r2
    controller.write_text(text.replace("trim($release)", "trim('xxxxxx')"))
    out = tmp_path / "rb.json"
    r = fab("rollback", "--host", "lab3", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path),
            "--report", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    h = report(out)["lab3"]
    assert h["state"] == "failed", h["message"]
    assert "back on r2 (verified)" in h["message"] and "r1 marked bad" in h["message"]
    assert live(hosts, "lab3") == "r2"
    bad = hosts.deploy_path("lab3") / ".deploy" / "bad"
    assert (bad / "r1").exists() and not (bad / "r2").exists()
    assert_complete(hosts, "lab3")


def test_a_host_without_sftp_is_deployed_over_the_ssh_session_itself(hosts, tmp_path):
    import paramiko
    labmod.sshd_sftp("lab2", False, root=ROOT)
    try:
        # SFTP really is off on that host.
        from deploy import inventory as inv_mod
        from deploy.operations import connect
        t = connect(inv_mod.load(hosts.inventory).select("lab2")[0])
        try:
            with pytest.raises((paramiko.SSHException, EOFError)):
                t.conn.client.open_sftp()
        finally:
            t.close()
        import shutil
        shutil.rmtree(hosts.deploy_path("lab2") / ".deploy" / "bin")   # the PHP program must be installed again
        out = tmp_path / "r.json"
        r = fab("deploy", "--host", "lab2", "--inventory", hosts.inventory, "--pipeline", pipe(tmp_path),
                "--release", "r2", "--report", str(out))
        assert r.returncode == 0, r.stdout + r.stderr
        h = report(out)["lab2"]
        assert h["state"] == "deployed" and any(i.startswith("deploy/remote/fpmctl.php@") for i in h["installed"])
        assert live(hosts, "lab2") == "r2"
        assert_complete(hosts, "lab2")
    finally:
        labmod.sshd_sftp("lab2", True, root=ROOT)


def listing(path):
    return sorted((str(p.relative_to(path)), p.lstat().st_mtime_ns) for p in path.rglob("*"))


def test_current_as_a_real_directory_is_refused_and_nothing_is_touched(lab, tmp_path):
    lab.wipe("lab3")
    root = lab.deploy_path("lab3")
    (root / "current" / "public").mkdir(parents=True)          # a server laid out by hand
    (root / "current" / "public" / "index.php").write_text("<?php echo 'hand made';\n")
    before = listing(root)
    for command in (["deploy", "--release", "r2"], ["rollback"]):
        out = tmp_path / "r.json"
        r = fab(command[0], "--host", "lab3", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path),
                *command[1:], "--report", str(out))
        assert r.returncode == 1, r.stdout + r.stderr
        h = report(out)["lab3"]
        assert h["state"] == "failed", h["message"]
        assert "is a real directory, not a link to a release" in h["message"]
        assert listing(root) == before                          # not even .deploy/ was created
    r = fab("deploy", "--host", "lab3", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path), "--release", "r3")
    assert "is a real directory, not a link to a release" in r.stdout and "docs/remediation.md" in r.stdout


def test_a_host_that_freezes_mid_deploy_fails_fast_and_the_others_finish(hosts, tmp_path):
    inv = inventory(hosts, tmp_path, "  connect_timeout: 3")
    slow = "  - run: {name: slow build, commands: ['if [ \"$DEPLOY_HOST\" = lab2 ]; then sleep 30; fi']}"
    out = tmp_path / "r.json"
    watcher = threading.Timer(4.0, lambda: labmod.freeze_sshd("lab2", root=ROOT))
    watcher.start()
    t0 = time.monotonic()
    try:
        r = fab("deploy", "--host", "lab", "--inventory", inv, "--pipeline", pipe(tmp_path, before=slow),
                "--release", "r2", "--max-fail", "1", "--report", str(out))
        elapsed = time.monotonic() - t0
    finally:
        watcher.cancel()
        labmod.thaw_sshd("lab2", root=ROOT)
    assert r.returncode == 1, r.stdout + r.stderr
    hs = report(out)
    assert hs["lab2"]["state"] == "unreachable" and "stopped answering" in hs["lab2"]["message"], hs["lab2"]
    assert hs["lab1"]["state"] == hs["lab3"]["state"] == "deployed"
    # Bounded by the stall detection (a ping every 5 s, 15 s to answer) plus a reconnect
    # attempt, not by the 600 s command timeout.
    assert elapsed < 90, elapsed
    assert live(hosts, "lab2") == "r1"
