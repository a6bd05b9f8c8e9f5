"""deploy/remote/gather.sh and deploy/remote/appcheck.php run locally against temp deploy paths:
no SSH, no lab. gather.sh's sections are read back with the parsers the controller uses.

Without root some parts say "not checked" (as on a host without sudo); the sections tested here
(layout, .env keys, workers, programs) work as any user.
"""

import getpass
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy import health, remote
from deploy.health import sections
from helpers import PROJECT, composer_install, wait_exec

PHP = shutil.which("php")
SECRET = "base64:c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1uZXZlci1sZWF2ZQ=="


def gather(deploy, mode="auto", keys="APP_KEY", pattern="", want="", user=None):
    me = user or getpass.getuser()
    env = {"PATH": os.environ["PATH"], "D": str(deploy), "MODE": mode, "WEB": me, "DUSER": me,
           "SOCK": str(deploy) + "/no.sock", "PHP": PHP or "php", "BIN": str(deploy) + "/.deploy/bin", "WANT": want,
           "URL": "", "URI": "", "PORT": "", "WRITABLE": "storage bootstrap/cache", "LOGLINES": "50",
           "ENVKEYS": keys, "WPATTERN": pattern, "WORKERS_SH": remote.local_path("workers.sh").read_text()}
    argv = ["sh", "-c", remote.local_path("gather.sh").read_text(), "gather.sh"]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout, health.parse(r.stdout.strip())   # stripped, as the executor keeps it


def releases_app(root, env_text=f"APP_KEY={SECRET}\n"):
    d = root / "app"
    for rel in ("r1", "r2"):
        base = d / "releases" / rel
        (base / "bootstrap" / "cache").mkdir(parents=True)
        (base / "RELEASE").write_text(rel + "\n")
        (base / "artisan").write_text("<?php sleep(300);\n")
        (base / "storage").symlink_to(d / "shared" / "storage")
        (base / ".env").symlink_to(d / "shared" / ".env")
    (d / "shared" / "storage" / "logs").mkdir(parents=True)
    if env_text is not None:
        (d / "shared" / ".env").write_text(env_text)
    switch(d, "r1")
    return d


def switch(d, rel):
    tmp = d / ".current.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(f"releases/{rel}")
    os.replace(tmp, d / "current")


@pytest.fixture
def tmp_dir():
    """A directory every user may enter (workers.sh resolves paths as they are)."""
    base = Path(subprocess.run(["mktemp", "-d", "/tmp/gather-test-XXXXXX"], capture_output=True, text=True,
                               check=True).stdout.strip())
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base)


@pytest.fixture
def processes():
    started = []

    def start(cwd, *argv):
        p = subprocess.Popen(list(argv), cwd=cwd, start_new_session=True)
        started.append(p)
        wait_exec(p.pid, argv[0])
        return p

    yield start
    for p in started:
        p.kill()
        p.wait()


def test_the_releases_layout_and_the_env_keys_never_their_values(tmp_dir):
    d = releases_app(tmp_dir, f"# APP_KEY=commented\nexport APP_KEY = \"{SECRET}\"\nAPP_KEY=second-wins-not\n"
                              "DB_PASSWORD=''\r\nMAIL_KEY=x # a comment\n")
    out, ev = gather(d, keys="APP_KEY DB_PASSWORD MAIL_KEY REDIS_PASSWORD")
    assert SECRET not in out and "second-wins-not" not in out
    assert ev["complete"] and ev["layout"]["layout"] == "releases" and ev["layout"]["real"] == str(d / "releases" / "r1")
    assert ev["layout"]["releases"] == ["r1", "r2"] and ev["layout"]["release_file"] == "r1"
    assert ev["layout"]["writable"]["storage"] == str(d / "shared" / "storage")
    assert ev["env"] == {"file": "ok", "path": str(d / "shared" / ".env"),
                         "keys": {"APP_KEY": "set", "DB_PASSWORD": "empty", "MAIL_KEY": "set"}}


@pytest.mark.parametrize("line, state", [
    ("APP_KEY=abc", "set"),
    ("APP_KEY=", "empty"),
    ("APP_KEY=\"\"", "empty"),
    ("APP_KEY=''", "empty"),
    ("APP_KEY= # nothing", "empty"),
    ("  export   APP_KEY=abc", "set"),
    ("APP_KEY='a b'  # quoted", "set"),
    ("APP_KEYS=abc", None),
    ("#APP_KEY=abc", None),
])
def test_env_lines(tmp_dir, line, state):
    d = releases_app(tmp_dir, line + "\n")
    _, ev = gather(d)
    assert ev["env"]["keys"].get("APP_KEY") == state


