"""deploy/remote/fpmctl.php against a real PHP-FPM pool.

Each test starts its own php-fpm master (one static worker, OPcache on, validate_timestamps=0,
as in production) under /srv/fpmtest-<random>, never under /tmp: the pool user must be able to
read the probe files, and a real FPM may run with PrivateTmp. Files of the fake app get an mtime
in the past: OPcache refuses to cache a file modified less than opcache.file_update_protection
(2 s) ago, which would hide the very staleness these tests are about.
"""

import grp
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FPMCTL = REPO / "deploy" / "remote" / "fpmctl.php"
FPM_BIN = shutil.which("php-fpm8.2") or shutil.which("php-fpm")
PHP_BIN = shutil.which("php")
POOL_USER = "www-data"


def _have_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not FPM_BIN or not PHP_BIN or not _have_user(POOL_USER),
    reason="needs root, php-fpm8.2, php-cli and the www-data user (starts a real FPM pool)",
)

PAST = time.time() - 3600  # older than file_update_protection, so OPcache caches the files


@dataclass
class Pool:
    root: Path
    sock: Path
    deploy: Path
    pidfile: Path
    log: Path

    def release(self, name):
        return self.deploy / "releases" / name

    def script(self, release):
        return str(self.release(release) / "public" / "index.php")

    def switch(self, release):
        """Atomic switch of current, as a deploy does it: new symlink, then rename over."""
        tmp = self.deploy / "current.tmp"
        os.symlink(f"releases/{release}", tmp)
        os.replace(tmp, self.deploy / "current")

    def probes_left(self):
        return sorted(str(p) for p in self.root.rglob("probe-*.php"))


@dataclass
class Result:
    code: int
    data: dict
    stderr: str
    elapsed: float


def fpmctl(action, *args, sock=None, deploy=None, user=None, timeout=30):
    argv = [PHP_BIN, str(FPMCTL), action]
    if sock is not None:
        argv.append(f"--socket={sock}")
    if deploy is not None:
        argv.append(f"--deploy-path={deploy}")
    argv += list(args)
    if user is not None:
        # A non-root deploy user: uid/gid given, no supplementary groups.
        argv = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups"] + argv
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    lines = p.stdout.splitlines()
    assert len(lines) == 1, f"expected exactly one JSON line on stdout, got {p.stdout!r} (stderr {p.stderr!r})"
    return Result(p.returncode, json.loads(lines[0]), p.stderr, elapsed)


def ctl(pool, action, *args, **kw):
    return fpmctl(action, *args, sock=pool.sock, deploy=pool.deploy, **kw)


def serve(pool, script):
    """What the pool executes for SCRIPT_FILENAME=script (as nginx would send it)."""
    r = fpmctl("request", f"--script={script}", sock=pool.sock)
    assert r.code == 0, r
    return r.data["body"]


def write_past(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (PAST, PAST))


def make_app(deploy):
    for rel in ("r1", "r2"):
        base = deploy / "releases" / rel
        write_past(base / "RELEASE", f"{rel}\n")
        write_past(base / "public" / "index.php", "<?php require __DIR__ . '/../src/v.php'; echo V;\n")
        write_past(base / "src" / "v.php", f"<?php const V = 'v1-{rel}';\n")
        (base / "storage").mkdir(mode=0o755)
        (base / "bootstrap" / "cache").mkdir(mode=0o755, parents=True)
    os.symlink("releases/r1", deploy / "current")


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _wait_socket(sock, log, deadline):
    while time.monotonic() < deadline:
        if sock.exists():
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(sock))
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise AssertionError(f"FPM socket {sock} never answered; log:\n{log.read_text() if log.exists() else ''}")


