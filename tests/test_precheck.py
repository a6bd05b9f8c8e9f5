"""precheck, fpm_reload `when` and sync `keep_assets` as data (plans, bad input), and
keep_assets.sh / precheck.sh run locally. No SSH here; tests/test_precheck_fpm.py runs
precheck.sh against a real PHP-FPM pool, tests/test_zero_downtime_lab.py on real hosts."""

import os
import shlex
import signal
import subprocess
import time

import pytest

from deploy import inventory, pipeline, plan, remote
from deploy.errors import ConfigError
from deploy.operations.rollback import rollback_target
from deploy.operations.state import parse_state
from helpers import PROJECT, fab, write

INV = """
defaults:
  user: deploy
  key: /keys/id
  known_hosts: /keys/known_hosts
  fpm: {socket: /run/php/fpm.sock, reload: sudo systemctl reload php8.2-fpm}
  health_url: http://shop.example.com:8080/version
hosts:
  web1: {address: 127.0.0.1, port: 1, deploy_path: /var/www/app}
"""

BUILD = """
source: app
steps:
  - sync{sync}
  - artisan: {{commands: [config:cache]}}
  - precheck{precheck}
  - activate
  - opcache_reset
  - fpm_reload{reload}
  - verify{verify}
"""


def host(tmp_path):
    return inventory.load(write(tmp_path / "hosts" / "h.yml", INV)).select("web1")[0]


def load(tmp_path, text):
    (tmp_path / "app").mkdir(exist_ok=True)
    return pipeline.load(write(tmp_path / "playbooks" / "p.yml", text))


def steps_of(tmp_path, sync="", precheck="", reload="", verify="", strategy=None):
    text = BUILD.format(sync=sync, precheck=precheck, reload=reload, verify=verify)
    if strategy:
        text = f"strategy: {strategy}\n" + text
    return plan.deploy(host(tmp_path), load(tmp_path, text), "r2", plan.Operator("ci", "runner", 42))


def commands(steps, name):
    return [c for s in steps if s.name == name for c in s.commands]


def precheck_args(steps):
    """The arguments precheck.sh gets (after `sh -c <program> precheck.sh`)."""
    words = shlex.split(commands(steps, "precheck")[0].render(reveal=True))
    assert words[:2] == ["sh", "-c"] and words[3] == "precheck.sh"
    names = ["root", "release", "php", "fpmctl", "socket", "front", "uri", "host", "https", "status", "expect",
             "timeout", "graceful"]
    return dict(zip(names, words[4:], strict=True))


# ------------------------------------------------------------------------------------ precheck

def test_precheck_asks_the_pool_for_the_health_url_of_the_new_release(tmp_path):
    steps = steps_of(tmp_path)
    kinds = [s.kind for s in steps]
    assert kinds.index("artisan") < kinds.index("precheck") < kinds.index("activate")
    args = precheck_args(steps)
    assert args == {"root": "/var/www/app", "release": "r2", "php": "php",
                    "fpmctl": "/var/www/app/.deploy/bin/fpmctl.php", "socket": "/run/php/fpm.sock",
                    "front": "public/index.php", "uri": "/version", "host": "shop.example.com:8080", "https": "0",
                    "status": "200", "expect": "r2", "timeout": "10",
                    # fpm_reload reloads on every deploy: the reload must be graceful
                    "graceful": "1"}
    # The plan names the program by its path and hash, so a reviewer reads exactly that file.
    assert commands(steps, "precheck")[0].render().startswith(f"sh -c <{remote.label('precheck.sh')}> precheck.sh ")