def test_a_dangling_or_missing_env(tmp_dir):
    d = releases_app(tmp_dir, env_text=None)
    _, ev = gather(d)
    assert ev["env"]["file"] == "dangling" and ev["env"]["path"] == str(d / "shared" / ".env")
    (d / "releases" / "r1" / ".env").unlink()
    _, ev = gather(d)
    assert ev["env"]["file"] == "missing"


@pytest.mark.skipif(not PHP, reason="php-cli runs the fake workers")
def test_workers_of_the_old_release_after_a_switch(tmp_dir, processes):
    d = releases_app(tmp_dir)
    time.sleep(0.05)
    processes(d / "releases" / "r1", PHP, str(d / "current" / "artisan"), "queue:work", "redis")
    time.sleep(0.05)
    switch(d, "r2")
    _, ev = gather(d)
    w = ev["workers"]
    assert w["rc"] == 1 and abs(w["switched"] - os.lstat(d / "current").st_mtime) < 0.01   # 1: not proven
    # (our own processes: their cwd is readable as any user)
    assert [(p["status"], p["release"]) for p in w["processes"]] == [("stale", str(d / "releases" / "r1"))]
    f = {x.check: x for x in health.evaluate(ev, _host(d), None)}["workers"]
    assert f.status == "fail" and f.remedy == "workers"
    # the process manager restarts it from current: the live release
    processes(d / "releases" / "r2", PHP, str(d / "current" / "artisan"), "queue:work", "redis")
    _, ev = gather(d)
    assert sorted(p["status"] for p in ev["workers"]["processes"]) == ["ok", "stale"]


@pytest.mark.skipif(not PHP or os.geteuid() != 0, reason="needs root (workers of another user) and php-cli")
def test_workers_of_another_user_without_root_are_unknown_and_only_warn(tmp_dir, processes):
    d = releases_app(tmp_dir)
    processes(d / "releases" / "r1", PHP, str(d / "current" / "artisan"), "queue:work")
    # current switched again after the worker started: "started after the switch through
    # current/" (what workers.sh accepts without reading the cwd) does not hold.
    time.sleep(0.05)
    link = d / "current"
    target = link.readlink()
    link.unlink()
    link.symlink_to(target)
    _, ev = gather(d, user="nobody")               # no root, no sudo: /proc/PID/cwd of root's process unreadable
    w = ev["workers"]
    assert w["as"] == "nobody" and [p["status"] for p in w["processes"]] == ["unknown"]
    f = {x.check: x for x in health.evaluate(ev, _host(d), None)}["workers"]
    assert f.status == "warn" and f.remedy is None and "cannot be told as nobody" in f.evidence


@pytest.mark.skipif(not PHP, reason="php-cli runs the fake workers")
def test_in_place_workers_started_before_the_release_was_written_are_old(tmp_dir, processes):
    d = tmp_dir / "shop"
    (d / "public").mkdir(parents=True)
    (d / "artisan").write_text("<?php sleep(300);\n")
    processes(d, PHP, str(d / "artisan"), "schedule:work")
    time.sleep(0.05)
    (d / "RELEASE").write_text("i2\n")
    _, ev = gather(d)
    assert ev["layout"]["layout"] == "in-place" and ev["env"]["file"] == "missing"
    assert [p["status"] for p in ev["workers"]["processes"]] == ["old"]
    assert abs(ev["workers"]["switched"] - (d / "RELEASE").stat().st_mtime) < 0.01


def test_the_pool_and_the_programs_run_only_when_the_hosts_copies_are_the_tools(tmp_dir):
    d = releases_app(tmp_dir)
    want = "".join(f"{remote.digest(n)}  {n}\n" for n in remote.names(remote.PHP))
    _, ev = gather(d, want=want)
    assert ev["status"] is None and ev["ping"] is None and not ev["app"]["checked"]
    assert ev["programs"]["missing"] == remote.names(remote.PHP)
    bin_dir = d / ".deploy" / "bin"
    bin_dir.mkdir(parents=True)
    for n in remote.names(remote.PHP):
        shutil.copy(remote.local_path(n), bin_dir / n)
    _, ev = gather(d, want=want)
    assert ev["programs"]["missing"] == [] and {"ping", "status"} <= set(ev["raw_sections"])
    assert ev["status"]["rc"] == 3 and ev["status"]["data"]["error_kind"] == "no_socket"   # no pool here: said so