@pytest.fixture
def make_pool():
    """Factory: start a php-fpm master with static www-data workers (one by default: OPcache
    checks stay deterministic); stopped by its pid file and removed after the test."""
    started = []

    def start(opcache=True, sock=None, root=None, children=1, extra=""):
        root = root or Path(f"/srv/fpmtest-{secrets.token_hex(4)}")
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(root, 0o755)  # www-data must traverse it to reach the app and the probe files
        deploy = root / "app"
        deploy.mkdir(mode=0o755)
        make_app(deploy)
        pool = Pool(root, Path(sock) if sock else root / "php.sock", deploy, root / "fpm.pid", root / "fpm.log")
        conf = root / "fpm.conf"
        conf.write_text(f"""[global]
pid = {pool.pidfile}
error_log = {pool.log}
daemonize = yes

[fpmtest]
user = {POOL_USER}
group = {POOL_USER}
listen = {pool.sock}
listen.owner = {POOL_USER}
listen.group = {POOL_USER}
listen.mode = 0660
pm = static
pm.max_children = {children}
ping.path = /fpm-ping
php_admin_value[opcache.enable] = {1 if opcache else 0}
php_admin_value[opcache.validate_timestamps] = 0
{extra}
""")
        started.append(pool)
        p = subprocess.run([FPM_BIN, "-y", str(conf)], capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, f"php-fpm failed to start: {p.stderr}"
        _wait_socket(pool.sock, pool.log, time.monotonic() + 10)
        return pool

    yield start

    for pool in started:
        if pool.pidfile.exists():
            pid = int(pool.pidfile.read_text().strip())
            os.kill(pid, signal.SIGQUIT)  # graceful: the master stops its worker, then itself
            deadline = time.monotonic() + 5
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        left = pool.probes_left()
        shutil.rmtree(pool.root, ignore_errors=True)
        assert not left, f"probe files left behind: {left}"


@pytest.fixture
def pool(make_pool):
    return make_pool()


# --- 1. status -------------------------------------------------------------------------------

def test_status_reports_live_release_pool_user_and_writability(pool):
    r = ctl(pool, "status")
    assert r.code == 0, r
    s = r.data
    assert s["ok"] is True and s["action"] == "status"
    assert s["release"] == "r1" and s["release_dir"] == "r1"
    assert s["current_realpath"] == str(pool.release("r1"))
    assert s["user"] == POOL_USER and s["uid"] == pwd.getpwnam(POOL_USER).pw_uid
    assert s["sapi"] == "fpm-fcgi"  # answered by the pool, not by the CLI
    assert s["opcache"]["enabled"] is True
    assert s["opcache"]["validate_timestamps"] is False
    assert "scripts" not in s["opcache"]  # only counts leave the pool
    # root-owned 0755 dirs: present, but the pool user cannot write them (Laravel would 500)
    assert s["writable"] == {"storage": False, "bootstrap/cache": False}
    assert all(d["exists"] for d in s["writable_dirs"].values())
    assert pool.probes_left() == []

    rel = pool.release("r1")
    for d in (rel / "storage", rel / "bootstrap" / "cache"):
        for opts in (["-R", "-m"], ["-R", "-d", "-m"]):  # access ACL, then default ACL for new files
            subprocess.run(["setfacl", *opts, f"u:{POOL_USER}:rwX", str(d)], check=True)
    s = ctl(pool, "status").data
    assert s["writable"] == {"storage": True, "bootstrap/cache": True}
    assert all(d["created"] and d["error"] is None for d in s["writable_dirs"].values())
    # the write test cleaned up after itself
    assert list((rel / "storage").iterdir()) == [] and list((rel / "bootstrap" / "cache").iterdir()) == []


# --- 2. the incident -------------------------------------------------------------------------

def test_incident_cli_reset_misses_the_pool_fpmctl_reset_fixes_it(pool):
    script = pool.script("r1")
    assert serve(pool, script) == "v1-r1"

    # The hot fix: edited in place. Its mtime is put in the past so that file_update_protection
    # cannot be the reason a new version shows (docs/why.md).
    write_past(pool.release("r1") / "src" / "v.php", "<?php const V = 'v2-r1';\n")
    assert serve(pool, script) == "v1-r1", "validate_timestamps=0: the pool must keep the cached code"

    # What the incident report did: reset OPcache from the CLI. The CLI has its own (or none).
    cli = subprocess.run([PHP_BIN, "-r", "var_dump(opcache_reset());"], capture_output=True, text=True, check=True)
    assert cli.stdout.strip() == "bool(false)"  # opcache.enable_cli=0: nothing to reset
    cli = subprocess.run([PHP_BIN, "-d", "opcache.enable_cli=1", "-r", "var_dump(opcache_reset());"],
                         capture_output=True, text=True, check=True)
    assert cli.stdout.strip() == "bool(true)"  # a CLI OPcache was reset... but it is not the pool's
    assert serve(pool, script) == "v1-r1", "a CLI reset must not reach the pool"

    r = ctl(pool, "reset")
    assert r.code == 0, r
    assert r.data["reset"] is True
    before, after = r.data["before"], r.data["after"]
    assert after["manual_restarts"] == before["manual_restarts"] + 1
    assert after["last_restart_time"] >= before["last_restart_time"]
    assert before["num_cached_scripts"] >= 2 and after["num_cached_scripts"] == 0
    assert r.data["status"]["opcache"]["restart_pending"] is False
    assert serve(pool, script) == "v2-r1"
    assert pool.probes_left() == []


# --- 3. stale scripts per release ------------------------------------------------------------

def test_stale_scripts_of_the_previous_release_are_counted_until_reset(pool):
    current = str(pool.deploy / "current" / "public" / "index.php")
    assert serve(pool, current) == "v1-r1"  # nginx with $document_root: the unresolved path
    s = ctl(pool, "status").data["opcache"]
    # OPcache keys the resolved path: nothing is cached under current/
    assert s["cached_by_release"] == {"r1": 2} and s["cached_under_current"] == 0 and s["stale_scripts"] == 0

    pool.switch("r2")
    # The worker's realpath cache still resolves current/ to r1: the symlink half of the incident.
    assert serve(pool, current) == "v1-r1"
    assert serve(pool, pool.script("r2")) == "v1-r2"  # nginx with $realpath_root
    st = ctl(pool, "status").data
    assert st["release"] == "r2"
    assert st["realpath_cache_current"]["realpath"] == str(pool.release("r1"))
    assert st["realpath_cache_current"]["stale"] is True
    assert st["opcache"]["cached_by_release"] == {"r1": 2, "r2": 2}
    assert st["opcache"]["stale_scripts"] == 2
    assert st["opcache"]["cached_probe"] == 0 and st["opcache"]["probe_cached"] is False

    r = ctl(pool, "reset")
    assert r.code == 0 and r.data["reset"] is True, r
    assert serve(pool, pool.script("r2")) == "v1-r2"
    s = ctl(pool, "status").data["opcache"]
    assert s["stale_scripts"] == 0 and s["cached_by_release"] == {"r2": 2}
    # OPcache's restart also empties each worker's realpath cache: current/ resolves anew.
    assert serve(pool, current) == "v1-r2"


# --- 4. errors -------------------------------------------------------------------------------

def test_missing_socket_is_exit_3_with_a_clear_message(pool):
    r = fpmctl("status", sock=pool.root / "nope.sock", deploy=pool.deploy)
    assert r.code == 3
    assert r.data["ok"] is False and r.data["error_kind"] == "no_socket"
    assert "no such socket" in r.data["error"] and "nope.sock" in r.data["error"]
    assert "no such socket" in r.stderr
    assert pool.probes_left() == []


def test_refused_socket_is_exit_3(pool):
    dead = pool.root / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))  # the file stays, nobody listens: what a crashed master leaves
    s.close()
    r = fpmctl("ping", sock=dead, deploy=pool.deploy)
    assert r.code == 3 and r.data["error_kind"] == "refused", r
    assert "refused" in r.data["error"]
    assert pool.probes_left() == []


