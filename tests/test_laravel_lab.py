"""A real Laravel app end to end on the lab with its real stack (one MariaDB, one Redis, a
supervisord per host running the queue workers and the scheduler): composer, a migration run
once per fleet before any host switches, and the workers restarted and PROVEN on the release
that went live, after a deploy and after a rollback. Everything through `fab`, as a user would."""

import json
import os
import re
import shlex
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

ROOT = slot_root("/srv/lablaravel")
SSH_BASE, HTTP_BASE = slot_port(3700), slot_port(9700)
DB_PORT, REDIS_PORT = slot_port(3750), slot_port(3760)
HOSTS = ("lab1", "lab2", "lab3")

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - ownership
  - composer
  - artisan: {{commands: [config:cache, route:cache, view:cache, event:cache]}}
  - migrate
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 10, interval: 0.25}}
  - workers{workers}
"""


def pipe(tmp_path, source=None, name="p.yml", workers=""):
    return str(write(tmp_path / name, PIPELINE.format(source=source or PROJECT / "sample-app", workers=workers)))


def stack(name):
    return labmod.host_info(name, root=ROOT).stack


@pytest.fixture(scope="module")
def the_lab(tmp_path_factory):
    labmod.down(ROOT, purge=True)
    tmp = tmp_path_factory.mktemp("lablaravel")
    hosts = labmod.up(3, root=ROOT, inventory=str(tmp / "lab.yml"), ssh_base=SSH_BASE, http_base=HTTP_BASE,
                      stack=True, db_port=DB_PORT, redis_port=REDIS_PORT)
    the_lab = Lab(ROOT, tmp / "lab.yml", hosts)
    # Each host restarts its workers with its own supervisorctl (as a supervisor host is set up).
    text = Path(the_lab.inventory).read_text()
    text = re.sub(r"    workers:\n      restart: .*\n", "", text)   # ours instead of the lab's
    for name in HOSTS:
        restart = stack(name).supervisor.restart
        text = text.replace(f"  {name}:\n", f"  {name}:\n    workers: {{restart: {json.dumps(restart)}, timeout: 8}}\n", 1)
    the_lab.inventory = str(write(tmp / "laravel.yml", text))
    yield the_lab
    labmod.down(ROOT, purge=True)


def deploy(the_lab, hosts, release, pipeline, *extra):
    return fab("deploy", "--host", hosts, "--inventory", the_lab.inventory, "--pipeline", pipeline,
               "--release", release, *extra)


def sql(query):
    db = stack("lab1").db
    r = subprocess.run(["mariadb", "--no-defaults", f"--socket={db.socket}", "-u", "root", "-N", "-B",
                        db.database, "-e", query], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


def http(the_lab, name, path, method="GET"):
    req = urllib.request.Request(the_lab.url(name, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def job_release(the_lab, name):
    """Dispatch a job over HTTP on a host; the release that PROCESSED it (from the database)."""
    token = "t" + uuid.uuid4().hex[:12]
    status, body = http(the_lab, name, f"/jobs/{token}", "POST")
    assert status == 202, body
    assert wait_for(lambda: http(the_lab, name, f"/jobs/{token}")[0] == 200, timeout=30)
    return json.loads(http(the_lab, name, f"/jobs/{token}")[1])["runs"][0]["release"]


def workers_of(the_lab, name):
    """{pid: real cwd} of the host's supervised workers and scheduler, read from /proc."""
    out = {}
    conf = stack(name).supervisor.conf
    status = subprocess.run(shlex.split(f"/usr/bin/supervisorctl -c {conf} status"), capture_output=True,
                            text=True).stdout
    for line in status.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == "RUNNING":
            pid = int(words[3].rstrip(","))
            out[pid] = os.readlink(f"/proc/{pid}/cwd")
    return out


def report(path):
    return {h["host"]: h for h in json.loads(Path(path).read_text())["hosts"]}


def live(the_lab, name):
    return (the_lab.deploy_path(name) / "current").readlink().name


def history(the_lab, name):
    path = the_lab.deploy_path(name) / ".deploy" / "history.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def r1(the_lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("r1")
    r = deploy(the_lab, "lab", "r1", pipe(tmp))
    assert r.returncode == 0, r.stdout + r.stderr
    return the_lab


def test_the_plan_shows_composer_the_migration_on_one_host_and_the_worker_proof(the_lab, tmp_path):
    r = fab("plan", "--verbose", "--host", "lab", "--inventory", the_lab.inventory, "--pipeline", pipe(tmp_path), "--release", "rx")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert len(re.findall(r"schema\.sh@\w+> schema\.sh migrate", out)) == 1          # one host migrates
    assert out.count("runs once per deploy, on lab1: not on this host") == 2          # the two others say so
    assert len(re.findall(r"(?m)^   \$ cd .* && composer install ", out)) == 3         # every host installs
    for name in HOSTS:   # each host's own restart command, then the proof
        assert stack(name).supervisor.restart in out
    assert len(re.findall(r"workers\.sh@\w+> workers\.sh --wait 8", out)) == 3


