"""The executor on a fake transport (tests/fakehost.py: a local sh, no SSH, no root): markers,
exit codes, gates, per-command timeouts, lost connections with the output so far, signals."""

import threading
import time

import pytest

from deploy.commands import PlannedStep, Secret, sh
from deploy.executor import Runner, batch_script
from deploy.inventory import Fpm, Host
from deploy.transport import SessionLost
from fakehost import LocalTransport
from helpers import process_gone


@pytest.fixture
def host(tmp_path):
    return Host(name="h1", address="127.0.0.1", user="root", deploy_path=str(tmp_path / "app"),
                fpm=Fpm(socket="/nonexistent.sock"), command_timeout=30, stall_timeout=2)


@pytest.fixture
def transport(host):
    t = LocalTransport(host)
    yield t
    t.reap()
    t.close()


def runner(transport, host, **kw):
    events = []
    r = Runner(transport, host, events.append, **kw)
    r.events = events
    return r


def step(name, *commands):
    return PlannedStep(name, "run", list(commands))


def test_one_session_for_consecutive_commands_and_each_exit_code_kept(transport, host):
    r = runner(transport, host)
    res = r.run([step("a", sh("true"), sh("echo hi")), step("b", sh("exit 3", ok_codes=(0, 3))),
                 step("c", sh("echo failing; false")), step("d", sh("echo never"))])
    assert [s.status for s in res] == ["ok", "ok", "failed", "skipped"]
    assert transport.sessions == 1
    assert [c.exit_code for s in res for c in s.commands] == [0, 0, 3, 1]
    assert res[0].commands[1].output.strip() == "hi" and res[2].commands[0].output.strip() == "failing"
    assert r.executed == ["true", "echo hi", "exit 3", "echo failing; false"]
    assert res[2].failed_command.exit_code == 1


def test_captured_output_becomes_a_fact(transport, host):
    r = runner(transport, host)
    r.run([step("a", sh("printf 'releases/r7\\n'", capture="previous"))])
    assert r.facts["previous"] == "releases/r7"


def test_the_script_stops_at_the_first_failure_even_inside_a_step(transport, host, tmp_path):
    marker = tmp_path / "never"
    r = runner(transport, host)
    res = r.run([step("a", sh("false"), sh("touch {}", str(marker)))])
    assert res[0].status == "failed" and not marker.exists()


def test_a_gated_command_runs_on_go(transport, host, tmp_path):
    switched = tmp_path / "switched"
    r = runner(transport, host)
    res = r.run([step("build", sh("true")), step("activate", sh("touch {}", str(switched), gate=True))])
    assert [s.status for s in res] == ["ok", "ok"] and switched.exists()
    assert r.gates == ["go"]
    assert "\\036G 1" in batch_script([sh("true"), sh("true", gate=True)])


def test_a_gate_says_stop_after_ctrl_c_and_nothing_switches(transport, host, tmp_path):
    switched = tmp_path / "switched"
    stop = threading.Event()
    stop.set()
    r = runner(transport, host, stop=stop)
    res = r.run([step("build", sh("true")), step("activate", sh("touch {}", str(switched), gate=True)),
                 step("verify", sh("true"))])
    assert [s.status for s in res] == ["ok", "interrupted", "skipped"]
    assert not switched.exists() and r.gates == ["stop"]


def test_a_gate_waits_for_a_late_answer(transport, host, tmp_path):
    switched = tmp_path / "switched"
    opened = time.monotonic() + 1.0
    r = runner(transport, host, gate_hook=lambda: "go" if time.monotonic() > opened else None)
    t0 = time.monotonic()
    res = r.run([step("activate", sh("touch {}", str(switched), gate=True))])
    assert res[0].status == "ok" and switched.exists()
    assert time.monotonic() - t0 >= 1.0          # it waited for the fleet's answer


def test_a_command_past_its_timeout_fails_and_is_killed_on_the_host(transport, host, tmp_path):
    pidfile = tmp_path / "pid"
    r = runner(transport, host)
    res = r.run([step("slow", sh("echo $$ > {}; exec sleep 30", str(pidfile), timeout=1)),
                 step("after", sh("true"))])
    assert [s.status for s in res] == ["failed", "skipped"]
    c = res[0].commands[0]
    assert c.exit_code is None and "timed out after 1s" in c.output
    pid = int(pidfile.read_text())
    assert process_gone(pid), "the timed-out command still runs"


def test_a_lost_connection_keeps_what_finished(transport, host):
    transport.lose_after("E 1")
    r = runner(transport, host)
    with pytest.raises(SessionLost) as exc:
        r.run([step("a", sh("echo one")), step("b", sh("echo two")), step("c", sh("sleep 0.2; echo three")),
               step("d", sh("true"))])
    res = exc.value.results
    assert [s.status for s in res] == ["ok", "ok", "failed", "skipped"]
    assert res[2].commands[0].exit_code is None
    assert "one" in res[0].commands[0].output and "two" in res[1].commands[0].output