def _host(d):
    from deploy.inventory import Fpm, Host
    return Host(name="local", address="127.0.0.1", deploy_path=str(d), user=getpass.getuser(),
                web_user=getpass.getuser(), fpm=Fpm(socket=str(d) + "/no.sock"))


# ------------------------------------------------------------------------------ appcheck.php

@pytest.fixture(scope="module")
def sample_app(tmp_path_factory):
    if not PHP or not shutil.which("composer") or not Path("/usr/share/php/Illuminate").is_dir():
        pytest.skip("needs php-cli, composer and Debian's php-laravel-framework")
    d = tmp_path_factory.mktemp("appcheck") / "app"
    shutil.copytree(PROJECT / "sample-app", d, symlinks=True)
    composer_install(d)
    return d


def appcheck(app, env_text):
    (app / ".env").write_text(env_text)
    r = subprocess.run([PHP, str(remote.local_path("appcheck.php")), "--timeout=3"], cwd=app, capture_output=True,
                       text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    return r.returncode, r.stdout, json.loads(r.stdout.splitlines()[-1])


def test_appcheck_reports_pending_migrations_from_the_apps_own_migrate_status(sample_app, tmp_path):
    db = tmp_path / "db.sqlite"
    db.touch()
    env = f"APP_KEY={SECRET}\nDB_CONNECTION=sqlite\nDB_DATABASE={db}\n"
    code, _, data = appcheck(sample_app, env)
    assert code == 0 and data["database"]["ok"] and not data["database"]["memory"] and data["redis"] == []
    # read-only: nothing written into the release (Laravel's missing manifests, a log)
    assert not list((sample_app / "bootstrap" / "cache").glob("*.php"))
    assert not list((sample_app / "storage" / "logs").glob("*.log"))
    assert sections.migrate_status(data["migrations"]["output"], data["migrations"]["rc"])["state"] == "no_table"
    subprocess.run([PHP, "artisan", "migrate", "--force"], cwd=sample_app, check=True, capture_output=True)
    extra = sample_app / "database" / "migrations" / "2030_01_01_000000_add_pending.php"
    extra.write_text((sample_app / "database" / "migrations" / "2024_01_01_000000_create_release_runs_table.php")
                     .read_text().replace("release_runs", "pending_things"))
    try:
        _, _, data = appcheck(sample_app, env)
        got = sections.migrate_status(data["migrations"]["output"], data["migrations"]["rc"])
        assert got["state"] == "table" and got["pending"] == ["2030_01_01_000000_add_pending"]
        assert got["ran"] == ["2024_01_01_000000_create_release_runs_table"]
    finally:
        extra.unlink()


def test_appcheck_names_what_is_unreachable_and_never_prints_a_secret(sample_app):
    env = (f"APP_KEY={SECRET}\nDB_CONNECTION=mysql\nDB_HOST=127.0.0.1\nDB_PORT=1\nDB_USERNAME=app\n"
           "DB_PASSWORD=hunter2-very-secret\nCACHE_DRIVER=redis\nQUEUE_CONNECTION=redis\nREDIS_PORT=1\n"
           "REDIS_PASSWORD=redis-secret-pw\n")
    code, out, data = appcheck(sample_app, env)
    assert code == 0 and not data["database"]["ok"] and "Connection refused" in data["database"]["error"]
    assert data["migrations"] is None
    assert [(r["connection"], r["used_by"], r["ok"]) for r in data["redis"]] == [("cache", ["cache"], False),
                                                                                ("default", ["queue"], False)]
    for secret in (SECRET, "hunter2-very-secret", "redis-secret-pw"):
        assert secret not in out


def test_appcheck_masks_secrets_in_errors(sample_app):
    # A DSN-style URL puts the password into the error PDO reports for an unknown host.
    env = f"APP_KEY={SECRET}\nDB_CONNECTION=mysql\nDB_HOST=no-such-host.invalid\nDB_PASSWORD=pw-in-config-1234\n"
    _, out, data = appcheck(sample_app, env)
    assert not data["database"]["ok"] and "pw-in-config-1234" not in out
    code, out, data = appcheck(sample_app, "APP_KEY=\"unterminated\nDB_PASSWORD=leak-me-9999 x y\n")
    assert "leak-me-9999" not in out


def test_appcheck_outside_an_app(tmp_path):
    if not PHP:
        pytest.skip("needs php-cli")
    r = subprocess.run([PHP, str(remote.local_path("appcheck.php"))], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and json.loads(r.stdout)["error"].startswith("no Laravel app here")
    r = subprocess.run([PHP, str(remote.local_path("appcheck.php")), "--bogus"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "usage" in r.stderr