def test_precheck_checks_what_verify_checks_unless_told_otherwise(tmp_path):
    args = precheck_args(steps_of(tmp_path, verify=": {url: 'https://shop.example.com/health?deep=1', status: 204, "
                                                    "expect_release: false}"))
    assert (args["uri"], args["host"], args["https"], args["status"], args["expect"]) == \
        ("/health?deep=1", "shop.example.com", "1", "204", "")
    args = precheck_args(steps_of(tmp_path, precheck=": {path: /up, expect_release: false, status: 200, timeout: 3}"))
    assert (args["uri"], args["host"], args["status"], args["expect"], args["timeout"]) == \
        ("/up", "shop.example.com:8080", "200", "", "3")
    args = precheck_args(steps_of(tmp_path, precheck=": {url: 'http://admin.example.com/ping', "
                                                      "front_controller: web/app.php}"))
    assert (args["uri"], args["host"], args["front"], args["expect"]) == ("/ping", "admin.example.com", "web/app.php", "r2")


def test_no_graceful_reload_check_unless_every_deploy_reloads(tmp_path):
    assert precheck_args(steps_of(tmp_path, reload=": {when: needed}"))["graceful"] == "0"
    assert precheck_args(steps_of(tmp_path, precheck=": {graceful_reload: false}"))["graceful"] == "0"


def test_the_default_playbook_checks_before_the_switch_and_reloads_only_when_needed():
    p = pipeline.load(PROJECT / "playbooks" / "laravel.yml")
    kinds = [s.kind for s in p.steps]
    assert kinds.index("precheck") == kinds.index("activate") - 1
    assert p.first("fpm_reload").settings["when"] == "needed"
    assert p.first("sync").settings["keep_assets"] == ["public/build"]


@pytest.mark.parametrize("setting, key, words", [
    (": {path: up}", "steps[2].precheck.path", "must be a URL path starting with /"),
    (": {path: /up, url: 'http://x/up'}", "steps[2].precheck.path", "not both"),
    (": {url: 'ftp://x/up'}", "steps[2].precheck.url", "must start with http:// or https://"),
    (": {front_controller: ../index.php}", "steps[2].precheck.front_controller", "inside the release"),
    (": {front_controller: public/index.html}", "steps[2].precheck.front_controller", ".php"),
    (": {status: 700}", "steps[2].precheck.status", "out of range"),
    (": {timeout: 0}", "steps[2].precheck.timeout", "at least 1"),
    (": {retries: 3}", "steps[2].precheck.retries", "unknown key"),
])
def test_bad_precheck_settings_name_file_line_and_key(tmp_path, setting, key, words):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, BUILD.format(sync="", precheck=setting, reload="", verify=""))
    message = str(err.value)
    assert "p.yml:5" in message and f"key '{key}'" in message and words in message, message


def test_precheck_must_be_the_last_build_step_and_needs_releases(tmp_path):
    text = BUILD.format(sync="", precheck="", reload="", verify="").replace(
        "  - activate\n", "  - ownership\n  - activate\n")
    with pytest.raises(ConfigError) as err:
        plan.deploy(host(tmp_path), load(tmp_path, text), "r2", plan.Operator("ci", "runner", 42))
    assert "p.yml:6" in str(err.value) and "'ownership' comes after 'precheck'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        steps_of(tmp_path, strategy="in-place")
    assert "p.yml:7: key 'steps[2].precheck'" in str(err.value) and "precheck needs the releases strategy" in str(err.value)


def test_a_refused_precheck_is_bad_input_before_any_host_is_contacted(tmp_path):
    # web1 is 127.0.0.1:1, where nothing listens: exit 2 proves no connection was tried first.
    inv = write(tmp_path / "hosts" / "h.yml", INV)
    (tmp_path / "app").mkdir()
    text = "strategy: in-place\n" + BUILD.format(sync="", precheck="", reload="", verify="")
    pipe = write(tmp_path / "playbooks" / "p.yml", text)
    r = fab("deploy", "--host", "web1", "--inventory", str(inv), "--pipeline", str(pipe), "--release", "r2")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "precheck needs the releases strategy" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


# ---------------------------------------------------------------------------------- fpm_reload