def test_probe_dir_the_pool_cannot_read_is_exit_3_and_the_probe_is_removed(pool):
    private = pool.root / "private"
    private.mkdir(mode=0o700)  # root-only: www-data cannot traverse it
    for action in ("status", "reset", "ping"):
        r = ctl(pool, action, f"--probe-dir={private}")
        assert r.code == 3, r
        assert r.data["error_kind"] == "script_unreadable"
        assert "could not read" in r.data["error"] and "Primary script unknown" in r.data["error"]
        assert r.data["status"] == 404
        assert list(private.iterdir()) == [], "the probe file must be removed on error"


def test_socket_permission_denied_for_a_deploy_user_outside_the_listen_group(pool):
    nobody = pwd.getpwnam("nobody")
    r = ctl(pool, "ping", "--ping-path=/fpm-ping", user=(nobody.pw_uid, nobody.pw_gid))
    assert r.code == 3 and r.data["error_kind"] == "socket_permission", r
    assert "permission denied on the socket" in r.data["error"]


def test_a_non_root_deploy_user_in_the_listen_group_can_probe(pool):
    nobody = pwd.getpwnam("nobody").pw_uid
    www = grp.getgrnam(POOL_USER).gr_gid
    probe_dir = pool.deploy / ".deploy" / "probe"
    probe_dir.parent.mkdir(mode=0o755)
    probe_dir.mkdir(mode=0o755)
    os.chown(probe_dir, nobody, www)
    r = ctl(pool, "status", user=(nobody, www))
    assert r.code == 0, r
    assert r.data["release"] == "r1" and r.data["user"] == POOL_USER
    assert pool.probes_left() == []


