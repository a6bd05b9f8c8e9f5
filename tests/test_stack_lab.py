"""The lab with its app stack (deploy/lab/services.py): one real MariaDB and one real Redis for the
lab, a real supervisord per host running the queue workers and the scheduler; the sample app
deployed with a composer step and `php artisan migrate --force`. Everything through `fab`, the
hosts' own supervisorctl and HTTP, as a user would."""

import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import Lab, app_copy, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.lab]

ROOT = slot_root("/srv/labstack")
SSH_BASE, HTTP_BASE = slot_port(3100), slot_port(9100)
DB_PORT, REDIS_PORT = slot_port(3350), slot_port(3360)
WORKERS = PROJECT / "deploy" / "remote" / "workers.sh"
TIMINGS = {}

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - ownership
  - composer{composer}
  - artisan: {{commands: [config:cache, route:cache, view:cache, event:cache]}}
  - run: {{name: migrate, commands: ["php artisan migrate --force"]}}
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 10, interval: 0.25}}
"""


def pipe(tmp_path, source=None, composer="", name="p.yml"):
    return str(write(tmp_path / name, PIPELINE.format(source=source or PROJECT / "sample-app", composer=composer)))


def up(inventory, count=2):
    return labmod.up(count, root=ROOT, inventory=str(inventory), ssh_base=SSH_BASE, http_base=HTTP_BASE, stack=True,
                     db_port=DB_PORT, redis_port=REDIS_PORT)


def deploy(the_lab, host, release, pipeline, *extra, env=None):
    return fab("deploy", "--host", host, "--inventory", the_lab.inventory, "--pipeline", pipeline,
               "--release", release, "--parallel", "1", *extra, env=env)


def stack(name):
    return labmod.host_info(name, root=ROOT).stack


def supervisorctl(name, *args):
    """The host's own supervisorctl command (host_info), as an operator would type it."""
    argv = shlex.split(stack(name).supervisor.ctl) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def restart_workers(name):
    r = subprocess.run(shlex.split(stack(name).supervisor.restart), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def worker_pids(name):
    """{'app:queue_00': pid, ...} of the RUNNING programs."""
    out = {}
    for line in supervisorctl(name, "status").stdout.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == "RUNNING":
            out[words[0]] = int(words[3].rstrip(","))
    return out


def sql(query):
    db = stack("lab1").db
    r = subprocess.run(["mariadb", "--no-defaults", f"--socket={db.socket}", "-u", "root", "-N", "-B",
                        db.database, "-e", query], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def switched_at(the_lab, name):
    # activate makes a fresh symlink and renames it over `current`: its own mtime is the switch
    return os.lstat(the_lab.deploy_path(name) / "current").st_mtime


def workers_check(name, live, switched, *extra):
    """deploy/remote/workers.sh run ON the host, over the lab's SSH (as root: it reads /proc/PID/cwd)."""
    h = labmod.host_info(name, root=ROOT)
    argv = labmod.ssh_command(name, root=ROOT) + ["sh", "-s", "--", *extra, h.deploy_path, live, repr(switched)]
    return subprocess.run(argv, input=WORKERS.read_text(), capture_output=True, text=True, timeout=120)


def http(the_lab, name, path, method="GET"):
    req = urllib.request.Request(the_lab.url(name, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def tree_hashes(root):
    """sha256 of every regular file under root (symlinks not followed: shared/ is not the release's)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            p = Path(dirpath) / f
            if not p.is_symlink():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def alive(pid):
    """Exists and is not a zombie (PID 1 here may not reap the daemons it inherits)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def processes_mentioning(text):
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and alive(p.name) and text in (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def composer_output(report, name="composer"):
    data = json.loads(Path(report).read_text())
    step = next(s for s in data["hosts"][0]["steps"] if s["name"] == name)
    return step, [c["output"] for c in step["commands"]]


# ------------------------------------------------------------------------------------------- lifecycle


def test_the_stack_starts_and_stops_cleanly(tmp_path):
    root = slot_root("/srv/labstack0")
    labmod.down(root, purge=True)  # leftovers of an interrupted run
    kw = dict(root=root, inventory=str(tmp_path / "lab.yml"), ssh_base=slot_port(3200), http_base=slot_port(9200),
              stack=True, db_port=slot_port(3370), redis_port=slot_port(3380))
    try:
        hosts = labmod.up(1, **kw)
        s = hosts[0].stack
        db, redis, sup = s.db, s.redis, s.supervisor
        assert db.port == slot_port(3370) and redis.port == slot_port(3380)
        for pid, marker in ((db.pid, db.conf), (redis.pid, redis.conf), (sup.pid, sup.conf)):
            assert pid and marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert Path(db.socket).is_socket() and Path(db.conf).parent == Path(root) / "db"
        # the app's login works over TCP on loopback, with the password the lab recorded
        r = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(db.port), "-u", db.username,
                            f"-p{db.password}", db.database, "-N", "-e", "SELECT CURRENT_USER()"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout.strip() == f"{db.username}@127.0.0.1", r.stderr
        # root gets in through the socket only (as the OS root), not over TCP without a password
        r = subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(db.port), "-u", "root",
                            "-e", "SELECT 1"], capture_output=True, text=True, timeout=30)
        assert r.returncode != 0
        r = subprocess.run(["redis-cli", "-p", str(redis.port), "PING"], capture_output=True, text=True, timeout=10)
        assert r.stdout.strip() == "PONG"
        r = subprocess.run(["redis-cli", "-p", str(redis.port), "CONFIG", "GET", "save"], capture_output=True,
                           text=True, timeout=10)
        assert r.stdout.split() == ["save"]            # no persistence
        # nothing deployed yet: the programs cannot chdir to current and end FATAL (documented)
        assert sup.restart == f"/usr/bin/supervisorctl -c {sup.conf} restart app:*"
        assert wait_for(lambda: all(
            line.split()[1] == "FATAL"
            for line in subprocess.run(shlex.split(sup.status), capture_output=True, text=True).stdout.splitlines()),
            timeout=30)
        status = subprocess.run(shlex.split(sup.status), capture_output=True, text=True).stdout
        assert sorted(l.split()[0] for l in status.splitlines()) == ["app:queue_00", "app:queue_01", "app:scheduler"]
        # the host's first .env: 0640, root:www-data, its own cache prefix
        env = Path(s.env_file)
        st = env.stat()
        assert oct(st.st_mode & 0o777) == "0o640" and st.st_uid == 0 and st.st_gid == 33
        text = env.read_text()
        for line in ("QUEUE_CONNECTION=redis", "CACHE_DRIVER=redis", "CACHE_PREFIX=lab1", "DB_CONNECTION=mysql",
                     f"DB_PORT={db.port}", f"REDIS_PORT={redis.port}", f"DB_PASSWORD={db.password}"):
            assert line + "\n" in text
        assert "APP_KEY=base64:" in text
        # up again: idempotent, nothing restarted, the .env kept
        again = labmod.up(1, **kw)[0].stack
        assert (again.db.pid, again.redis.pid, again.supervisor.pid) == (db.pid, redis.pid,
                                                                                         sup.pid)
        assert env.read_text() == text
        # other ports while running: refused
        with pytest.raises(labmod.LabError, match="run down"):
            labmod.up(1, **dict(kw, db_port=slot_port(3371)))
        pids = [db.pid, redis.pid, sup.pid]
    finally:
        stopped = labmod.down(root, purge=True)
    assert {"lab1:supervisord", "redis", "mariadb"} <= set(stopped)
    assert not any(alive(p) for p in pids)
    assert processes_mentioning(root + "/") == [] and not Path(root).exists()


# ---------------------------------------------------------------------------------- deploy + workers


@pytest.fixture(scope="module")
def the_lab(tmp_path_factory):
    labmod.down(ROOT, purge=True)
    tmp = tmp_path_factory.mktemp("labstack")
    hosts = up(tmp / "lab.yml")
    yield Lab(ROOT, tmp / "lab.yml", hosts)
    labmod.down(ROOT, purge=True)


@pytest.fixture(scope="module")
def deployed(the_lab, tmp_path_factory):
    """r1 then r2 deployed to both hosts; workers.sh before and after the hosts restart their workers."""
    tmp = tmp_path_factory.mktemp("deployed")
    p = pipe(tmp)
    out = {"pipeline": p}
    out["r1_report"] = tmp / "r1.json"
    r = deploy(the_lab, "lab", "r1", p, "--report", str(out["r1_report"]))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("lab1", "lab2"):
        restart_workers(name)
    r = deploy(the_lab, "lab", "r2", p)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("lab1", "lab2"):
        live = str(the_lab.deploy_path(name) / "current")
        switched = switched_at(the_lab, name)
        out[f"{name}:before"] = workers_check(name, live, switched, "--expect", "3")
        restart_workers(name)
        out[f"{name}:switched"] = switched
        out[f"{name}:after"] = workers_check(name, live, switched, "--expect", "3", "--wait", "30")
    out["restarted_at"] = time.time()
    return out


def test_deploy_with_composer_and_migrate(the_lab, deployed):
    step, outputs = composer_output(deployed["r1_report"])
    assert step["status"] == "ok"
    assert "composer installs vendor/ from scratch" in outputs[1]
    assert "Installing lab/release-stamp (1.0.0)" in outputs[2]
    for name in ("lab1", "lab2"):
        assert the_lab.get(name) == (200, "r2")
        rel = the_lab.deploy_path(name) / "releases" / "r2"
        assert (rel / "vendor" / "autoload.php").is_file()
        assert (rel / "vendor" / "lab" / "release-stamp").resolve() == rel / "packages" / "release-stamp"
    # the migration ran against the lab's one database
    assert sql("SELECT migration FROM migrations") == [["2024_01_01_000000_create_release_runs_table"]]
    assert [c[0] for c in sql("SHOW COLUMNS FROM release_runs")] == [
        "id", "kind", "release", "base_path", "host", "pid", "token", "created_at"]


def test_workers_left_on_the_old_release_are_caught_then_proven_after_the_restart(the_lab, deployed):
    for name in ("lab1", "lab2"):
        before = deployed[f"{name}:before"]
        assert before.returncode == 1, before.stdout + before.stderr
        stale = [l for l in before.stdout.splitlines() if l.startswith("stale\t")]
        assert len(stale) == 3                       # 2 queue workers + the scheduler, all still on r1
        assert all(f"release={the_lab.deploy_path(name)}/releases/r1\t" in l for l in stale)
        after = deployed[f"{name}:after"]
        assert after.returncode == 0, after.stdout + after.stderr
        ok = [l for l in after.stdout.splitlines() if l.startswith("ok\t")]
        assert len(ok) == 3 and all(f"cwd={the_lab.deploy_path(name)}/releases/r2\t" in l for l in ok)
        assert sum("queue:work redis" in l for l in ok) == 2 and sum("schedule:work" in l for l in ok) == 1
        assert after.stdout.splitlines()[-1].startswith("proven: 3 process(es)")
        # supervisor runs them as the web user
        pids = worker_pids(name)
        assert len(pids) == 3
        assert {Path(f"/proc/{p}").stat().st_uid for p in pids.values()} == {33}


def test_a_job_dispatched_over_http_records_the_new_release(the_lab, deployed):
    token = "t" + uuid.uuid4().hex[:12]
    status, body = http(the_lab, "lab1", f"/jobs/{token}", "POST")
    assert status == 202, body
    assert json.loads(body) == {"token": token, "queued": True, "connection": "redis", "dispatched_by": "r2"}
    assert wait_for(lambda: http(the_lab, "lab1", f"/jobs/{token}")[0] == 200, timeout=30)
    runs = json.loads(http(the_lab, "lab1", f"/jobs/{token}")[1])["runs"]
    assert len(runs) == 1
    run = runs[0]
    # any host's worker may take it (one queue for the fleet): it names the release it ran in
    assert run["kind"] == "job" and run["release"] == "r2" and run["host"] in ("lab1", "lab2")
    assert run["base_path"] == f"{the_lab.deploy_path(run['host'])}/releases/r2"
    assert run["pid"] in worker_pids(run["host"]).values()
    assert http(the_lab, "lab1", "/jobs/nosuchtoken")[0] == 404


def test_queue_restart_on_one_host_restarts_only_that_hosts_queue_workers(the_lab, deployed):
    before = {name: worker_pids(name) for name in ("lab1", "lab2")}
    rel = the_lab.deploy_path("lab1") / "current"
    r = subprocess.run(["runuser", "-u", "www-data", "--", "php", "artisan", "queue:restart"], cwd=rel,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

    def lab1_queue_restarted():
        now = worker_pids("lab1")
        return all(now.get(q) not in (None, before["lab1"][q]) for q in ("app:queue_00", "app:queue_01"))

    assert wait_for(lab1_queue_restarted, timeout=30)
    time.sleep(3)   # lab2's workers poll the restart signal every second (--sleep=1): give them time to see it
    after = {name: worker_pids(name) for name in ("lab1", "lab2")}
    assert after["lab2"] == before["lab2"]                  # its own CACHE_PREFIX: not signalled
    # queue:restart never reaches schedule:work: only its supervisor restarts it
    assert after["lab1"]["app:scheduler"] == before["lab1"]["app:scheduler"]


def test_the_supervised_scheduler_records_the_new_release(the_lab, deployed):
    # Laravel 8 schedules at most every minute: wait for the next minute's run.
    def rows():
        return sql("SELECT host, `release` FROM release_runs WHERE kind = 'schedule' AND created_at >= "
                   f"FROM_UNIXTIME({int(deployed['restarted_at'])})")

    assert wait_for(lambda: {"lab1", "lab2"} <= {h for h, _ in rows()}, timeout=75, interval=1)
    assert {rel for _, rel in rows()} == {"r2"}


# ------------------------------------------------------------------------------------------- composer


def test_unchanged_lock_reuses_vendor_and_no_live_file_changes(the_lab, deployed, tmp_path):
    live = the_lab.deploy_path("lab1") / "releases" / "r2"
    before = tree_hashes(live)
    inodes = {p: os.stat(live / p).st_ino for p in before}
    assert "vendor/autoload.php" in before and "vendor/composer/installed.php" in before
    report = tmp_path / "r3.json"
    secret = "s3cr3t-" + uuid.uuid4().hex[:8]
    auth = json.dumps({"http-basic": {"repo.example.org": {"username": "ci", "password": secret}}})
    p = pipe(tmp_path, composer=": {env: {COMPOSER_AUTH: {from_env: CI_COMPOSER_AUTH}}}")
    r = deploy(the_lab, "lab1", "r3", p, "--report", str(report), env={"CI_COMPOSER_AUTH": auth})
    assert r.returncode == 0, r.stdout + r.stderr
    assert the_lab.get("lab1") == (200, "r3")
    step, outputs = composer_output(report)
    assert outputs[1].startswith("composer.lock unchanged: reused the live vendor/")
    assert "Nothing to install, update or remove" in outputs[2]
    # the secret never shows: not in the output, not in the report, masked in the command
    assert secret not in r.stdout + r.stderr + report.read_text()
    assert "COMPOSER_AUTH=***" in step["commands"][2]["command"]
    # not one file of the (then) live release changed
    assert tree_hashes(live) == before
    new = the_lab.deploy_path("lab1") / "releases" / "r3"
    linked = [p for p in before if p.startswith("vendor/") and os.stat(new / p).st_ino == inodes[p]]
    rewritten = [p for p in before if p.startswith("vendor/composer/") or p == "vendor/autoload.php"]
    assert rewritten and not set(linked) & set(rewritten)


def test_broken_composer_json_discards_the_release_and_leaves_current_alone(the_lab, deployed, tmp_path):
    assert the_lab.get("lab1")[0] == 200
    current = (the_lab.deploy_path("lab1") / "current").readlink()
    broken = app_copy(tmp_path, edit={"composer.json": lambda s: s.replace('"require": {', '"require": {,')})
    assert (broken / "composer.lock").read_text() == (PROJECT / "sample-app" / "composer.lock").read_text()
    r = deploy(the_lab, "lab1", "bad1", pipe(tmp_path, source=broken, name="broken.yml"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed before switch" in r.stdout and "composer" in r.stdout
    assert not (the_lab.deploy_path("lab1") / "releases" / "bad1").exists()
    assert (the_lab.deploy_path("lab1") / "current").readlink() == current
    assert the_lab.get("lab1") == (200, current.name)


def _big_app(tmp_path, version):
    """The sample app plus a mirrored (copied, not symlinked) path package of 2000 PHP files in 100
    directories: a vendor/ of a size where installing costs something."""
    src = app_copy(tmp_path, name=f"big-{version}")
    pkg = src / "packages" / "big"
    for d in range(100):
        sub = pkg / "src" / f"Part{d:03d}"
        sub.mkdir(parents=True)
        for f in range(20):
            (sub / f"Thing{f:02d}.php").write_text(
                f"<?php\n\nnamespace Lab\\Big\\Part{d:03d};\n\nfinal class Thing{f:02d}\n{{\n"
                + "".join(f"    public function m{i}() {{ return {i}; }}\n" for i in range(30)) + "}\n")
    (pkg / "composer.json").write_text(json.dumps({
        "name": "lab/big", "version": version, "type": "library", "autoload": {"psr-4": {"Lab\\Big\\": "src/"}}}))
    data = json.loads((src / "composer.json").read_text())
    data["require"]["lab/big"] = version
    data["repositories"].insert(0, {"type": "path", "url": "packages/big", "options": {"symlink": False}})
    (src / "composer.json").write_text(json.dumps(data, indent=4))
    home = tmp_path / "composer-home"
    r = subprocess.run(["composer", "update", "--no-interaction", "--quiet"], cwd=src, capture_output=True, text=True,
                       env=dict(os.environ, COMPOSER_HOME=str(home)), timeout=300)
    assert r.returncode == 0, r.stderr
    shutil.rmtree(src / "vendor")
    return src


def test_measure_fresh_install_against_vendor_reuse(the_lab, deployed, tmp_path):
    """Median time of the composer step (vendor.sh + composer install), fresh vs reused vendor/, with
    a 2000-file mirrored path package. Recorded (COMPOSER_TIMINGS=file), not asserted: tests do not
    assert timings; the figure is in docs/pipeline.md."""
    src = _big_app(tmp_path, "1.0.0")
    runs = int(os.environ.get("COMPOSER_RUNS", "3"))
    times = {"fresh": [], "reuse": []}
    fresh = pipe(tmp_path, source=src, composer=": {reuse_vendor: false}", name="fresh.yml")
    reuse = pipe(tmp_path, source=src, name="reuse.yml")
    for i in range(runs):
        for kind, p in (("fresh", fresh), ("reuse", reuse)):
            report = tmp_path / f"{kind}{i}.json"
            r = deploy(the_lab, "lab2", f"m{kind}{i}", p, "--report", str(report))
            assert r.returncode == 0, r.stdout + r.stderr
            step, outputs = composer_output(report)
            if kind == "fresh":
                assert "reuse_vendor is off" in outputs[1] and "Installing lab/big (1.0.0)" in outputs[2]
            else:
                # the live release is the fresh one just deployed, same lock
                assert outputs[1].startswith("composer.lock unchanged: reused the live vendor/ (20")
                assert "Nothing to install, update or remove" in outputs[2]
            times[kind].append(sum(c["duration"] for c in step["commands"][1:]))
    assert the_lab.get("lab2")[0] == 200
    rel = the_lab.deploy_path("lab2") / "current"
    assert len(list((rel / "vendor" / "lab" / "big" / "src").rglob("*.php"))) == 2000
    TIMINGS.update({k: {"median_s": round(statistics.median(v), 3), "runs": [round(x, 3) for x in v]}
                    for k, v in times.items()})
    TIMINGS["ratio_fresh_over_reuse"] = round(TIMINGS["fresh"]["median_s"] / TIMINGS["reuse"]["median_s"], 2)
    if os.environ.get("COMPOSER_TIMINGS"):
        Path(os.environ["COMPOSER_TIMINGS"]).write_text(json.dumps(TIMINGS, indent=2) + "\n")
    print(json.dumps(TIMINGS))


def test_in_place_composer_keeps_vendor_and_the_snapshots_autoloader(the_lab, deployed, tmp_path):
    """strategy: in-place with a composer step: sync's --delete must not remove the vendor/ built on
    the host, and composer must not rewrite the autoloader files the snapshot shares (hard links)."""
    the_lab.wipe("lab1")
    tree = the_lab.deploy_path("lab1") / "current"      # a real directory: nginx serves it as is
    tree.mkdir()
    inv = write(tmp_path / "inplace.yml", Path(the_lab.inventory).read_text().replace(
        f"deploy_path: {the_lab.deploy_path('lab1')}\n", f"deploy_path: {tree}\n"))
    p = str(write(tmp_path / "ip.yml", f"""
        remediate: false
        source: {PROJECT / 'sample-app'}
        strategy: in-place
        steps:
          - sync
          - ownership
          - composer
          - artisan: {{commands: [config:cache, route:cache]}}
          - activate
          - opcache_reset
          - verify: {{timeout: 10, interval: 0.25}}
    """))

    def run(release):
        report = tmp_path / f"{release}.json"
        r = fab("deploy", "--host", "lab1", "--inventory", str(inv), "--pipeline", p, "--release", release,
                "--report", str(report))
        assert r.returncode == 0, r.stdout + r.stderr
        return composer_output(report)[1]

    run("i1")
    assert the_lab.get("lab1") == (200, "i1")
    autoload = {f: hashlib.sha256((tree / f).read_bytes()).hexdigest()
                for f in ["vendor/autoload.php"] + [f"vendor/composer/{x}" for x in os.listdir(tree / "vendor/composer")]}
    outputs = run("i2")
    assert the_lab.get("lab1") == (200, "i2")
    assert (tree / "vendor" / "autoload.php").is_file()          # sync did not delete it
    assert outputs[1].startswith("vendor/ is already in the release: ") and "Nothing to install" in outputs[2]
    snap = tree / ".deploy" / "snapshots" / "i1"
    assert {f: hashlib.sha256((snap / f).read_bytes()).hexdigest() for f in autoload} == autoload
    for f in autoload:
        assert os.stat(snap / f).st_ino != os.stat(tree / f).st_ino