def test_fpm_reload_when_needed_reloads_only_if_the_pool_does_not_run_the_release(tmp_path):
    [cmd] = commands(steps_of(tmp_path, reload=": {when: needed}"), "fpm_reload")
    fpmctl = "php -n /var/www/app/.deploy/bin/fpmctl.php"
    assert cmd.render() == (
        f"if {fpmctl} verify --socket=/run/php/fpm.sock --deploy-path=/var/www/app --release=r2; then echo "
        "'no reload needed: the pool executes r2 with no stale cached script'; else sudo systemctl reload php8.2-fpm"
        f" && {fpmctl} wait --socket=/run/php/fpm.sock --deploy-path=/var/www/app --timeout=30; fi")
    # always (the default) is the plain reload
    assert [c.render() for c in commands(steps_of(tmp_path), "fpm_reload")] == [
        "sudo systemctl reload php8.2-fpm",
        f"{fpmctl} wait --socket=/run/php/fpm.sock --deploy-path=/var/www/app --timeout=30"]


def test_fpm_reload_when_needed_is_replayed_by_a_rollback(tmp_path):
    p = load(tmp_path, BUILD.format(sync="", precheck="", reload=": {when: needed}", verify=""))
    steps = plan.rollback(host(tmp_path), p, "r1", plan.Operator("ci", "runner", 42), failed="r2")
    [cmd] = commands(steps, "fpm_reload (rollback)")
    assert "verify --socket=/run/php/fpm.sock --deploy-path=/var/www/app --release=r1;" in cmd.render()
    # precheck is a build step: a rollback never runs it
    assert not any(s.kind == "precheck" for s in steps)


def test_bad_fpm_reload_when(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, BUILD.format(sync="", precheck="", reload=": {when: sometimes}", verify=""))
    assert "p.yml:8" in str(err.value) and "steps[5].fpm_reload.when" in str(err.value)


# --------------------------------------------------------------------------------- keep_assets

def test_keep_assets_runs_right_after_rsync(tmp_path):
    sync = commands(steps_of(tmp_path, sync=": {keep_assets: [public/build, public/vendor/]}"), "sync")
    assert sync[0].local and sync[0].render().startswith("rsync ")
    assert sync[1].render() == (f"sh -c <{remote.label('keep_assets.sh')}> keep_assets.sh /var/www/app r2 "
                                "public/build public/vendor")
    assert len(commands(steps_of(tmp_path), "sync")) == 1   # off by default


def test_bad_keep_assets(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, BUILD.format(sync=": {keep_assets: [../shared]}", precheck="", reload="", verify=""))
    assert "p.yml:3" in str(err.value) and "steps[0].sync.keep_assets" in str(err.value)
    text = "strategy: in-place\n" + BUILD.format(sync=": {keep_assets: [public/build]}", precheck="", reload="",
                                                 verify="").replace("  - precheck\n", "")
    with pytest.raises(ConfigError) as err:
        plan.deploy(host(tmp_path), load(tmp_path, text), "r2", plan.Operator("ci", "runner", 42))
    assert "p.yml:5: key 'steps[0].sync.keep_assets'" in str(err.value)
    assert "keep_assets needs the releases strategy" in str(err.value)


# ------------------------------------------------------------------------ keep_assets.sh, locally

def run(name, *args):
    text = remote.local_path(name).read_text()
    return subprocess.run(["sh", "-c", text, name, *map(str, args)], capture_output=True, text=True, timeout=60)


def release(root, rid, files):
    d = root / "releases" / rid
    for rel, content in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(content)
    return d


def switch(root, rid):
    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/{rid}", tmp)
    os.replace(tmp, root / "current")


def files(d):
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


