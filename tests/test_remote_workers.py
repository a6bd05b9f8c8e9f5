"""deploy/remote/workers.sh, run locally: real processes started here, their working directory in
temporary "release" dirs, command lines like a supervised `php .../current/artisan queue:work`.
No SSH, no lab."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import wait_exec

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "remote" / "workers.sh"
PHP = shutil.which("php")


@pytest.fixture
def app(tmp_path):
    """<tmp>/app with releases r1, r2 (each with an artisan that just sleeps), current -> r1."""
    yield from make_app(tmp_path / "app")


@pytest.fixture
def open_app():
    """The same in a directory every user may enter (pytest's tmp dirs are root's only)."""
    base = Path(tempfile.mkdtemp(prefix="workers-test-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield from make_app(base / "app")
    shutil.rmtree(base)


def make_app(root):
    for rel in ("r1", "r2"):
        d = root / "releases" / rel
        d.mkdir(parents=True)
        (d / "artisan").write_text("<?php sleep(300);\n")
    (root / "current").symlink_to("releases/r1")
    procs = []

    def start(cwd, *argv, name=None):
        """A process in cwd; `name` replaces argv[0] (exec -a), as a process title would."""
        line = " ".join(f"'{a}'" for a in argv)
        exec_a = f"exec -a '{name}' " if name else "exec "
        p = subprocess.Popen(["bash", "-c", f"cd '{cwd}' && {exec_a}{line}"], start_new_session=True)
        procs.append(p)
        # until the exec happened (the command line is the new one)
        wait_exec(p.pid, name or argv[0])
        return p

    def switch(rel):
        tmp = root / ".current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(f"releases/{rel}")
        os.replace(tmp, root / "current")

    yield {"root": root, "start": start, "switch": switch}
    for p in procs:
        p.kill()
        p.wait()


def workers(root, live, switched, *extra, user=None):
    argv = ["sh", str(SCRIPT), *extra, str(root), str(live), str(switched)]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    lines = [l.split("\t") for l in r.stdout.splitlines() if "\t" in l]
    rows = {int(l[1].split("=")[1]): l for l in lines}
    summary = r.stdout.splitlines()[-1] if r.stdout else ""
    return r.returncode, rows, summary, r


pytestmark = pytest.mark.skipif(PHP is None, reason="needs php-cli")


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    r = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_workers_started_after_the_switch_in_the_live_release_are_proven(app):
    root = app["root"]
    switched = time.time()
    time.sleep(0.05)
    q = app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work", "redis", "--sleep=1")
    s = app["start"](root / "current", PHP, f"{root}/current/artisan", "schedule:work")
    code, rows, summary, r = workers(root, root / "current", switched)
    assert code == 0, r.stdout + r.stderr
    assert set(rows) == {q.pid, s.pid}
    for pid in (q.pid, s.pid):
        status, _, started, cwd, release, cmd = rows[pid]
        assert status == "ok"
        assert cwd == f"cwd={root}/releases/r1" and release == f"release={root}/releases/r1"
        assert float(started.split("=")[1]) >= switched - 0.02   # /proc/uptime has 10 ms steps
        assert cmd.startswith(f"cmd={PHP} {root}/current/artisan ")
    assert summary.startswith("proven: 2 process(es)")


def test_a_worker_left_in_the_old_release_is_named_and_fails(app):
    root = app["root"]
    old = app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work")   # cwd: releases/r1
    app["switch"]("r2")
    switched = time.time()
    time.sleep(0.05)
    new = app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work")   # cwd: releases/r2
    code, rows, summary, r = workers(root, root / "current", switched)
    assert code == 1, r.stdout
    assert rows[new.pid][0] == "ok"
    status, pid, _, cwd, release, why, cmd = rows[old.pid]
    assert status == "stale" and release == f"release={root}/releases/r1"
    assert why == f"why=runs {root}/releases/r1, not the live {root}/releases/r2"
    assert "queue:work" in cmd
    assert summary.startswith(f"NOT proven: 1 of 2 process(es) do not run {root}/releases/r2 started after {switched}: ")
    assert summary.endswith(f"(stale, release={root}/releases/r1)")   # the offender named: pid, command, release


def test_a_worker_in_the_live_release_started_before_the_switch_is_old(app):
    root = app["root"]
    p = app["start"](root / "releases" / "r1", PHP, "artisan", "schedule:work")   # relative script
    time.sleep(0.05)
    switched = time.time()
    code, rows, summary, _ = workers(root, root / "releases" / "r1", switched)
    assert code == 1
    assert rows[p.pid][0] == "old" and rows[p.pid][5].startswith("why=started at ")
    assert "before the switch" in rows[p.pid][5]


def test_horizon_and_process_titles_set_with_exec_a(app):
    root = app["root"]
    switched = time.time()
    time.sleep(0.05)   # start times have 1/100 s steps
    # a title like the one PHP's cli_set_process_title() or a wrapper would show
    h = app["start"](root / "current", PHP, f"{root}/current/artisan", "horizon", name="php")
    code, rows, _, r = workers(root, root / "current", switched)
    assert code == 0 and rows[h.pid][0] == "ok", r.stdout
    assert rows[h.pid][-1] == f"cmd=php {root}/current/artisan horizon"


def test_processes_of_other_apps_and_other_commands_are_not_looked_at(app, tmp_path):
    root = app["root"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "artisan").write_text("<?php sleep(300);\n")
    switched = time.time()
    app["start"](other, PHP, f"{other}/artisan", "queue:work")          # another app's worker
    app["start"](root / "current", PHP, f"{root}/current/artisan", "tinker")  # not a worker command
    code, rows, summary, r = workers(root, root / "current", switched, "--expect", "0")
    assert code == 0 and rows == {}, r.stdout
    # with the default --expect 1, no worker at all is not a proof
    code, rows, summary, _ = workers(root, root / "current", switched)
    assert code == 1 and summary == "NOT proven: 0 matching process(es), expected at least 1"


def test_a_deleted_release_is_stale(app):
    root = app["root"]
    p = app["start"](root / "releases" / "r2", PHP, f"{root}/current/artisan", "queue:work")
    shutil.rmtree(root / "releases" / "r2")
    code, rows, _, _ = workers(root, root / "current", 0)
    assert code == 1 and rows[p.pid][0] == "stale"
    assert rows[p.pid][3] == f"cwd={root}/releases/r2 (deleted)"
    assert "was deleted" in rows[p.pid][5]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_a_process_it_cannot_inspect_is_unknown_never_ok(open_app):
    app = open_app
    root = app["root"]
    p = app["start"](root / "current", PHP, "artisan", "queue:work")   # root's process, relative script
    code, rows, summary, r = workers(root, root / "current", 0, user="nobody")
    assert code == 1, r.stdout + r.stderr
    status, _, _, cwd, release, why, _ = rows[p.pid]
    assert status == "unknown" and cwd == "cwd=" and release == "release="
    assert why == f"why=cannot read /proc/{p.pid}/cwd (run as root or as the process's user)"


def test_unreadable_cwd_counts_only_when_started_after_the_switch_through_current(open_app):
    app = open_app
    root = app["root"]
    p = app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work")
    code, rows, _, r = workers(root, root / "current", 0, user="nobody")
    assert code == 0 and rows[p.pid][0] == "ok", r.stdout + r.stderr
    assert "started after the switch" in rows[p.pid][5]
    code, rows, _, r = workers(root, root / "current", time.time() + 3600, user="nobody")
    assert code == 1 and rows[p.pid][0] == "unknown", r.stdout + r.stderr


def test_custom_pattern(app):
    root = app["root"]
    p = app["start"](root / "current", PHP, f"{root}/current/artisan", "reverb:start")
    code, rows, _, r = workers(root, root / "current", 0, "--pattern", "artisan reverb:start")
    assert code == 0 and rows[p.pid][0] == "ok", r.stdout
    app["switch"]("r2")
    code, rows, _, _ = workers(root, root / "current", 0, "--pattern", "artisan reverb:start")
    assert code == 1 and rows[p.pid][0] == "stale"


def test_wait_polls_until_the_restarted_worker_is_there(app):
    root = app["root"]
    old = app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work")
    app["switch"]("r2")
    switched = time.time()

    # what supervisor does after `restart`: the old process goes, a new one starts in current
    restart = subprocess.Popen(["bash", "-c", f"sleep 1; kill {old.pid}"])
    t0 = time.monotonic()
    proc = subprocess.Popen(["sh", str(SCRIPT), "--wait", "20", str(root), str(root / "current"), str(switched)],
                            stdout=subprocess.PIPE, text=True)
    restart.wait()
    old.wait()
    new = app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert time.monotonic() - t0 < 20
    assert f"pid={new.pid}" in out and f"pid={old.pid}" not in out


def test_wait_gives_up_when_the_time_is_up(app):
    root = app["root"]
    app["start"](root / "current", PHP, f"{root}/current/artisan", "queue:work")
    app["switch"]("r2")
    t0 = time.monotonic()
    code, rows, summary, _ = workers(root, root / "current", 0, "--wait", "1.5")
    assert code == 1 and summary.startswith("NOT proven: 1 of 1")
    assert 1.4 < time.monotonic() - t0 < 15


@pytest.mark.parametrize("argv, words", [
    ([], "usage"),
    (["/nonexistent", "/nonexistent", "0"], "no deploy path"),
    (["{root}", "{root}/releases/r9", "0"], "does not exist"),
    (["{root}", "{root}/current", "yesterday"], "SWITCHED_AT must be epoch seconds"),
    (["--wait", "x", "{root}", "{root}/current", "0"], "usage"),
])
def test_bad_usage_exits_2(app, argv, words):
    argv = [a.format(root=app["root"]) for a in argv]
    r = subprocess.run(["sh", str(SCRIPT), *argv], capture_output=True, text=True)
    assert r.returncode == 2 and words in r.stderr


def test_kill_restarts_stale_workers_harder_and_proves_their_successors(app):
    # A "supervisor": whenever its worker exits, it starts a new one in current.
    root = app["root"]
    loop = subprocess.Popen(["bash", "-c", f"while :; do (cd '{root}/current' && exec '{PHP}' '{root}/current/artisan' "
                             "queue:work); sleep 0.2; done"], start_new_session=True)
    try:
        time.sleep(0.5)
        app["switch"]("r2")   # the worker (a child of the loop) stays on r1: it ignores queue:restart
        code, rows, summary, r = workers(root, root / "current", "current", "--wait", "1")
        assert code == 1 and any(row[0] in ("old", "stale") for row in rows.values()), r.stdout
        code, rows, summary, r = workers(root, root / "current", "current", "--wait", "5", "--kill")
        assert code == 0, r.stdout + r.stderr
        before, _, after = r.stdout.partition("restarting harder: SIGTERM to")
        assert after and any(l.split("\t")[0] in ("old", "stale") for l in before.splitlines() if "\t" in l)
        proven = [l.split("\t")[0] for l in after.splitlines() if "\t" in l]
        assert proven and set(proven) == {"ok"} and summary.startswith("proven:")
    finally:
        os.killpg(loop.pid, 9)
        loop.wait()