def test_probe_dir_the_deploy_user_cannot_write_is_exit_3(pool):
    nobody = pwd.getpwnam("nobody").pw_uid
    www = grp.getgrnam(POOL_USER).gr_gid
    r = ctl(pool, "status", f"--probe-dir={pool.root / 'rootonly'}", user=(nobody, www))
    assert r.code == 3 and r.data["error_kind"] == "probe_write", r


def test_default_probe_dir_is_created_0755(pool):
    r = ctl(pool, "ping")
    assert r.code == 0 and r.data["via"] == "probe", r
    for d in (pool.deploy / ".deploy", pool.deploy / ".deploy" / "probe"):
        assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o755


def test_usage_errors_are_exit_2():
    assert fpmctl("frobnicate", sock="/x", deploy="/").code == 2
    assert fpmctl("status", deploy="/").code == 2  # no --socket
    assert fpmctl("status", sock="/x").code == 2  # no --deploy-path
    assert fpmctl("status", "--timeout=abc", sock="/x", deploy="/").code == 2
    assert fpmctl("status", "--bogus=1", sock="/x", deploy="/").code == 2
    r = fpmctl("status", sock="/x", deploy="/nonexistent-deploy-path")
    assert r.code == 2 and "does not exist" in r.data["error"]


# --- 5. ping / wait --------------------------------------------------------------------------

def test_ping_via_probe_and_via_ping_path(pool):
    r = ctl(pool, "ping")
    assert r.code == 0 and r.data["via"] == "probe" and isinstance(r.data["pid"], int), r
    r = fpmctl("ping", "--ping-path=/fpm-ping", sock=pool.sock)
    assert r.code == 0 and r.data == {**r.data, "via": "ping.path", "body": "pong"}, r
    r = fpmctl("ping", "--ping-path=/not-the-ping-path", sock=pool.sock)
    assert r.code == 3 and "no such ping.path" in r.data["error"], r


def test_wait_returns_at_once_on_a_live_pool(pool):
    r = ctl(pool, "wait", "--timeout=5")
    assert r.code == 0 and r.data["attempts"] == 1, r
    assert r.elapsed < 2