def test_keep_assets_links_what_the_new_release_lacks_and_never_overwrites(tmp_path):
    r1 = release(tmp_path, "r1", {"public/build/app.111.js": "r1 app", "public/build/app.css": "r1 css",
                                  "public/build/img/logo.png": "logo", "public/index.php": "r1"})
    r2 = release(tmp_path, "r2", {"public/build/app.222.js": "r2 app", "public/build/app.css": "r2 css",
                                  "public/index.php": "r2"})
    switch(tmp_path, "r1")
    r = run("keep_assets.sh", tmp_path, "r2", "public/build", "public/missing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept 2 file(s) of r1" in r.stdout
    assert files(r2) == [".kept-assets", "public/build/app.111.js", "public/build/app.222.js", "public/build/app.css",
                         "public/build/img/logo.png", "public/index.php"]
    assert (r2 / "public/build/app.css").read_text() == "r2 css"        # the new release's own file wins
    assert (r2 / "public/index.php").read_text() == "r2"                # only the listed dirs
    assert (r2 / "public/build/app.111.js").stat().st_ino == (r1 / "public/build/app.111.js").stat().st_ino
    assert (r2 / ".kept-assets").read_text().splitlines() == ["public/build/app.111.js", "public/build/img/logo.png"]


def test_keep_assets_goes_back_one_release_only(tmp_path):
    release(tmp_path, "r1", {"public/build/app.111.js": "r1"})
    release(tmp_path, "r2", {"public/build/app.222.js": "r2"})
    switch(tmp_path, "r1")
    assert run("keep_assets.sh", tmp_path, "r2", "public/build").returncode == 0
    switch(tmp_path, "r2")
    r3 = release(tmp_path, "r3", {"public/build/app.333.js": "r3"})
    r = run("keep_assets.sh", tmp_path, "r3", "public/build")
    assert r.returncode == 0, r.stdout + r.stderr
    # r2's own asset is kept; r1's, which r2 only kept, is not carried on
    assert files(r3) == [".kept-assets", "public/build/app.222.js", "public/build/app.333.js"]


def test_keep_assets_with_nothing_live_keeps_nothing(tmp_path):
    r1 = release(tmp_path, "r1", {"public/build/app.111.js": "r1"})
    r = run("keep_assets.sh", tmp_path, "r1", "public/build")
    assert r.returncode == 0 and "no live release" in r.stdout
    assert files(r1) == ["public/build/app.111.js"]


# -------------------------------------------------------------- precheck.sh, with a stand-in fpmctl

FAKE_FPMCTL = """<?php
// Stands in for fpmctl.php: records what it was asked, then answers as told by the env.
file_put_contents(getenv('FAKE_LOG'), json_encode(['argv' => array_slice($argv, 1),
    'release' => @file_get_contents(getenv('FAKE_RELEASE'))]) . "\\n", FILE_APPEND);
usleep((int) getenv('FAKE_SLEEP_US'));
$code = (int) getenv($argv[1] === 'graceful' ? 'FAKE_GRACEFUL_EXIT' : 'FAKE_EXIT');
echo json_encode(['action' => $argv[1], 'ok' => $code === 0]), "\\n";
if ($code !== 0) {
    fwrite(STDERR, "fpmctl: HTTP 500, want 200: page titled \\"Server Error\\"\\n");
}
exit($code);
"""


@pytest.fixture
def built(tmp_path):
    root = tmp_path / "app"
    rel = release(root, "r2", {"public/index.php": "<?php"})
    (root / ".deploy" / "bin").mkdir(parents=True)
    fake = root / ".deploy" / "bin" / "fpmctl.php"
    fake.write_text(FAKE_FPMCTL)
    return root, rel, fake


def precheck(root, fake, env, graceful="0"):
    text = remote.local_path("precheck.sh").read_text()
    argv = ["sh", "-c", text, "precheck.sh", str(root), "r2", "php", str(fake), "/run/fpm.sock", "public/index.php",
            "/version?x=1", "shop.example.com", "0", "200", "r2", "5", graceful]
    return argv, {**os.environ, "FAKE_LOG": str(root / "asked.log"), "FAKE_RELEASE": str(root / "releases/r2/RELEASE"),
                  "FAKE_SLEEP_US": "0", "FAKE_EXIT": "0", "FAKE_GRACEFUL_EXIT": "0", **env}


def asked(root):
    import json
    return [json.loads(l) for l in (root / "asked.log").read_text().splitlines()]


def test_precheck_sees_the_release_id_only_while_it_runs(built):
    root, rel, fake = built
    argv, env = precheck(root, fake, {}, graceful="1")
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("pre-switch check passed: release r2 answered HTTP 200 with 'r2' in the body "
                                     "(GET /version?x=1 (Host: shop.example.com) through the pool at /run/fpm.sock)")
    request, graceful = asked(root)
    real = str(rel.resolve())
    assert request["argv"] == ["request", "--socket=/run/fpm.sock", f"--script={real}/public/index.php",
                               f"--document-root={real}/public", "--uri=/version?x=1", "--host=shop.example.com",
                               "--https=0", "--timeout=5", "--expect-status=200", "--expect-body=r2"]
    assert request["release"] == "r2\n"                    # the app can read its id during the check
    assert graceful["argv"][0] == "graceful"
    assert not (rel / "RELEASE").exists()                  # ...and the build is not "complete" after it
    assert not (root / ".deploy/bad/r2").exists()


def test_precheck_failure_says_what_the_release_answered(built):
    root, rel, fake = built
    (root / "current").symlink_to("releases/r1")
    argv, env = precheck(root, fake, {"FAKE_EXIT": "1"})
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stdout.strip().splitlines()[-1] == (
        'pre-switch check failed: release r2 answered HTTP 500, want 200: page titled "Server Error" '
        "(GET /version?x=1 (Host: shop.example.com) through the pool at /run/fpm.sock); current was not switched "
        "(still r1)")
    assert not (rel / "RELEASE").exists() and not (root / ".deploy/bad/r2").exists()
    argv, env = precheck(root, fake, {"FAKE_EXIT": "3"})
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "pre-switch check could not ask the pool" in r.stdout
    argv, env = precheck(root, fake, {"FAKE_GRACEFUL_EXIT": "1"}, graceful="1")
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "the pipeline reloads PHP-FPM after the switch and" in r.stdout


def _wait_for(path, timeout=10):
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


def test_precheck_stopped_mid_check_cleans_up(built):
    root, rel, fake = built
    argv, env = precheck(root, fake, {"FAKE_SLEEP_US": "20000000"})
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for(root / "asked.log")
    os.killpg(p.pid, signal.SIGTERM)       # what the executor's kill of a cut-off session sends first
    p.communicate(timeout=30)
    assert p.returncode == 3
    assert not (rel / "RELEASE").exists() and not (root / ".deploy/bad/r2").exists()


def test_precheck_killed_mid_check_leaves_a_build_no_rollback_picks(built):
    root, rel, fake = built
    release(root, "r1", {"RELEASE": "r1\n"})
    os.utime(root / "releases/r1/RELEASE", (time.time() - 100, time.time() - 100))
    (root / "current").symlink_to("releases/r1")
    argv, env = precheck(root, fake, {"FAKE_SLEEP_US": "20000000"})
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    _wait_for(root / "asked.log")
    os.killpg(p.pid, signal.SIGKILL)       # nothing can clean up
    p.communicate(timeout=30)
    assert (rel / "RELEASE").exists()      # r2 now looks complete...
    # The next deploy, r3, goes live, fails and is rolled back: r2 is the newest complete release
    # older than r3, but it carries a bad mark, so the rollback goes to r1.
    release(root, "r3", {"RELEASE": "r3\n"})
    switch(root, "r3")
    state = parse_state(run("state.sh", root, "releases").stdout)
    assert [(r["id"], r["complete"]) for r in state["releases"]] == [("r3", True), ("r2", True), ("r1", True)]
    assert "never live" in state["bad"]["r2"]
    assert rollback_target(state) == ("r1", "")
