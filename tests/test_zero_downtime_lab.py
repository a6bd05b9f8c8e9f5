"""Zero downtime on real sandbox hosts (sshd, PHP-FPM with OPCache, nginx, the sample Laravel app),
measured with a real HTTP load (wrk, deploy/lab/load.py) on the host's nginx while the tool works.

Asserts counts of failed requests (non-2xx answers and requests with no answer), never latencies:
docs/benchmark.md has the timings, from bench/load.py.
"""

import json
import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

from deploy import lab as labmod
from deploy.lab.load import Load
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import app_copy, needs_root, patch_controller, start

pytestmark = [needs_root, pytest.mark.lab]

ROOT = os.environ.get("ZD_LAB_ROOT", slot_root("/srv/labzd"))
SSH_BASE = int(os.environ.get("ZD_LAB_SSH_BASE", slot_port(11200)))
HTTP_BASE = int(os.environ.get("ZD_LAB_HTTP_BASE", slot_port(11300)))
DEFAULT = str(PROJECT / "playbooks" / "laravel.yml")
RATE = 100   # requests per second asked of the load, on each host's nginx


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 1, SSH_BASE, HTTP_BASE, tmp_path_factory.mktemp("labzd"))
    yield the_lab
    labmod.down(the_lab.root, purge=True)


@pytest.fixture
def host(lab):
    lab.wipe("lab1")
    yield "lab1"
    labmod.fpm_restart("lab1", root=lab.root, defaults=True)


def run(lab, action, *args, pipeline=DEFAULT):
    return fab(action, "--host", "lab1", "--inventory", lab.inventory, "--pipeline", pipeline, *args)


def under_load(lab, action, *args, url_path="/version", **kw):
    """Run `fab ACTION` while wrk loads the host's nginx; (fab's result, the load's counts)."""
    with Load(lab.url("lab1", url_path), rate=RATE) as load:
        r = run(lab, action, *args, **kw)
        time.sleep(0.5)   # requests sent right after the command ends count too
    print(f"\nfab {action} {' '.join(args)}: {load.result.describe()}")
    return r, load.result


def assert_no_failed_requests(result, r):
    out = r.stdout + r.stderr
    # The load really ran through the whole command: a test that sent nothing proves nothing.
    assert result.requests >= 20, f"the load sent only {result.requests} requests\n{out}"
    assert result.failed == 0, f"{result.describe()}\n{out}"
    assert set(result.statuses) == {200}, result.statuses


def broken_app(tmp_path):
    """A release whose code always throws (every route goes through this controller or fails)."""
    return app_copy(tmp_path, "broken", edit={
        "app/Http/Controllers/VersionController.php":
            lambda s: s.replace("$file = base_path('RELEASE');", "throw new \\RuntimeException('always broken');")})


def fpm_master(lab):
    return labmod.host_info("lab1", root=lab.root).pids.fpm


def history(lab):
    path = lab.deploy_path("lab1") / ".deploy" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------ the check before the switch

def test_a_release_that_throws_is_rejected_before_the_switch_and_no_request_fails(lab, host, tmp_path):
    assert run(lab, "deploy", "--release", "r1").returncode == 0
    assert lab.get(host) == (200, "r1")
    report = tmp_path / "r2.json"
    r, load = under_load(lab, "deploy", "--release", "r2", "--source", str(broken_app(tmp_path)), "--report", str(report))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert_no_failed_requests(load, r)
    assert "lab1 step precheck: failed" in out
    assert ("failed before switch: step 'precheck' failed (exit 1): pre-switch check failed: release r2 answered "
            'HTTP 500, want 200: page titled "Server Error" (GET /version (Host: 127.0.0.1:') in out
    assert "current was not switched (still r1)" in out
    host_report = json.loads(report.read_text())["hosts"][0]
    assert host_report["state"] == "failed before switch"
    # current never moved; the release is gone (the host's discard.sh removed it); no mark left.
    root = lab.deploy_path(host)
    assert (root / "current").readlink().as_posix() == "releases/r1"
    assert not (root / "releases" / "r2").exists()
    assert not (root / ".deploy" / "bad" / "r2").exists()
    status = {s["name"]: s["status"] for s in host_report["steps"]}
    assert (status["precheck"], status["activate"], status["discard"]) == ("failed", "skipped", "ok")
    assert host_report["switched"] is False
    assert history(lab)[-1]["state"] == "failed before switch"
    assert lab.get(host) == (200, "r1")