def test_wait_gives_up_within_its_timeout_on_a_dead_socket(pool):
    r = fpmctl("wait", "--timeout=1", sock=pool.root / "gone.sock", deploy=pool.deploy)
    assert r.code == 3 and r.data["error_kind"] == "no_socket", r
    assert r.data["attempts"] > 1  # it did retry
    assert 0.8 < r.elapsed < 3
    assert pool.probes_left() == []


def test_wait_succeeds_once_a_late_pool_comes_up(make_pool):
    root = Path(f"/srv/fpmtest-{secrets.token_hex(4)}")
    root.mkdir(mode=0o755)
    os.chmod(root, 0o755)
    deploy = root / "waitapp"
    deploy.mkdir(mode=0o755)
    waiter = subprocess.Popen([PHP_BIN, str(FPMCTL), "wait", f"--socket={root / 'php.sock'}",
                               f"--deploy-path={deploy}", "--timeout=10"], stdout=subprocess.PIPE, text=True)
    try:
        # The socket does not exist yet: wait must keep trying. Longer than
        # file_update_protection (2 s), so an ordinary probe file would be old enough to be
        # cached by the time the pool executes it.
        time.sleep(2.5)
        pool = make_pool(root=root)
        out, _ = waiter.communicate(timeout=15)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    data = json.loads(out)
    assert waiter.returncode == 0, data
    assert data["attempts"] > 1
    assert list((deploy / ".deploy" / "probe").iterdir()) == []
    # The probe must not take a slot in the pool's OPcache (it is written with a future mtime).
    s = fpmctl("status", sock=pool.sock, deploy=deploy).data["opcache"]
    assert s["cached_probe"] == 0 and s["num_cached_scripts"] == 0, s


# --- OPcache off in the pool -----------------------------------------------------------------

def test_reset_with_opcache_disabled_is_not_a_failure(make_pool):
    pool = make_pool(opcache=False)
    s = ctl(pool, "status")
    assert s.code == 0 and s.data["opcache"]["enabled"] is False and s.data["opcache"]["manual_restarts"] is None
    r = ctl(pool, "reset")
    assert r.code == 0, r
    assert r.data["reset"] is None and "opcache disabled" in r.data["reason"]


# --- a reset that cannot complete -----------------------------------------------------------

def test_reset_fails_with_exit_1_while_a_long_request_blocks_the_restart(make_pool):
    # OPcache restarts only when no request is running. Two workers: one busy for 3 s, the other
    # answers fpmctl. The reset stays pending past fpmctl's ~1 s window: a failed check.
    pool = make_pool(children=2)
    write_past(pool.release("r1") / "public" / "slow.php", "<?php sleep(3); echo 'slow';\n")
    slow = subprocess.Popen([PHP_BIN, str(FPMCTL), "request", f"--socket={pool.sock}",
                             f"--script={pool.release('r1') / 'public' / 'slow.php'}", "--timeout=10"],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        r = ctl(pool, "reset")
        assert r.code == 1, r
        assert r.data["reset"] is False and r.data["ok"] is False
        assert r.data["after"]["restart_pending"] is True
        assert r.data["after"]["manual_restarts"] == r.data["before"]["manual_restarts"]
        assert "restart" in r.data["reason"] and r.data["attempts"] > 1
        out, _ = slow.communicate(timeout=10)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert json.loads(out)["body"] == "slow"
    # Once the long request is gone the pending restart happens on the next request.
    s = ctl(pool, "status").data["opcache"]
    assert s["restart_pending"] is False and s["manual_restarts"] == r.data["before"]["manual_restarts"] + 1


def test_reset_fails_when_the_pool_restricts_the_opcache_api(make_pool):
    # OPcache is on but opcache.restrict_api excludes the probe: "cannot reset" is a failure,
    # unlike "OPcache off".
    pool = make_pool(extra="php_admin_value[opcache.restrict_api] = /nonexistent-dir/")
    r = ctl(pool, "reset")
    assert r.code == 1, r
    assert r.data["reset"] is False and "restrict_api" in r.data["reason"]
    assert r.data["status"]["opcache"]["api_restricted"] is True