def test_deploy_restarts_and_proves_every_worker_on_the_new_release(r1, tmp_path):
    the_lab = r1
    before = {n: workers_of(the_lab, n) for n in HOSTS}
    out = tmp_path / "r2.json"
    r = deploy(the_lab, "lab", "r2", pipe(tmp_path), "--report", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    hs = report(out)
    for name in HOSTS:
        assert hs[name]["state"] == "deployed"
        proof = next(s for s in hs[name]["steps"] if s["name"] == "workers")["commands"][-1]["output"]
        assert "proven: 3 process(es)" in proof, proof
        now = workers_of(the_lab, name)
        assert len(now) == 3 and not set(now) & set(before[name])             # every pid is new
        assert set(now.values()) == {str(the_lab.deploy_path(name) / "releases" / "r2")}
    # A job dispatched after the deploy is processed by r2's code.
    assert job_release(the_lab, "lab2") == "r2"

    # And the same after a rollback: the workers restarted and proven on r1.
    out = tmp_path / "rb.json"
    r = fab("rollback", "--host", "lab", "--inventory", the_lab.inventory, "--pipeline", pipe(tmp_path),
            "--report", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    for name in HOSTS:
        h = report(out)[name]
        assert h["state"] == "rolled back"
        assert any(s["name"] == "workers (rollback)" and s["status"] == "ok" for s in h["steps"])
        assert set(workers_of(the_lab, name).values()) == {str(the_lab.deploy_path(name) / "releases" / "r1")}
    assert job_release(the_lab, "lab3") == "r1"


def rogue(the_lab, name, release):
    """A worker started by hand outside supervisor, that ignores SIGTERM (stuck in a long job),
    and a misconfigured "supervisor" that restarts it, always in releases/RELEASE."""
    deploy_path = the_lab.deploy_path(name)
    script = deploy_path / "rogue" / "artisan"
    script.parent.mkdir(exist_ok=True)
    script.write_text("<?php sleep(600);\n")
    cwd = deploy_path / "releases" / release
    return subprocess.Popen(["bash", "-c", f"while :; do (trap '' TERM; cd {cwd} && exec -a php perl -e 'sleep 600' "
                             f"{script} queue:work); sleep 0.2; done"], start_new_session=True)


def test_a_worker_stuck_on_the_old_release_is_named_restarted_harder_then_rolled_back(r1, tmp_path):
    the_lab = r1
    loop = rogue(the_lab, "lab2", "r1")
    try:
        assert wait_for(lambda: any("rogue/artisan" in open(f"/proc/{p}/cmdline").read()
                                    for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/cmdline")),
                        timeout=10)
        out = tmp_path / "r3.json"
        r = deploy(the_lab, "lab2", "r3", pipe(tmp_path, name="short.yml"), "--report", str(out))
        assert r.returncode == 1, r.stdout + r.stderr
        h = report(out)["lab2"]
        # Named in the message: pid, command line, and the release it runs.
        assert h["state"] == "rolled back", h["message"]
        assert "step 'workers' failed" in h["message"] and "rogue/artisan queue:work" in h["message"]
        assert f"release={the_lab.deploy_path('lab2')}/releases/r1" in h["message"]
        proof = next(s for s in h["steps"] if s["name"] == "workers")["commands"][-1]["output"]
        assert "restarting harder: SIGTERM" in proof and "restarting harder: SIGKILL" in proof
        # Rolled back, and the workers (the rogue's too) proven on r1.
        assert any(s["name"] == "workers (rollback)" and s["status"] == "ok" for s in h["steps"])
        assert live(the_lab, "lab2") == "r1" and the_lab.get("lab2") == (200, "r1")
    finally:
        os.killpg(loop.pid, 9)
        loop.wait()
        subprocess.run(["pkill", "-9", "-f", str(the_lab.deploy_path("lab2") / "rogue" / "artisan")])


def test_a_worker_ignoring_sigterm_is_killed_and_the_deploy_proceeds(r1, tmp_path):
    # Not supervised, ignores SIGTERM, in the old release: killed; the supervised ones proven.
    the_lab = r1
    r1_dir = the_lab.deploy_path("lab3") / "releases" / "r1"
    script = the_lab.deploy_path("lab3") / "stuck" / "artisan"
    script.parent.mkdir(exist_ok=True)
    script.write_text("<?php sleep(600);\n")
    # A worker in the middle of a long job, finishing it before it honours SIGTERM (Laravel's
    # queue:work does that): php itself resets an ignored SIGTERM, so perl stands in for it.
    stuck = subprocess.Popen(["bash", "-c", f"trap '' TERM; cd {r1_dir} && exec -a php perl -e 'sleep 600' {script}"
                              " queue:work"], start_new_session=True)
    try:
        assert wait_for(lambda: "queue:work" in Path(f"/proc/{stuck.pid}/cmdline").read_text(), timeout=10)
        out = tmp_path / "r4.json"
        r = deploy(the_lab, "lab3", "r4", pipe(tmp_path, name="stuck.yml"), "--report", str(out))
        assert r.returncode == 0, r.stdout + r.stderr
        proof = next(s for s in report(out)["lab3"]["steps"] if s["name"] == "workers")["commands"][-1]["output"]
        assert f"pid={stuck.pid}" in proof and f"SIGKILL to {stuck.pid}" in proof.replace("  ", " ")
        assert stuck.wait(timeout=10) is not None          # it is gone
        assert set(workers_of(the_lab, "lab3").values()) == {str(the_lab.deploy_path("lab3") / "releases" / "r4")}
    finally:
        if stuck.poll() is None:
            stuck.kill()
            stuck.wait()


def slow_migration(app, seconds, fail=False, name="2024_06_01_000000_slow_step", cls="SlowStep"):
    body = "throw new \\RuntimeException('this migration fails');" if fail else f"sleep({seconds});"
    if fail:
        name, cls = "2024_06_02_000000_broken_step", "BrokenStep"
    (app / "database" / "migrations" / f"{name}.php").write_text(f"""<?php

use Illuminate\\Database\\Migrations\\Migration;
use Illuminate\\Support\\Facades\\Schema;

class {cls} extends Migration
{{
    public function up()
    {{
        {body}
        Schema::create('{name[18:]}', function ($t) {{ $t->id(); }});
    }}
}}
""")
    return name


def test_a_fleet_migrates_once_before_any_host_switches(r1, tmp_path):
    the_lab = r1
    app = app_copy(tmp_path)
    name = slow_migration(app, 3)
    out = tmp_path / "m.json"
    r = deploy(the_lab, "lab", "m1", pipe(tmp_path, source=app, name="m.yml"), "--parallel", "3", "--report", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    # The database says it ran exactly once.
    assert sql(f"SELECT COUNT(*) FROM migrations WHERE migration = '{name}'") == [["1"]]
    runs = [h for h in history(the_lab, "lab1") if h.get("action") == "migrate" and h.get("release") == "m1"]
    assert len(runs) == 1 and name in runs[0]["migrations"] and runs[0]["state"] == "migrated"
    for other in ("lab2", "lab3"):
        assert not any(h.get("action") == "migrate" for h in history(the_lab, other) if h.get("release") == "m1")
        assert any(h.get("migrated_on") == "lab1" for h in history(the_lab, other) if h.get("release") == "m1")
    # No host switched before the migration ended (its end is in lab1's history, to the second).
    ended = time.mktime(time.strptime(runs[0]["time"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    for name_ in HOSTS:
        switched = os.lstat(the_lab.deploy_path(name_) / "current").st_mtime
        assert switched >= ended, (name_, switched, ended)
        assert live(the_lab, name_) == "m1"


def test_a_failing_migration_leaves_every_host_on_the_live_release(r1, tmp_path):
    the_lab = r1
    before = {n: live(the_lab, n) for n in HOSTS}
    app = app_copy(tmp_path)
    slow_migration(app, 0, fail=True)
    out = tmp_path / "f.json"
    r = deploy(the_lab, "lab", "f1", pipe(tmp_path, source=app, name="f.yml"), "--parallel", "3", "--report", str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    hs = report(out)
    assert hs["lab1"]["state"] == "failed before switch" and "this migration fails" in hs["lab1"]["message"]
    for other in ("lab2", "lab3"):
        assert hs[other]["state"] == "failed before switch", hs[other]["message"]
        assert "the migration on lab1 failed" in hs[other]["message"]
    for name in HOSTS:
        assert hs[name]["switched"] is False
        assert live(the_lab, name) == before[name]
        assert not (the_lab.deploy_path(name) / "releases" / "f1").exists()
        assert the_lab.get(name) == (200, before[name])


def test_rollback_past_a_migration_warns_that_the_schema_stays(r1, tmp_path):
    the_lab = r1
    app = app_copy(tmp_path)
    slow_migration(app, 0, name="2024_07_01_000000_wide_step", cls="WideStep")
    r = deploy(the_lab, "lab1", "w1", pipe(tmp_path, source=app, name="w.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "rb.json"
    r = fab("rollback", "--host", "lab1", "--inventory", the_lab.inventory, "--pipeline", pipe(tmp_path),
            "--report", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    h = report(out)["lab1"]
    assert "WARNING" in h["message"] and "the schema is NOT rolled back" in h["message"]
    assert "2024_07_01_000000_wide_step" in h["message"]
    assert "WARNING" in r.stdout
