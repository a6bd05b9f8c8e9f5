"""The stale-script rule, once (deploy/remote/probe.php), against a real PHP-FPM pool: fpmctl
status reports it for the live code (what `fpmctl verify` fails on) and for every script the
pool cached (what `fab health` reports), and the pool's error log on request.

The pool is tests/test_fpmctl.py's: one static www-data worker, OPcache on, validate_timestamps=0.
"""

import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from test_fpmctl import FPMCTL, PHP_BIN, ctl, fpmctl, make_pool, pool, serve, write_past  # noqa: F401 (fixtures)


def edit(path, text):
    """A new version of a file the pool cached, as an editor writes it (new file, renamed over).
    Its mtime must be later than the second OPcache was last cleared (the rule compares whole
    seconds), hence the pause."""
    time.sleep(1.1)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_a_live_script_changed_on_disk_counts_in_both_scopes_and_fails_verify(pool):
    assert serve(pool, pool.script("r1")) == "v1-r1"
    st = ctl(pool, "status").data["opcache"]
    assert st["changed_scripts"] == 0 and st["changed_cached"]["changed_count"] == 0
    assert st["changed_cached"]["checked"] == 2                       # index.php and src/v.php of r1
    assert ctl(pool, "verify", "--release=r1").code == 0

    edit(pool.release("r1") / "src" / "v.php", "<?php const V = 'v2-r1';\n")
    assert serve(pool, pool.script("r1")) == "v1-r1"                  # validate_timestamps=0: old code
    st = ctl(pool, "status").data["opcache"]
    changed = str(pool.release("r1") / "src" / "v.php")
    assert st["changed_scripts"] == 1 and st["changed_examples"] == [changed]
    c = st["changed_cached"]
    assert c["changed_count"] == 1 and c["changed"][0]["path"] == changed and c["changed"][0]["why"] == "modified"
    assert c["epoch"] >= c["start_time"] and c["validate_timestamps"] is False
    r = ctl(pool, "verify", "--release=r1")
    assert r.code == 1 and "the pool runs stale code: 1 cached script(s) changed on disk" in r.data["reason"]

    assert ctl(pool, "reset").code == 0
    assert serve(pool, pool.script("r1")) == "v2-r1"
    st = ctl(pool, "status").data["opcache"]
    assert st["changed_scripts"] == 0 and st["changed_cached"]["changed_count"] == 0


def test_code_outside_the_live_release_counts_for_health_not_for_verify(pool):
    """A library the app includes from outside the deploy path: health sees it changed; verify
    (the live code only) does not fail a deploy for it."""
    lib = pool.root / "lib" / "l.php"
    write_past(lib, "<?php const L = 'l1';\n")
    os.chmod(lib.parent, 0o755)
    write_past(pool.release("r1") / "public" / "lib.php", f"<?php require '{lib}'; echo L;\n")
    assert serve(pool, str(pool.release("r1") / "public" / "lib.php")) == "l1"
    edit(lib, "<?php const L = 'l2';\n")
    st = ctl(pool, "status").data["opcache"]
    assert st["changed_scripts"] == 0
    assert [c["path"] for c in st["changed_cached"]["changed"]] == [str(lib)]
    assert ctl(pool, "verify", "--release=r1").code == 0


def test_other_releases_and_deleted_files(pool):
    assert serve(pool, pool.script("r1")) == "v1-r1"
    pool.switch("r2")
    assert serve(pool, pool.script("r2")) == "v1-r2"
    # r1 is no longer live: its files changing (or a pruned release vanishing) is not stale code
    edit(pool.release("r1") / "src" / "v.php", "<?php const V = 'x';\n")
    st = ctl(pool, "status").data["opcache"]
    assert st["changed_cached"]["changed_count"] == 0 and st["stale_scripts"] == 2
    # a live file deleted from under the pool: deleted, in both scopes
    (pool.release("r2") / "src" / "v.php").unlink()
    st = ctl(pool, "status").data["opcache"]
    assert st["changed_scripts"] == 1
    assert [(c["why"], c["mtime"]) for c in st["changed_cached"]["changed"]] == [("deleted", None)]


def test_log_tail_reads_the_pools_error_log_as_the_pool_user(make_pool):
    root = Path(f"/srv/fpmtest-{secrets.token_hex(4)}")
    root.mkdir(mode=0o755)
    log = root / "php-errors.log"
    log.touch()
    shutil.chown(log, "www-data", "www-data")
    pool = make_pool(root=root, extra=f"php_admin_value[error_log] = {log}\nphp_admin_flag[log_errors] = on")
    write_past(pool.release("r1") / "public" / "warn.php",
               "<?php trigger_error('health-test-warning', E_USER_WARNING); echo 'x';\n")
    serve(pool, str(pool.release("r1") / "public" / "warn.php"))
    st = ctl(pool, "status", "--log-tail=4096").data
    assert st["error_log"] == str(log) and "health-test-warning" in st["error_log_tail"]
    assert ctl(pool, "status").data["error_log_tail"] is None          # only on request
    bad = ctl(pool, "status", "--log-tail=lots")
    assert bad.code == 2 and "--log-tail" in bad.data["error"]


def test_fpmctl_needs_its_probe_and_its_client_next_to_it(pool, tmp_path):
    alone = tmp_path / "fpmctl.php"
    shutil.copy(FPMCTL, alone)
    for missing in ("fastcgi.php", "probe.php"):
        p = subprocess.run([PHP_BIN, str(alone), "status", f"--socket={pool.sock}", f"--deploy-path={pool.deploy}"],
                           capture_output=True, text=True, timeout=30)
        data = json.loads(p.stdout)
        assert p.returncode == 3 and data["error_kind"] == "probe_missing" and missing in data["error"]
        shutil.copy(FPMCTL.parent / "fastcgi.php", tmp_path / "fastcgi.php")
    assert pool.probes_left() == []