def test_a_host_that_goes_silent_is_lost_within_the_stall_timeout(transport, host):
    transport.hang_after("B 0")
    r = runner(transport, host)
    t0 = time.monotonic()
    with pytest.raises(SessionLost) as exc:
        r.run([step("a", sh("sleep 30"))])
    assert "stopped answering" in str(exc.value) and time.monotonic() - t0 < 20


def test_interruptible_runs_stop_before_a_session_starts(transport, host):
    stop = threading.Event()
    stop.set()
    r = runner(transport, host, stop=stop)
    res = r.run([step("a", sh("true"))], interruptible=True)
    assert res[0].status == "interrupted" and transport.sessions == 0
    # Cleanup is never interruptible: it runs.
    assert r.run([step("cleanup", sh("true"))])[0].status == "ok"


def test_a_second_signal_cuts_an_interruptible_session(transport, host, tmp_path):
    abort = threading.Event()
    pidfile = tmp_path / "pid"
    r = runner(transport, host, abort=abort)
    threading.Timer(0.5, abort.set).start()
    t0 = time.monotonic()
    res = r.run([step("slow", sh("echo $$ > {}; exec sleep 30", str(pidfile)))], interruptible=True)
    assert res[0].status == "interrupted" and time.monotonic() - t0 < 10
    assert process_gone(int(pidfile.read_text()))


def test_a_first_signal_cuts_a_build_that_would_never_switch_but_not_a_migration(transport, host, tmp_path):
    stop = threading.Event()
    r = runner(transport, host, stop=stop)
    threading.Timer(0.5, stop.set).start()
    res = r.run([step("build", sh("sleep 30")), step("activate", sh("true", gate=True))], interruptible=True)
    assert res[0].status == "interrupted"
    stop.clear()
    done = tmp_path / "migrated"
    r = runner(transport, host, stop=stop)
    threading.Timer(0.3, stop.set).start()
    res = r.run([step("migrate", sh("sleep 1; touch {}", str(done), cut_on_stop=False)),
                 step("activate", sh("true", gate=True))], interruptible=True)
    assert res[0].status == "ok" and done.exists() and res[1].status == "interrupted"


def test_a_signalled_command_reports_its_end(transport, host):
    seen = []
    r = runner(transport, host, on_signal=lambda name, code: seen.append((name, code)))
    r.run([step("migrate", sh("exit 0", signal="migrated")), step("x", sh("true"))])
    assert seen == [("migrated", 0)]


def test_secrets_are_masked_in_outputs_and_renderings(transport, host):
    r = runner(transport, host)
    res = r.run([step("a", sh("echo token={}", Secret("s3cr3t")))])
    c = res[0].commands[0]
    assert c.output.strip() == "token=***" and c.command == "echo token=***"
    assert "s3cr3t" not in str(r.events)


# ------------------------------------------------------------------ parts of one session (W)

def test_the_next_part_goes_on_in_the_same_session(transport, host, tmp_path):
    r = runner(transport, host)
    mark = tmp_path / "built"
    first = [step("lock", sh("echo locked"))]
    after = [step("build", sh(f"touch {mark}"), sh("echo built"))]
    res = r.run(first, then=after)
    assert [s.status for s in res] == ["ok"] and not mark.exists(), "the next part waits until asked"
    assert transport.paused is not None
    res = r.run(after)
    assert [s.status for s in res] == ["ok"] and mark.exists()
    assert res[0].commands[1].output.strip() == "built"
    assert transport.sessions == 1 and transport.paused is None
    assert r.executed == ["echo locked", f"touch {mark}", "echo built"]


def test_a_different_next_run_ends_the_waiting_part_unrun(transport, host, tmp_path):
    r = runner(transport, host)
    mark = tmp_path / "built"
    r.run([step("lock", sh("true"))], then=[step("build", sh(f"touch {mark}"))])
    res = r.run([step("discard", sh("echo other"))])
    assert res[0].status == "ok" and res[0].commands[0].output.strip() == "other"
    assert transport.sessions == 2 and transport.paused is None
    time.sleep(0.2)
    assert not mark.exists(), "the waiting part was told stop: it never ran"


def test_a_failed_first_part_never_waits(transport, host, tmp_path):
    r = runner(transport, host)
    mark = tmp_path / "built"
    res = r.run([step("lock", sh("false"))], then=[step("build", sh(f"touch {mark}"))])
    assert res[0].status == "failed" and transport.paused is None
    r.run([step("build", sh(f"touch {mark}"))])
    assert transport.sessions == 2 and mark.exists()


def test_a_session_started_early_waits_before_its_first_part(transport, host, tmp_path):
    r = runner(transport, host)
    mark = tmp_path / "locked"
    lock = [step("lock", sh(f"touch {mark}"))]
    build = [step("build", sh("echo built"))]
    r.start(lock, then=build)
    assert r.remote_pid and transport.paused is not None
    time.sleep(0.2)
    assert not mark.exists(), "nothing runs before the lock is asked for"
    assert r.run(lock, then=build)[0].status == "ok" and mark.exists()
    assert r.run(build)[0].commands[0].output.strip() == "built"
    assert transport.sessions == 1
