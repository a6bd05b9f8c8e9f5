"""The programs of deploy/remote/, run locally against temp dirs: no SSH, no root.

Lint: shellcheck (POSIX sh) and `php -l`. Without them installed these are skipped, unless
REQUIRE_LINTERS=1 (set by .ci/run), where a missing linter fails.
"""

import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from deploy import remote

SHELL = [n for n in remote.names(remote.SHELL)]
PHP = [n for n in remote.names(remote.PHP)]


def tool(name):
    if shutil.which(name):
        return name
    if os.environ.get("REQUIRE_LINTERS") == "1":
        pytest.fail(f"{name} is not installed (make deps installs it)")
    pytest.skip(f"{name} is not installed")


@pytest.mark.parametrize("name", SHELL)
def test_shell_programs_pass_shellcheck(name):
    r = subprocess.run([tool("shellcheck"), "-s", "sh", str(remote.local_path(name))], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name", PHP)
def test_php_programs_pass_php_lint(name):
    r = subprocess.run([tool("php"), "-l", str(remote.local_path(name))], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def run(name, *args, cwd=None):
    """As the host runs it: `sh -c <text> NAME ARGS`."""
    text = remote.local_path(name).read_text()
    return subprocess.run(["sh", "-c", text, name, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


def make_release(root, rid, age, complete=True):
    d = root / "releases" / rid
    d.mkdir(parents=True)
    t = time.time() - age
    if complete:
        (d / "RELEASE").write_text(rid + "\n")
        os.utime(d / "RELEASE", (t, t))   # when it was last made live
    os.utime(d, (t, t))
    return d


def layout(tmp_path, ids, current, bad=()):
    root = tmp_path / "app"
    (root / ".deploy" / "bad").mkdir(parents=True)
    for age, rid in enumerate(reversed(ids)):   # ids oldest first: the last is the newest
        make_release(root, rid, age * 10 + 10)
    (root / "current").symlink_to(f"releases/{current}")
    for b in bad:
        (root / ".deploy" / "bad" / b).write_text("failed verification\n")
    return root


def test_prune_keeps_the_newest_never_current_and_always_a_good_rollback_target(tmp_path):
    root = layout(tmp_path, ["r1", "r2", "r3", "r4", "r5", "r6"], current="r6", bad=["r5", "r4"])
    r = run("prune.sh", "releases", root, 3)
    assert r.returncode == 0, r.stderr
    left = sorted(p.name for p in (root / "releases").iterdir())
    # r6 live; r5 r4 the 2 newest besides it (both bad), r3 kept as the newest good one.
    assert left == ["r3", "r4", "r5", "r6"]
    assert "pruned r1" in r.stdout and "pruned r2" in r.stdout
    assert not (root / ".deploy" / "bad" / "r1").exists()


def test_prune_never_removes_current_even_when_it_is_the_oldest(tmp_path):
    root = layout(tmp_path, ["r1", "r2", "r3", "r4"], current="r1")
    run("prune.sh", "releases", root, 2)
    left = sorted(p.name for p in (root / "releases").iterdir())
    assert "r1" in left and "r4" in left


def test_releases_are_ordered_by_when_they_were_last_live_not_by_dir_mtime(tmp_path):
    root = layout(tmp_path, ["r1", "r2", "r3"], current="r3")
    (root / "releases" / "r1" / "junk").write_text("x")   # touches r1's dir, not its RELEASE
    (root / "releases" / "r1" / "junk").unlink()
    out = run("state.sh", root, "releases").stdout.splitlines()
    assert [l.split()[1] for l in out if l.startswith("RELEASE ")] == ["r3", "r2", "r1"]
    # A rollback to r1 makes it the most recently live one.
    (root / "releases" / "r1" / "RELEASE").write_text("r1\n")
    out = run("state.sh", root, "releases").stdout.splitlines()
    assert [l.split()[1] for l in out if l.startswith("RELEASE ")][0] == "r1"


def test_prune_snapshots_keeps_keep_minus_one(tmp_path):
    snaps = tmp_path / "app" / ".deploy" / "snapshots"
    for age, sid in enumerate(["s5", "s4", "s3", "s2", "s1"]):
        d = snaps / sid
        d.mkdir(parents=True)
        t = time.time() - age * 10
        os.utime(d, (t, t))
    run("prune.sh", "snapshots", tmp_path / "app", 3)
    assert sorted(p.name for p in snaps.iterdir()) == ["s4", "s5"]


def test_discard_removes_a_build_but_never_the_live_release(tmp_path):
    root = layout(tmp_path, ["r1", "r2"], current="r1")
    r = run("discard.sh", root, "r1")
    assert r.returncode == 77 and "is live: not removed" in r.stdout
    assert (root / "releases" / "r1").is_dir()
    r = run("discard.sh", root, "r2")
    assert r.returncode == 0 and not (root / "releases" / "r2").exists()


def test_state_lists_current_releases_bad_marks_lock_and_history(tmp_path):
    root = layout(tmp_path, ["r1", "r2"], current="r2", bad=["r1"])
    make_release(root, "r3", 1, complete=False)
    (root / ".deploy" / "lock").mkdir()
    (root / ".deploy" / "lock" / "info").write_text('{"user": "ci"}\n2026-01-01T00:00:00Z\n')
    (root / ".deploy" / "history.jsonl").write_text('{"action": "deploy"}\n')
    out = run("state.sh", root, "releases").stdout.splitlines()
    assert out[0] == "CURRENT releases/r2"
    releases = [l.split() for l in out if l.startswith("RELEASE ")]
    assert [r[1] for r in releases] == ["r3", "r2", "r1"]
    assert [r[3] for r in releases] == ["incomplete", "complete", "complete"]
    assert "BAD r1 failed verification " in out
    lock = next(l for l in out if l.startswith("LOCK "))
    assert '{"user": "ci"}' in lock and lock.rstrip().endswith("s") and " AGE " in lock
    assert 'HISTORY {"action": "deploy"}' in out
    assert run("state.sh", tmp_path / "nope", "releases").stdout.strip() == "NOPATH"


def test_snapshot_take_and_restore_keep_storage_env_and_the_tool_dir(tmp_path):
    root = tmp_path / "live"
    (root / "app").mkdir(parents=True)
    (root / "bootstrap" / "cache").mkdir(parents=True)
    (root / "storage").mkdir()
    (root / ".deploy").mkdir()
    (root / "RELEASE").write_text("v1\n")
    (root / "app" / "code.php").write_text("v1")
    (root / "bootstrap" / "cache" / "config.php").write_text("cached v1")
    (root / "storage" / "log").write_text("log")
    (root / ".env").write_text("APP_KEY=x")
    r = run("snapshot.sh", "take", root)
    assert r.returncode == 0 and "snapshot of v1 taken" in r.stdout, r.stdout + r.stderr
    snap = root / ".deploy" / "snapshots" / "v1"
    assert (snap / "app" / "code.php").stat().st_ino == (root / "app" / "code.php").stat().st_ino  # hard link
    assert (snap / "bootstrap" / "cache" / "config.php").stat().st_ino != (root / "bootstrap" / "cache" / "config.php").stat().st_ino
    assert not (snap / "storage").exists() and not (snap / ".env").exists() and not (snap / ".deploy").exists()
    # The next deploy changes the tree (by rename, as rsync does) and the storage.
    new = root / "app" / "code.php.new"
    new.write_text("v2")
    new.rename(root / "app" / "code.php")
    (root / "RELEASE.tmp").write_text("v2\n")   # by rename, as sync writes it: the snapshot links RELEASE
    (root / "RELEASE.tmp").rename(root / "RELEASE")
    (root / "app" / "added.php").write_text("new file")
    (root / "storage" / "log").write_text("log, later")
    r = run("snapshot.sh", "restore", root, "v1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (root / "app" / "code.php").read_text() == "v1" and (root / "RELEASE").read_text() == "v1\n"
    assert not (root / "app" / "added.php").exists()
    assert (root / "storage" / "log").read_text() == "log, later" and (root / ".env").read_text() == "APP_KEY=x"
    assert run("snapshot.sh", "restore", root, "nope").returncode == 1


class _Handler(http.server.BaseHTTPRequestHandler):
    answers = {}

    def do_GET(self):
        status, body = self.answers.get(self.path, (404, "no"))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


@pytest.fixture
def http_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_verify_passes_on_status_and_release_in_the_body(tmp_path, http_server):
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    _Handler.answers = {"/version": (200, "r42\n"), "/old": (200, "r41\n"), "/broken": (500, "oops")}
    r = run("verify.sh", http_server + "/version", 200, "r42", 5, 0.2, tmp_path / "body")
    assert r.returncode == 0 and "verified: HTTP 200" in r.stdout
    assert not (tmp_path / "body").exists()
    r = run("verify.sh", http_server + "/old", 200, "r42", 2, 0.2, tmp_path / "body")
    assert r.returncode == 1 and "does not contain release r42" in r.stdout and "after 2s" in r.stdout
    r = run("verify.sh", http_server + "/broken", 200, "", 1, 0.2, tmp_path / "body")
    assert r.returncode == 1 and "HTTP 500, want 200" in r.stdout and "oops" in r.stdout
    r = run("verify.sh", http_server + "/old", 200, "", 1, 0.2, tmp_path / "body")
    assert r.returncode == 0
