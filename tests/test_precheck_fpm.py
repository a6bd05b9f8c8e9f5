"""fpmctl.php `request` with nginx's params and `graceful`, and precheck.sh, against a real PHP-FPM
pool (the pools of tests/test_fpmctl.py: own master, www-data worker, OPCache on). No SSH."""

import json
import subprocess

import pytest

from deploy import remote
from test_fpmctl import FPMCTL, PHP_BIN, fpmctl, make_pool, pytestmark, write_past  # noqa: F401 (fixture, skip mark)

SERVER_DUMP = """<?php
header('Content-Type: application/json');
$keys = ['SCRIPT_FILENAME', 'SCRIPT_NAME', 'DOCUMENT_ROOT', 'DOCUMENT_URI', 'REQUEST_URI', 'QUERY_STRING',
         'HTTP_HOST', 'SERVER_NAME', 'SERVER_PORT', 'HTTPS', 'REQUEST_SCHEME', 'REQUEST_METHOD'];
echo json_encode(['server' => array_intersect_key($_SERVER, array_flip($keys)), 'get' => $_GET,
                  'release' => @file_get_contents(__DIR__ . '/../RELEASE'), 'user' => posix_getpwuid(posix_geteuid())['name']]);
"""


@pytest.fixture
def pool(make_pool):
    p = make_pool()
    write_past(p.release("r2") / "public" / "index.php", SERVER_DUMP)
    return p


def test_request_sends_the_params_nginx_sends_through_a_front_controller(pool):
    root = pool.release("r2") / "public"
    r = fpmctl("request", f"--socket={pool.sock}", f"--script={root}/index.php", f"--document-root={root}",
               "--uri=/up?deep=1&x=%2F", "--host=shop.example.com:8443", "--https=1")
    assert r.code == 0, r
    answer = json.loads(r.data["body"])
    assert answer["server"] == {
        "SCRIPT_FILENAME": f"{root}/index.php", "SCRIPT_NAME": "/index.php", "DOCUMENT_ROOT": str(root),
        "DOCUMENT_URI": "/index.php", "REQUEST_URI": "/up?deep=1&x=%2F", "QUERY_STRING": "deep=1&x=%2F",
        "HTTP_HOST": "shop.example.com:8443", "SERVER_NAME": "shop.example.com", "SERVER_PORT": "8443",
        "HTTPS": "on", "REQUEST_SCHEME": "https", "REQUEST_METHOD": "GET"}
    assert answer["get"] == {"deep": "1", "x": "/"}
    assert answer["user"] == "www-data"      # executed by the pool, as the pool user


def test_request_as_a_check_exits_1_with_a_reason(pool):
    root = pool.release("r2") / "public"
    base = ["request", f"--socket={pool.sock}", f"--script={root}/index.php", f"--document-root={root}", "--uri=/"]
    assert fpmctl(*base, "--expect-status=200", "--expect-body=REQUEST_URI").code == 0
    r = fpmctl(*base, "--expect-status=200", "--expect-body=no such text")
    assert r.code == 1 and r.data["reason"].startswith("HTTP 200 but the body does not contain 'no such text': {")
    r = fpmctl(*base, "--expect-status=204")
    assert r.code == 1 and r.data["reason"].startswith("HTTP 200, want 204: {")
    r = fpmctl(*base, "--expect-status=abc")
    assert r.code == 2 and "--expect-status" in r.data["error"]
    r = fpmctl("request", f"--socket={pool.sock}", "--script=/elsewhere/index.php", f"--document-root={root}")
    assert r.code == 2 and "--script must be under --document-root" in r.data["error"]


def test_graceful_reads_the_masters_process_control_timeout(pool):
    r = fpmctl("graceful", f"--socket={pool.sock}", f"--deploy-path={pool.deploy}")
    # The pool's config has none: FPM's default 0, a reload kills requests in flight.
    assert r.code == 1, r
    assert r.data["config"] == str(pool.root / "fpm.conf") and r.data["process_control_timeout"] == 0
    assert "set process_control_timeout = 10s in its [global] section" in r.data["reason"]
    conf = pool.root / "fpm.conf"
    conf.write_text(conf.read_text().replace("daemonize = yes\n", "daemonize = yes\nprocess_control_timeout = 1m ; long\n"))
    r = fpmctl("graceful", f"--socket={pool.sock}", f"--deploy-path={pool.deploy}")
    assert r.code == 0 and r.data["process_control_timeout"] == 60 and r.data["checked"] is True, r


def precheck(pool, release, uri="/", expect=None, status="200"):
    text = remote.local_path("precheck.sh").read_text()
    argv = ["sh", "-c", text, "precheck.sh", str(pool.deploy), release, PHP_BIN, str(FPMCTL), str(pool.sock),
            "public/index.php", uri, "shop.example.com", "0", status, release if expect is None else expect, "5", "0"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_precheck_runs_the_new_release_in_the_pool_with_its_id(pool):
    # current -> r1; r2 is the new build, never switched to.
    (pool.release("r2") / "RELEASE").unlink()
    r = precheck(pool, "r2", uri="/version")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pre-switch check passed: release r2 answered HTTP 200 with 'r2' in the body" in r.stdout
    assert not (pool.release("r2") / "RELEASE").exists()
    assert (pool.deploy / "current").readlink().as_posix() == "releases/r1"


def test_precheck_rejects_a_release_that_throws(pool):
    write_past(pool.release("r2") / "public" / "index.php", "<?php throw new RuntimeException('boom');\n")
    (pool.release("r2") / "RELEASE").unlink()
    r = precheck(pool, "r2")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("pre-switch check failed: release r2 answered HTTP 500, want 200")
    assert r.stdout.strip().endswith("current was not switched (still r1)")
    assert not (pool.release("r2") / "RELEASE").exists()
