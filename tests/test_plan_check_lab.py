"""`fab plan --check` and saved plans on real sandbox hosts (sshd, PHP-FPM, nginx): the check
writes nothing, sees changed files, locks, missing sudo, unreachable hosts; a saved plan runs
exactly as saved and its hash is in the report; a plan whose inputs changed is refused with
nothing touched; a git commit as the source."""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, SLOT, fab, slot_port, slot_root, write
from labfixture import app_copy, needs_root, start

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labplan")
USER = f"planuser{SLOT}"
SUDOERS = Path(f"/etc/sudoers.d/deploy-plan-test-s{SLOT}")

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - ownership
  - composer
  - artisan: {{commands: [config:cache, route:cache]}}
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 8, interval: 0.25}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 3, slot_port(3400), slot_port(9400), tmp_path_factory.mktemp("labplan"))
    yield the_lab
    labmod.down(the_lab.root, purge=True)


@pytest.fixture
def fresh(lab):
    for name in ("lab1", "lab2"):
        lab.wipe(name)
    return lab


def pipe(tmp_path, source=None, name="p.yml"):
    return str(write(tmp_path / name, PIPELINE.format(source=source or PROJECT / "sample-app")))


def listing(path):
    """Every entry under path with its type, size, mode and modification time (ns)."""
    out = []
    for root, dirs, files in os.walk(path):
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, path), st.st_mode, st.st_size, st.st_mtime_ns))
    return sorted(out)


def logins(lab, host):
    return Path(lab.hosts[host].sshd_log).read_text().count("Accepted publickey")


def deploy(lab, host, release, pipeline, *extra):
    r = fab("deploy", "--host", host, "--inventory", lab.inventory, "--pipeline", pipeline, "--release", release, *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def check(inventory, host, pipeline, release, *extra):
    return fab("plan", "--check", "--host", host, "--inventory", inventory, "--pipeline", pipeline,
               "--release", release, *extra)


def test_check_shows_what_would_change_and_writes_nothing(fresh, tmp_path):
    lab = fresh
    p = pipe(tmp_path)
    deploy(lab, "lab1", "r1", p)
    changed = app_copy(tmp_path, edit={"routes/web.php": lambda s: s + "\n// r2\n", "NEW.txt": "new\n"})
    (changed / "artisan").unlink()
    p2 = pipe(tmp_path, changed, "p2.yml")
    before = listing(lab.deploy_path("lab1"))
    r = check(lab.inventory, "lab1", p2, "r2", "--files")
    assert r.returncode == 0, r.stdout + r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("│ lab1 "))
    assert "r1, since 20" in row and "3 to change: +1 ~1 -1" in row and "changes" in row
    files = r.stdout.split("# files on lab1 vs r1: 3 to change: +1 ~1 -1\n", 1)[1].splitlines()[:3]
    assert files == ["   + NEW.txt", "   - artisan", "   ~ routes/web.php"]
    assert r.stdout.rstrip().endswith("check: changes: every host can be deployed (exit 0)")
    # Nothing written on the host: every entry, its size, mode and mtime as before.
    assert listing(lab.deploy_path("lab1")) == before
    # The same as data.
    r = check(lab.inventory, "lab1", p2, "r2", "--json")
    assert r.returncode == 0, r.stderr
    host = json.loads(r.stdout)["check"]["hosts"][0]
    assert host["live"]["release"] == "r1" and host["live"]["by"]
    assert (host["files"]["added"], host["files"]["modified"], host["files"]["deleted"]) == (1, 1, 1)
    assert host["pool"]["ok"] and host["lock"] is None and host["verdict"] == "changes"
    assert listing(lab.deploy_path("lab1")) == before
    # The live release itself again: nothing to deploy.
    r = check(lab.inventory, "lab1", p, "r1")
    assert r.returncode == 4, r.stdout + r.stderr
    assert "0 to change: +0 ~0 -0" in r.stdout and "check: no changes:" in r.stdout