def test_first_deploy_of_a_broken_release_switches_nothing(lab, host, tmp_path):
    r, load = under_load(lab, "deploy", "--release", "b1", "--source", str(broken_app(tmp_path)), url_path="/fpm-ping")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "failed before switch" in out and "pre-switch check failed: release b1 answered HTTP 500" in out
    assert "current was not switched (still nothing)" in out
    root = lab.deploy_path(host)
    assert not (root / "current").exists() and not (root / "current").is_symlink()
    assert list((root / "releases").iterdir()) == []
    assert not (root / ".deploy" / "bad" / "b1").exists()
    assert_no_failed_requests(load, r)   # the pool itself kept answering throughout
    # A good release afterwards goes live normally.
    assert run(lab, "deploy", "--release", "g1").returncode == 0
    assert lab.get(host) == (200, "g1")


def test_the_plan_shows_the_check_before_the_switch(lab, host):
    r = run(lab, "plan", "--release", "p1")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    pre = next(i for i, l in enumerate(lines) if l.startswith("## precheck"))
    act = next(i for i, l in enumerate(lines) if l.startswith("## activate"))
    assert pre < act
    assert re.search(r"sh -c <deploy/remote/precheck\.sh@[0-9a-f]{8}> precheck\.sh \S+/app p1 php \S+/fpmctl\.php "
                     r"\S+/php-fpm\.sock public/index\.php /version 127\.0\.0\.1:\d+ 0 200 p1 10 0", lines[pre + 1])


# ------------------------------------------------------------------------ no failed requests

