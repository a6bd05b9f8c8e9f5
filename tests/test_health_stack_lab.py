"""The app checks of `fab health` and the workers remedy of `fab heal`, on the lab WITH its real
stack (deploy/lab/services.py: MariaDB, Redis, a supervisord per host running two queue workers
and the scheduler from `current`). Everything through `fab`, as a user runs it; the faults are
made as they happen: workers left on the old release by a deploy, a migration shipped but not
run, Redis stopped, APP_KEY lost from shared/.env."""

import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import Lab, app_copy, needs_root, wait_for

pytestmark = [needs_root, pytest.mark.lab]

ROOT = slot_root("/srv/labhstack")
SSH_BASE, HTTP_BASE = slot_port(3600), slot_port(9600)
DB_PORT, REDIS_PORT = slot_port(3690), slot_port(3695)

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - ownership
  - composer
  - artisan: {{commands: [config:cache, route:cache, view:cache, event:cache]}}
{migrate}  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 10, interval: 0.25}}
"""
MIGRATE = '  - run: {name: migrate, commands: ["php artisan migrate --force"]}\n'
NEW_MIGRATION = "2030_01_01_000000_create_health_notes_table"


def up(inventory):
    hosts = labmod.up(1, root=ROOT, inventory=str(inventory), ssh_base=SSH_BASE, http_base=HTTP_BASE, stack=True,
                      db_port=DB_PORT, redis_port=REDIS_PORT)
    # The host's process manager restarts its workers (what an operator writes in the inventory).
    text = re.sub(r"    workers:\n      restart: .*\n", "", Path(inventory).read_text())   # ours instead of the lab's
    for h in hosts:
        line = f"    health_url: {h.health_url}\n"
        restart = h.stack.supervisor.restart
        text = text.replace(line, line + f"    workers: {{restart: '{restart}', timeout: 40}}\n")
    assert "workers: {restart:" in text
    Path(inventory).write_text(text)
    return hosts


@pytest.fixture(scope="module")
def the_lab(tmp_path_factory):
    labmod.down(ROOT, purge=True)
    tmp = tmp_path_factory.mktemp("labhstack")
    hosts = up(tmp / "lab.yml")
    the_lab = Lab(ROOT, tmp / "lab.yml", hosts)
    the_lab.tmp = tmp
    yield the_lab
    labmod.down(ROOT, purge=True)


def pipeline(the_lab, name, source=None, migrate=True):
    return str(write(the_lab.tmp / name, PIPELINE.format(source=source or PROJECT / "sample-app",
                                                         migrate=MIGRATE if migrate else "")))


def deploy(the_lab, release, pipe):
    r = fab("deploy", "--host", "lab1", "--inventory", the_lab.inventory, "--pipeline", pipe, "--release", release)
    assert r.returncode == 0, r.stdout + r.stderr
    assert the_lab.get("lab1") == (200, release)


def health(the_lab, pipe):
    """fab health --json: (exit code, {check: finding}, the whole output)."""
    r = fab("health", "--host", "lab1", "--inventory", the_lab.inventory, "--pipeline", pipe, "--json")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    host = json.loads(r.stdout)["hosts"][0]
    assert host["error"] is None, host["error"]
    return r.returncode, {f["check"]: f for f in host["findings"]}, r.stdout + r.stderr


def stack():
    return labmod.host_info("lab1", root=ROOT).stack


def supervisor(*args):
    argv = shlex.split(stack().supervisor.ctl) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def worker_pids():
    out = {}
    for line in supervisor("status").stdout.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == "RUNNING":
            out[words[0]] = int(words[3].rstrip(","))
    return out


def cwd(pid):
    return os.readlink(f"/proc/{pid}/cwd")


@pytest.fixture(scope="module")
def deployed(the_lab):
    """r1 deployed and migrated, its workers started; then r2 deployed by a pipeline that does not
    restart workers: they keep running r1."""
    p = pipeline(the_lab, "p.yml")
    deploy(the_lab, "r1", p)
    r = subprocess.run(shlex.split(stack().supervisor.restart), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert wait_for(lambda: len(worker_pids()) == 3, timeout=30)
    deploy(the_lab, "r2", p)
    return {"pipeline": p}


def test_workers_left_on_the_old_release_are_reported_and_healed(the_lab, deployed):
    release = the_lab.deploy_path("lab1") / "releases"
    before = worker_pids()
    assert {cwd(p) for p in before.values()} == {str(release / "r1")}
    code, fs, out = health(the_lab, deployed["pipeline"])
    assert code == 1
    w = fs["workers"]
    assert w["status"] == "fail" and w["remedy"] == "workers", w
    assert "3 of 3 worker process(es) do not run the live release r2" in w["evidence"]
    assert f"runs {release}/r1" in w["evidence"]
    assert sorted(p["pid"] for p in w["details"]["processes"]) == sorted(before.values())
    # the rest of the app is fine: its .env, its database and Redis, its migrations
    for check in ("env", "services", "migrations", "running_code"):
        assert fs[check]["status"] == "pass", (check, fs[check]["evidence"])
    assert "database 'mysql' (mysql) answers" in fs["services"]["evidence"]
    assert "Redis 'cache' (cache), 'default' (queue) answer PING" in fs["services"]["evidence"]
    assert "all 1 migrations ran (last batch 1)" in fs["migrations"]["evidence"]

    r = fab("heal", "--host", "lab1", "--inventory", the_lab.inventory, "--pipeline", deployed["pipeline"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "action workers (attempt 1" in r.stdout and "lab1: healed" in r.stdout
    after = worker_pids()
    assert len(after) == 3 and not set(after.values()) & set(before.values())
    assert {cwd(p) for p in after.values()} == {str(release / "r2")}
    code, fs, _ = health(the_lab, deployed["pipeline"])
    assert fs["workers"]["status"] == "pass" and "3 process(es) (queue:work x2, schedule:work x1)" in fs["workers"]["evidence"]
    hist = (the_lab.deploy_path("lab1") / ".deploy" / "history.jsonl").read_text().splitlines()
    assert json.loads(hist[-1])["actions"] == ["workers"]


def test_a_migration_shipped_but_not_run_is_reported(the_lab, deployed, tmp_path):
    migration = (PROJECT / "sample-app" / "database" / "migrations" / "2024_01_01_000000_create_release_runs_table.php")
    src = app_copy(tmp_path, edit={f"database/migrations/{NEW_MIGRATION}.php": migration.read_text()
                                   .replace("CreateReleaseRunsTable", "CreateHealthNotesTable")
                                   .replace("release_runs", "health_notes")})
    p = pipeline(the_lab, "no-migrate.yml", source=src, migrate=False)
    deploy(the_lab, "r3", p)
    code, fs, _ = health(the_lab, p)
    m = fs["migrations"]
    assert code == 1 and m["status"] == "fail" and m["remedy"] is None
    assert f"1 pending migration (Ran? No): {NEW_MIGRATION}" in m["evidence"]
    assert m["details"]["ran"] == ["2024_01_01_000000_create_release_runs_table"]
    assert "php artisan migrate --force" in m["fix"]
    # what the fix says, done by hand: then nothing is pending
    live = the_lab.deploy_path("lab1") / "current"
    r = subprocess.run(labmod.ssh_command("lab1", ROOT) + [f"cd {live} && php artisan migrate --force"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    _, fs, _ = health(the_lab, p)
    assert fs["migrations"]["status"] == "pass" and "all 2 migrations ran (last batch 2)" in fs["migrations"]["evidence"]


def test_app_key_lost_from_shared_env_is_reported_without_printing_the_env(the_lab, deployed):
    env = the_lab.deploy_path("lab1") / "shared" / ".env"
    original, st = env.read_text(), env.stat()
    password = stack().db.password
    assert f"DB_PASSWORD={password}" in original
    try:
        env.write_text("".join(l for l in original.splitlines(keepends=True) if not l.startswith("APP_KEY=")))
        code, fs, out = health(the_lab, deployed["pipeline"])
        e = fs["env"]
        assert code == 1 and e["status"] == "fail" and e["remedy"] is None
        assert f"APP_KEY is missing from {env}" in e["evidence"]
        assert "the key the app's other hosts use" in e["fix"]
        # .env changed after config:cache: the bootstrap cache check says so too
        assert fs["bootstrap_cache"]["status"] == "fail" and "changed after config:cache" in fs["bootstrap_cache"]["evidence"]
        assert password not in out
    finally:
        env.write_text(original)
        os.utime(env, ns=(st.st_atime_ns, st.st_mtime_ns))
    _, fs, _ = health(the_lab, deployed["pipeline"])
    assert fs["env"]["status"] == "pass" and fs["bootstrap_cache"]["status"] == "pass"


def test_redis_stopped_is_reported_for_each_connection_the_app_uses(the_lab, deployed):
    pid = stack().redis.pid
    assert pid
    os.kill(pid, signal.SIGTERM)       # the lab's own Redis (its pid file, this lab's root)
    assert wait_for(lambda: stack().redis.pid is None, timeout=30)
    try:
        code, fs, out = health(the_lab, deployed["pipeline"])
        s = fs["services"]
        assert code == 1 and s["status"] == "fail" and s["remedy"] is None
        assert "Redis connection 'cache' (the app's cache) is not reachable" in s["evidence"]
        assert "Redis connection 'default' (the app's queue) is not reachable" in s["evidence"]
        assert "Connection refused" in s["evidence"]
        assert "database 'mysql'" not in s["evidence"]                         # the database still answers
        assert fs["migrations"]["status"] == "pass"
    finally:
        up(the_lab.inventory)          # starts what is not running: Redis (and rewrites the inventory)
    assert stack().redis.pid
    # workers that died while Redis was away come back with their manager's restart
    supervisor("restart", "app:*")
    assert wait_for(lambda: len(worker_pids()) == 3, timeout=30)
    _, fs, _ = health(the_lab, deployed["pipeline"])
    assert fs["services"]["status"] == "pass"