def test_check_on_a_first_deploy_and_a_locked_host(fresh, tmp_path):
    lab = fresh
    p = pipe(tmp_path)
    deploy(lab, "lab2", "r1", p)
    lock = lab.deploy_path("lab2") / ".deploy" / "lock"
    lock.mkdir()
    (lock / "info").write_text('{"user": "alice", "machine": "laptop", "pid": 4242, "release": "r0", '
                               '"action": "deploy", "token": "alice@laptop:4242"}\n2026-11-29T19:00:00Z\n')
    before = {h: listing(lab.deploy_path(h)) for h in ("lab1", "lab2")}
    r = check(lab.inventory, "lab1,lab2", p, "r2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lab2: cannot deploy: locked: alice@laptop pid 4242 deploy r0 since 2026-11-29T19:00:00Z" in r.stdout
    row1 = next(line for line in r.stdout.splitlines() if line.startswith("│ lab1 "))
    assert "nothing live" in row1 and "first deploy: " in row1 and "changes" in row1
    assert "lab1: note: nothing is live yet" in r.stdout
    assert r.stdout.rstrip().endswith("(exit 1)")
    assert {h: listing(lab.deploy_path(h)) for h in ("lab1", "lab2")} == before
    shutil.rmtree(lock)


def test_check_of_an_unreachable_host_cannot_deploy(lab, tmp_path):
    text = Path(lab.inventory).read_text().replace(f"port: {lab.hosts['lab3'].ssh_port}", "port: 9")
    dead = write(tmp_path / "dead.yml", text)
    r = check(str(dead), "lab3", pipe(tmp_path), "r1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "lab3: cannot deploy: cannot connect:" in r.stdout and "unreachable" in r.stdout


@pytest.fixture
def user_lab(fresh, tmp_path):
    """lab1 as a login user without root: the deploy path is theirs, sudo is theirs only when
    a test writes a sudoers rule."""
    lab = fresh
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    subprocess.run(["usermod", "-p", "*", "-a", "-G", "www-data", USER], check=True)
    Path(ROOT, "ssh").chmod(0o711)
    Path(ROOT, "ssh", "authorized_keys").chmod(0o644)
    info = lab.hosts["lab1"]
    subprocess.run(["chown", f"{USER}:{USER}", info.deploy_path], check=True)
    text = Path(lab.inventory).read_text().replace("  user: root", f"  user: {USER}")
    text = text.replace(f'reload: kill -USR2 "$(cat {info.fpm_pid_file})"',
                        f'reload: sudo -n kill -USR2 "$(cat {info.fpm_pid_file})"')
    assert f"user: {USER}" in text and "sudo -n kill" in text
    yield str(write(tmp_path / "user.yml", text))
    SUDOERS.unlink(missing_ok=True)
    subprocess.run(["chown", "root:root", info.deploy_path], check=True)
    subprocess.run(["userdel", "--remove", USER], capture_output=True)


def test_check_says_cannot_deploy_without_sudo_and_ok_with_it(user_lab, lab, tmp_path):
    p = pipe(tmp_path)
    before = listing(lab.deploy_path("lab1"))
    r = check(user_lab, "lab1", p, "u1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"lab1: cannot deploy: sudo -n refuses setfacl -L -R -m u:www-data:rwX,d:u:www-data:rwX,u:{USER}:rwX" in r.stdout
    assert "lab1: cannot deploy: sudo -n refuses kill" in r.stdout
    assert listing(lab.deploy_path("lab1")) == before
    # The rules a deploy user needs (docs/inventory.md): the same check passes.
    SUDOERS.write_text(f"{USER} ALL=(root) NOPASSWD: /usr/bin/setfacl, /bin/kill, /usr/bin/kill\n")
    SUDOERS.chmod(0o440)
    r = check(user_lab, "lab1", p, "u1", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    host = json.loads(r.stdout)["check"]["hosts"][0]
    assert host["sudo"]["refused"] == [] and len(host["sudo"]["checked"]) >= 2 and host["pool"]["ok"]
    assert listing(lab.deploy_path("lab1")) == before


def test_a_saved_plan_runs_exactly_and_its_hash_is_in_the_report(fresh, tmp_path):
    lab = fresh
    saved, report = tmp_path / "plan.json", tmp_path / "deploy.json"
    r = fab("plan", "--host", "lab1,lab2", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path),
            "--release", "s1", "--serial", "1,100%", "--out", str(saved))
    assert r.returncode == 0, r.stdout + r.stderr
    digest = hashlib.sha256(saved.read_bytes()).hexdigest()
    assert f"saved plan {saved} (sha256 {digest})" in r.stdout
    assert "1 (canary): lab1" in r.stdout
    doc = json.loads(saved.read_text())
    r = fab("deploy", "--plan", str(saved), "--report", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get("lab1") == (200, "s1") and lab.get("lab2") == (200, "s1")
    data = json.loads(report.read_text())
    assert data["plan_sha256"] == digest and data["run"] == doc["run"]
    assert [b["hosts"] for b in data["batches"]] == [["lab1"], ["lab2"]]
    for host in data["hosts"]:
        ran = [c["command"] for s in host["steps"] for c in s["commands"]]
        planned = next([c["command"] for s in h["steps"] for c in s["commands"]] for h in doc["hosts"]
                       if h["host"] == host["host"])
        assert host["as_planned"] is True and ran == planned, host["host"]
    history = (lab.deploy_path("lab1") / ".deploy" / "history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["by"] == doc["run"]


@pytest.mark.parametrize("change", ["pipeline", "inventory", "source"])
def test_a_saved_plan_whose_input_changed_is_refused_and_touches_nothing(fresh, tmp_path, change):
    lab = fresh
    app = app_copy(tmp_path)
    inv = write(tmp_path / "inv.yml", Path(lab.inventory).read_text())
    p = Path(pipe(tmp_path, app))
    saved = tmp_path / "plan.json"
    r = fab("plan", "--host", "lab1,lab2", "--inventory", str(inv), "--pipeline", str(p), "--release", "c1",
            "--out", str(saved))
    assert r.returncode == 0, r.stdout + r.stderr
    if change == "pipeline":
        p.write_text(p.read_text().replace("route:cache", "view:cache"))
        expected = f"playbook {p} changed"
    elif change == "inventory":
        inv.write_text(inv.read_text() + "# reviewed\n")
        expected = f"inventory {inv} changed"
    else:
        (app / "routes" / "web.php").write_text((app / "routes" / "web.php").read_text() + "\n// later\n")
        expected = f"source {app} changed"
    before = {h: (listing(lab.deploy_path(h)), logins(lab, h)) for h in ("lab1", "lab2")}
    r = fab("deploy", "--plan", str(saved))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "the saved plan does not match what it was made from any more" in r.stderr and expected in r.stderr
    assert "Traceback" not in r.stderr
    assert {h: (listing(lab.deploy_path(h)), logins(lab, h)) for h in ("lab1", "lab2")} == before


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_a_git_commit_as_the_source_deploys_with_its_short_sha(fresh, tmp_path):
    lab = fresh
    repo = tmp_path / "repo"
    shutil.copytree(PROJECT / "sample-app", repo, symlinks=True, ignore=shutil.ignore_patterns("vendor"))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    sha = git(repo, "rev-parse", "HEAD")
    (repo / "NOT-COMMITTED.txt").write_text("left out\n")
    p = write(tmp_path / "g.yml", PIPELINE.format(source=f"{{git: main, repo: {repo}}}"))
    saved = tmp_path / "plan.json"
    r = fab("plan", "--host", "lab1", "--inventory", lab.inventory, "--pipeline", str(p), "--out", str(saved))
    assert r.returncode == 2 and "uncommitted changes" in r.stderr and "NOT-COMMITTED.txt" in r.stderr
    r = fab("plan", "--host", "lab1", "--inventory", lab.inventory, "--pipeline", str(p), "--out", str(saved),
            "--allow-dirty", "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"deploy plan: release {sha[:12]} to 1 host(s)" in r.stdout and f"commit {sha}" in r.stdout
    r = fab("deploy", "--plan", str(saved))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get("lab1") == (200, sha[:12])
    live = lab.deploy_path("lab1") / "current"
    assert (live / "routes" / "web.php").exists() and not (live / "NOT-COMMITTED.txt").exists()