def test_no_failed_request_during_a_deploy_a_rollback_and_a_heal(lab, host, tmp_path):
    assert run(lab, "deploy", "--release", "r1").returncode == 0
    master = fpm_master(lab)

    r, load = under_load(lab, "deploy", "--release", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_no_failed_requests(load, r)
    assert lab.get(host) == (200, "r2")
    # The in-pool reset was proven, so the default pipeline did not reload FPM (its master's pid
    # changes on a reload in the lab: daemonize = yes re-forks).
    assert fpm_master(lab) == master

    r, load = under_load(lab, "rollback")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_no_failed_requests(load, r)
    assert lab.get(host) == (200, "r1")

    # Heal: the incident's stale code. An in-place hot fix the pool does not execute
    # (validate_timestamps=0); `fab heal` resets OPCache in the pool. The edit must be newer
    # than the rollback's reset (and older than file_update_protection).
    live = lab.deploy_path(host) / "releases" / "r1"
    time.sleep(3.5)
    patch_controller(live, "-hotfix")
    assert lab.get(host) == (200, "r1")
    r, load = under_load(lab, "heal")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "opcache_reset" in r.stdout
    assert_no_failed_requests(load, r)
    assert lab.get(host) == (200, "r1-hotfix")


def test_no_failed_request_when_the_pool_is_reloaded(lab, host, tmp_path):
    """Reloads on every deploy and rollback, and a heal that must reload: graceful, because the
    lab's pool has process_control_timeout = 10s (as a real host must)."""
    always = write(tmp_path / "always.yml", Path(DEFAULT).read_text()
                   .replace("source: sample-app", f"source: {PROJECT / 'sample-app'}")
                   .replace("      when: needed", "      when: always"))
    assert run(lab, "deploy", "--release", "r1", pipeline=str(always)).returncode == 0
    master = fpm_master(lab)
    r, load = under_load(lab, "deploy", "--release", "r2", pipeline=str(always))
    assert r.returncode == 0, r.stdout + r.stderr
    assert fpm_master(lab) != master   # it did reload
    assert_no_failed_requests(load, r)
    r, load = under_load(lab, "rollback", pipeline=str(always))
    assert r.returncode == 0, r.stdout + r.stderr
    assert_no_failed_requests(load, r)

    # A pool whose API refuses an OPCache reset from the probe: heal escalates to a reload.
    labmod.fpm_restart("lab1", root=lab.root,
                       directives={"php_admin_value[opcache.restrict_api]": "/nonexistent-restrict-api"})
    assert lab.get(host) == (200, "r1")
    time.sleep(2.5)   # older than opcache.file_update_protection, so the pool caches the controller
    assert lab.get(host) == (200, "r1")
    patch_controller(lab.deploy_path(host) / "releases" / "r1", "-hotfix")
    assert lab.get(host) == (200, "r1")
    master = fpm_master(lab)
    r, load = under_load(lab, "heal", pipeline=str(always))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fpm_reload" in r.stdout and fpm_master(lab) != master
    assert_no_failed_requests(load, r)
    assert lab.get(host) == (200, "r1-hotfix")


def test_a_pool_that_would_drop_requests_on_reload_is_refused_before_the_switch(lab, host, tmp_path):
    # FPM's default process_control_timeout (0): a reload kills the requests in flight.
    labmod.fpm_restart("lab1", root=lab.root, process_control_timeout=0)
    # The default pipeline reloads only when needed: it deploys on such a pool, and the reload
    # it does not need cannot drop anything.
    assert run(lab, "deploy", "--release", "r1").returncode == 0
    master = fpm_master(lab)
    r, load = under_load(lab, "deploy", "--release", "r2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert_no_failed_requests(load, r)
    assert fpm_master(lab) == master

    # A pipeline that reloads on every deploy is refused before the switch.
    always = write(tmp_path / "always.yml", Path(DEFAULT).read_text()
                   .replace("source: sample-app", f"source: {PROJECT / 'sample-app'}")
                   .replace("      when: needed", "      when: always"))
    r, load = under_load(lab, "deploy", "--release", "r3", pipeline=str(always))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "failed before switch" in out
    assert ("pre-switch check failed: the pipeline reloads PHP-FPM after the switch and process_control_timeout "
            "is 0 in ") in out
    assert "set process_control_timeout = 10s in its [global] section (or use fpm_reload: {when: needed})" in out
    assert (lab.deploy_path(host) / "current").readlink().as_posix() == "releases/r2"
    assert_no_failed_requests(load, r)
    assert fpm_master(lab) == master


# ------------------------------------------------------------------- assets of the old release

def asset_app(tmp_path, name, digest):
    """The sample app with a built asset public/build/app.<digest>.js that its home page loads."""
    app = app_copy(tmp_path, name, edit={
        "resources/views/layouts/app.blade.php":
            lambda s: s.replace("</head>", f'    <script src="/build/app.{digest}.js"></script>\n</head>'),
    })
    write(app / "public" / "build" / f"app.{digest}.js", f"console.log('{name}');\n")
    return app


def asset_of(lab, host):
    status, page = lab.get(host, "/")
    assert status == 200, page
    return re.search(r'src="(/build/app\.[0-9a-f]+\.js)"', page).group(1)


def fetch(lab, host, path):
    try:
        with urllib.request.urlopen(lab.url(host, path), timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


@pytest.mark.parametrize("keep", [True, False], ids=["keep_assets", "without"])
def test_a_page_rendered_by_the_old_release_still_loads_its_asset_after_the_switch(lab, host, tmp_path, keep):
    pipeline = DEFAULT
    if not keep:
        pipeline = str(write(tmp_path / "nokeep.yml", Path(DEFAULT).read_text()
                             .replace("source: sample-app", f"source: {PROJECT / 'sample-app'}")
                             .replace("keep_assets: [public/build]", "keep_assets: []")))
    assert run(lab, "deploy", "--release", "r1", "--source", str(asset_app(tmp_path, "a1", "1111aaaa")),
               pipeline=pipeline).returncode == 0
    old = asset_of(lab, host)                  # the page a user has open, rendered by r1
    assert old == "/build/app.1111aaaa.js" and fetch(lab, host, old) == (200, "console.log('a1');\n")

    r = run(lab, "deploy", "--release", "r2", "--source", str(asset_app(tmp_path, "a2", "2222bbbb")), pipeline=pipeline)
    assert r.returncode == 0, r.stdout + r.stderr
    new = asset_of(lab, host)
    assert new == "/build/app.2222bbbb.js" and fetch(lab, host, new) == (200, "console.log('a2');\n")
    if keep:
        assert fetch(lab, host, old) == (200, "console.log('a1');\n")
        rel = lab.deploy_path(host) / "releases" / "r2"
        assert (rel / ".kept-assets").read_text().split() == ["public/build/app.1111aaaa.js"]
    else:
        assert fetch(lab, host, old)[0] == 404   # what keep_assets is for
