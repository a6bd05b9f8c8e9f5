"""The deploy and rollback state machines (deploy/operations/), branch by branch, on a fake
transport (tests/fakehost.py): the "host" is a directory under tmp_path with a real releases/,
`current` symlink, shared/ and .deploy/, its commands run by a local sh, rsync through the same
rsh tunnel as on a real host. No SSH, no root, no PHP-FPM.

The plans are the real ones (deploy/plan.py from a YAML inventory and playbook). Two things
stand in for what this machine lacks: the host's `php` is a small script that records its calls
(there is no pool to reset; `artisan migrate` fails on a flag), and the pipeline's own `run`
steps call `hook`, which fails or hangs for one step and one release when the test leaves a
flag file. Faults on the connection are the fake's rules on the session markers, armed when the
session that matters starts.

Each test asserts the operation's end state (results.py) and the host itself: where current
points, which release dirs exist, the bad marks, the lock, the history.
"""

import json
import os
import threading
import time

import pytest

from deploy import fleet as fleet_mod
from deploy import inventory, operations as ops, pipeline as pipeline_mod, plan as planner, rollout
from deploy.cli import exit_code
from deploy.errors import EXIT_FAILED, EXIT_NEEDS_HUMAN, EXIT_OK
from fakehost import LocalTransport
from helpers import process_gone, write

INVENTORY = """
defaults:
  user: deploy
  php: {bin}/php
  fpm: {{socket: {root}/fpm.sock}}
  command_timeout: {command_timeout}
  stall_timeout: 5
  connect_timeout: {connect_timeout}
hosts:
  h1: {{address: 127.0.0.1, deploy_path: {root}/h1}}
  h2: {{address: 127.0.0.1, deploy_path: {root}/h2}}
"""

PIPELINE = """
source: {src}
strategy: {strategy}
keep_releases: 3
steps:
  - sync
  - shared
{migrate}
  - run: {{name: build, commands: ["{bin}/hook build"]}}
  - activate
  - opcache_reset
  - run: {{name: check, on_rollback: true, commands: ["{bin}/hook check"]}}
"""

# The host's php: no PHP-FPM pool here, so the pool steps only record that they ran.
PHP = """#!/bin/sh
bin=$(dirname "$0")
echo "$*" >> "$bin/php.log"
case "$*" in
"artisan migrate "*)
    if [ -e "$bin/migrate.fail" ]; then echo "SQLSTATE[HY000] [2002] Connection refused"; exit 1; fi
    echo "Migrated:  2026_01_01_000000_create_things (1.00ms)" ;;
esac
exit 0
"""

# hook STEP: a pipeline step's work; the test decides per step and release with flag files.
HOOK = """#!/bin/sh
bin=$(dirname "$0")
if [ -e "$bin/$1.$DEPLOY_RELEASE.moves-current" ]; then ln -sfn "releases/$DEPLOY_RELEASE" "$DEPLOY_PATH/current"; fi
if [ -e "$bin/$1.$DEPLOY_RELEASE.slow" ]; then sleep 60 & echo $! > "$bin/$1.$DEPLOY_RELEASE.pid"; wait $!; fi
if [ -e "$bin/$1.$DEPLOY_RELEASE.fail" ]; then echo "$1 failed for $DEPLOY_RELEASE (flag)"; exit 1; fi
echo "$1 ok in $(pwd)"
"""

OP = planner.Operator(user="ci", machine="runner", pid=42)


class World:
    """The fake hosts, the inventory and playbook, and the controls of a test."""

    def __init__(self, tmp_path, monkeypatch):
        self.tmp = tmp_path
        self.root = tmp_path / "hosts"
        self.bin = tmp_path / "bin"
        self.src = tmp_path / "src"
        self.transports = []
        self.events = []
        self.hooks = {}           # (event type, step name) -> callables, run once each
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.root.mkdir()
        for name, text in (("php", PHP), ("hook", HOOK)):
            write(self.bin / name, text).chmod(0o755)
        self.code("v1")
        monkeypatch.setattr("deploy.session.connect", self._connect)
        self.configure()

    def configure(self, command_timeout=60, connect_timeout=2, migrate=False, strategy="releases"):
        inv = write(self.tmp / "inv" / "hosts.yml", INVENTORY.format(
            bin=self.bin, root=self.root, command_timeout=command_timeout, connect_timeout=connect_timeout))
        self.inventory = inventory.load(inv)
        self.pipeline = pipeline_mod.load(write(self.tmp / "playbooks" / "p.yml", PIPELINE.format(
            src=self.src, bin=self.bin, strategy=strategy, migrate="  - migrate" if migrate else "")))

    def host(self, name="h1"):
        return self.inventory.hosts[name]

    def code(self, version):
        write(self.src / "public" / "index.php", f"<?php echo '{version}';\n")
        write(self.src / "storage" / "app" / "seed.txt", "seeded by the first release\n")

    def flag(self, step, release, what="fail"):
        (self.bin / f"{step}.{release}.{what}").touch()

    def on(self, event, step, action):
        self.hooks.setdefault((event, step), []).append(action)

    def when_body_starts(self, action):
        """Run action(transport) when the deploy's build session is about to start (sync ended)."""
        self.on("step", "sync", lambda: action(self.transports[-1]))

    def _connect(self, host):
        t = LocalTransport(host)
        self.transports.append(t)
        return t

    def emit(self, event):
        self.events.append(event)
        for action in self.hooks.pop((event.get("type"), event.get("step")), []):
            action()

    def deploy(self, release, host="h1", **kw):
        return ops.deploy_host(self.host(host), self.pipeline, release, OP, self.emit, stop=self.stop,
                               abort=self.abort, **kw)

    def rollback(self, host="h1", **kw):
        result, _ = ops.rollback_host(self.host(host), self.pipeline, OP, self.emit, **kw)
        return result

    def reap(self):
        for t in self.transports:
            t.reap()
            t.close()

    # -- the host, as it is on disk
    def path(self, host="h1"):
        return self.root / host

    def live(self, host="h1"):
        current = self.path(host) / "current"
        return os.readlink(current).rsplit("/", 1)[-1] if current.is_symlink() else None

    def releases(self, host="h1"):
        d = self.path(host) / "releases"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def complete(self, release, host="h1"):
        return (self.path(host) / "releases" / release / "RELEASE").read_text().strip() == release

    def bad(self, host="h1"):
        d = self.path(host) / ".deploy" / "bad"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def locked(self, host="h1"):
        return (self.path(host) / ".deploy" / "lock").exists()

    def history(self, host="h1"):
        f = self.path(host) / ".deploy" / "history.jsonl"
        return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []

    def served(self, host="h1"):
        return (self.path(host) / "current" / "public" / "index.php").read_text()

    def php_calls(self):
        f = self.bin / "php.log"
        return f.read_text().splitlines() if f.exists() else []


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = World(tmp_path, monkeypatch)
    yield w
    w.reap()


@pytest.fixture
def deployed(world):
    """h1 with r1 live (deployed through the same path), the code then changed to v2."""
    r = world.deploy("r1")
    assert r.state == ops.DEPLOYED, r.message
    world.code("v2")
    return world


def session_index(steps, name, nth=0, first=0):
    """The marker number of step `name`'s nth command in the session that runs it: the executor
    numbers the commands of each session from 0, and a local command (rsync) has its own; the
    first remote commands go on in the session before (numbered from `first` there)."""
    n, seen_remote = first, False
    for s in steps:
        for i, c in enumerate(s.commands):
            if c.local:
                if seen_remote:
                    n = 0
                continue
            seen_remote = True
            if s.name == name and i == nth:
                return n
            n += 1
    raise KeyError(name)


def body_index(world, release, name, host="h1"):
    """The build goes on in the session of lock + prepare, after their commands (executor's W)."""
    steps = planner.deploy(world.host(host), world.pipeline, release, OP)
    return session_index(steps[2:], name, first=sum(len(s.commands) for s in steps[:2]))


def assert_last_history(world, host="h1", **expected):
    last = world.history(host)[-1]
    assert {k: last.get(k) for k in expected} == expected, last
    return last


# ---------------------------------------------------------------------------- the main branches

def test_a_deploy_switches_current_links_shared_data_and_releases_the_lock(deployed):
    w = deployed
    r = w.deploy("r2")
    assert r.state == ops.DEPLOYED and r.switched is True, r.message
    assert r.previous == "r1" and exit_code([r]) == EXIT_OK
    assert w.live() == "r2" and w.served() == "<?php echo 'v2';\n"
    assert w.releases() == ["r1", "r2"] and w.complete("r1") and w.complete("r2")
    assert not w.locked() and w.bad() == []
    assert_last_history(w, action="deploy", release="r2", state="deployed", by=OP.token)
    # Shared data is linked, seeded once, and outlives the releases.
    storage = w.path() / "releases" / "r2" / "storage"
    assert storage.is_symlink() and os.readlink(storage) == str(w.path() / "shared" / "storage")
    assert (w.path() / "shared" / "storage" / "app" / "seed.txt").is_file()
    assert (w.path() / ".deploy" / "manifests" / "r2").is_file()
    # What ran is the plan, command for command.
    planned = [c.render() for s in planner.deploy(w.host(), w.pipeline, "r2", OP) for c in s.commands]
    assert r.executed == planned
    # The pool step ran on this host (the host's php records its calls).
    assert any(" reset " in c and str(w.path()) in c for c in w.php_calls())


def test_keep_releases_prunes_the_oldest_but_never_the_live_or_the_rollback_target(deployed):
    w = deployed
    for rid in ("r2", "r3", "r4"):
        assert w.deploy(rid).state == ops.DEPLOYED
    assert w.releases() == ["r2", "r3", "r4"] and w.live() == "r4"


def test_a_step_failing_before_the_switch_removes_the_new_release_and_leaves_current(deployed):
    w = deployed
    w.flag("build", "r2")
    r = w.deploy("r2")
    assert r.state == ops.FAILED_BEFORE_SWITCH and r.switched is False
    assert "step 'build' failed (exit 1): build failed for r2 (flag)" in r.message
    assert exit_code([r]) == EXIT_FAILED
    assert w.live() == "r1" and w.served() == "<?php echo 'v1';\n"
    assert w.releases() == ["r1"] and not w.locked()
    assert_last_history(w, action="deploy", release="r2", state="failed before switch")
    statuses = {s.name: s.status for s in r.steps}
    assert statuses["build"] == "failed" and statuses["activate"] == "skipped" and statuses["discard"] == "ok"


def test_the_host_never_removes_the_release_current_points_to_whatever_the_tool_believes(deployed):
    # A build step that moved current itself, then failed: the tool believes nothing was
    # switched and discards, but discard.sh asks the host and refuses; the deploy then handles
    # it as a failure after the switch.
    w = deployed
    w.flag("build", "r2", "moves-current")
    w.flag("build", "r2")
    r = w.deploy("r2")
    discard = next(s for s in r.steps if s.name == "discard")
    assert discard.commands[0].exit_code == planner.IS_LIVE_EXIT and "release r2 is live: not removed" in \
        discard.commands[0].output
    assert r.state == ops.ROLLED_BACK and r.switched is True, r.message
    assert w.live() == "r1" and w.releases() == ["r1", "r2"] and w.bad() == ["r2"] and not w.locked()


def test_a_step_failing_after_the_switch_rolls_back_and_marks_the_release_bad(deployed):
    w = deployed
    w.flag("check", "r2")
    r = w.deploy("r2")
    assert r.state == ops.ROLLED_BACK, r.message
    assert r.switched is True and r.previous == "r1" and exit_code([r]) == EXIT_FAILED
    assert "step 'check' failed (exit 1): check failed for r2 (flag)" in r.message and "rolled back to r1" in r.message
    assert w.live() == "r1" and w.served() == "<?php echo 'v1';\n"
    # The failed release stays on disk (it was live; it is evidence), marked bad: never a target.
    assert w.releases() == ["r1", "r2"] and w.bad() == ["r2"]
    assert "check failed for r2" in (w.path() / ".deploy" / "bad" / "r2").read_text()
    assert not w.locked()
    assert_last_history(w, action="auto-rollback", release="r1", state="rolled back")
    assert r.actions[-1]["action"] == "rollback" and r.actions[-1]["to"] == "r1"
    # The rollback's own steps ran for r1: the pool reset and the check, after its switch.
    rb = [s.name for s in r.steps]
    assert rb.index("activate (rollback)") < rb.index("opcache_reset (rollback)") < rb.index("check (rollback)")
    assert [s.status for s in r.steps if s.name.endswith("(rollback)")] == ["ok"] * 3


def test_a_first_deploy_failing_after_the_switch_needs_a_human_and_stays_live(world):
    w = world
    w.flag("check", "r1")
    r = w.deploy("r1")
    assert r.state == ops.NEEDS_HUMAN and r.switched is True and r.previous is None
    assert "no previous release to roll back to, r1 stays live (marked bad)" in r.message
    assert exit_code([r]) == EXIT_NEEDS_HUMAN
    assert w.live() == "r1" and w.complete("r1") and w.bad() == ["r1"]
    assert not w.locked()
    assert_last_history(w, action="deploy", release="r1", state="needs human")


def test_a_command_past_its_timeout_before_the_switch_is_killed_and_the_release_removed(world):
    w = world
    assert w.deploy("r1").state == ops.DEPLOYED
    w.configure(command_timeout=3)
    w.flag("build", "r2", "slow")
    t0 = time.monotonic()
    r = w.deploy("r2")
    assert time.monotonic() - t0 < 30
    assert r.state == ops.FAILED_BEFORE_SWITCH and r.switched is False
    assert "did not finish" in r.message and "timed out after 3s" in _output(r, "build")
    assert w.live() == "r1" and w.releases() == ["r1"] and not w.locked()
    assert process_gone(int((w.bin / "build.r2.pid").read_text()), timeout=10), "the timed-out command still runs on the host"


def test_a_command_past_its_timeout_after_the_switch_is_rolled_back(world):
    w = world
    assert w.deploy("r1").state == ops.DEPLOYED
    w.configure(command_timeout=3)
    w.flag("check", "r2", "slow")
    r = w.deploy("r2")
    assert r.state == ops.ROLLED_BACK and r.switched is True, r.message
    assert "timed out after 3s" in _output(r, "check")
    assert w.live() == "r1" and w.bad() == ["r2"] and not w.locked()
    assert process_gone(int((w.bin / "check.r2.pid").read_text()), timeout=10)


def test_the_release_already_live_is_refused_and_kept(deployed):
    w = deployed
    before = w.history()
    r = w.deploy("r1")
    assert r.state == ops.FAILED_BEFORE_SWITCH and r.switched is False
    assert "release r1 is already live on h1; nothing to do" in r.message
    assert w.live() == "r1" and w.releases() == ["r1"] and w.complete("r1")
    assert w.served() == "<?php echo 'v1';\n"   # not rebuilt from the v2 source
    assert not w.locked() and w.history() == before


def test_a_deploy_refused_by_the_lock_changes_nothing(deployed):
    w = deployed
    _held_by_alice(w)
    r = w.deploy("r2")
    assert r.state == ops.LOCKED and "alice@laptop pid 7" in r.message
    assert w.live() == "r1" and w.releases() == ["r1"]
    assert (w.path() / ".deploy" / "lock" / "info").read_text().startswith('{"user": "alice"')


# ---------------------------------------------------------------------------- lost connections

def test_lost_before_the_switch_and_back_reads_current_and_removes_only_the_new_release(deployed):
    w = deployed
    w.when_body_starts(lambda t: t.lose_after(f"E {body_index(w, 'r2', 'build')}"))
    r = w.deploy("r2")
    assert r.state == ops.FAILED_BEFORE_SWITCH and r.switched is False, r.message
    assert "reconnected" in r.message and w.transports[-1].connections == 2
    # Back on the host, current was read again before anything was removed.
    assert r.executed.count(f"readlink {w.path() / 'current'} || true") == 2
    assert w.live() == "r1" and w.releases() == ["r1"] and not w.locked()
    assert_last_history(w, action="deploy", release="r2", state="failed before switch")


def test_lost_after_the_switch_and_back_rolls_back_to_the_previous_release(deployed):
    w = deployed
    w.when_body_starts(lambda t: t.lose_after(f"E {body_index(w, 'r2', 'activate')}"))
    r = w.deploy("r2")
    assert r.state == ops.ROLLED_BACK and r.switched is True, r.message
    assert "reconnected" in r.message and "rolled back to r1" in r.message
    assert w.live() == "r1" and w.releases() == ["r1", "r2"] and w.bad() == ["r2"]
    assert not w.locked()


def test_lost_before_the_end_of_the_switch_is_resolved_by_reading_current(deployed):
    # The tool said "go" and never heard how the switch ended: only the host knows. It moved,
    # so the new release is never removed; the host is rolled back to the verified one.
    w = deployed
    w.when_body_starts(lambda t: t.lose_before(f"E {body_index(w, 'r2', 'activate')}"))
    r = w.deploy("r2")
    assert r.state == ops.ROLLED_BACK and r.switched is True, r.message
    assert _status(r, "activate") == "failed"
    assert _command(r, "activate").exit_code is None
    assert w.live() == "r1" and "r2" in w.releases() and w.complete("r2") and w.bad() == ["r2"]
    assert not w.locked()


def test_a_first_deploy_lost_at_the_switch_and_back_stays_live_and_needs_a_human(world):
    w = world
    w.when_body_starts(lambda t: t.lose_before(f"E {body_index(w, 'r1', 'activate')}"))
    r = w.deploy("r1")
    assert r.state == ops.NEEDS_HUMAN and r.switched is True, r.message
    assert exit_code([r]) == EXIT_NEEDS_HUMAN
    assert w.live() == "r1" and w.releases() == ["r1"] and w.complete("r1")   # the live release is never removed
    assert w.bad() == ["r1"] and not w.locked()
    assert_last_history(w, action="deploy", release="r1", state="needs human")


def test_lost_before_the_gate_was_answered_never_switches(deployed):
    w = deployed
    w.when_body_starts(lambda t: t.lose_after(f"G {body_index(w, 'r2', 'activate')}"))
    r = w.deploy("r2")
    assert r.state == ops.FAILED_BEFORE_SWITCH and r.switched is False, r.message
    assert w.transports[-1].connections == 2
    assert w.live() == "r1" and w.releases() == ["r1"] and not w.locked()


def test_lost_before_the_switch_for_good_is_unreachable_and_the_lock_stays(deployed):
    w = deployed
    w.when_body_starts(lambda t: (t.lose_after(f"E {body_index(w, 'r2', 'build')}"), setattr(t, "reconnects", False)))
    r = w.deploy("r2")
    assert r.state == ops.UNREACHABLE and r.switched is False
    assert "before the switch of current: the live release never changed" in r.message
    assert exit_code([r]) == EXIT_FAILED
    # Nobody could clean up: the partial build stays incomplete (never a rollback target), the lock stays.
    assert w.live() == "r1" and w.releases() == ["r1", "r2"] and not (w.path() / "releases/r2/RELEASE").exists()
    assert w.locked()


def test_lost_after_the_switch_for_good_needs_a_human_and_tells_what_is_live(deployed):
    w = deployed
    w.when_body_starts(lambda t: (t.lose_after(f"E {body_index(w, 'r2', 'activate')}"),
                                  setattr(t, "reconnects", False)))
    r = w.deploy("r2")
    assert r.state == ops.NEEDS_HUMAN and r.switched is True
    assert "after the switch of current: r2 is live but NOT verified" in r.message
    assert exit_code([r]) == EXIT_NEEDS_HUMAN
    assert w.live() == "r2" and w.releases() == ["r1", "r2"] and w.locked()


def test_lost_while_switching_for_good_says_current_is_one_of_the_two(deployed):
    w = deployed
    w.when_body_starts(lambda t: (t.lose_before(f"E {body_index(w, 'r2', 'activate')}"),
                                  setattr(t, "reconnects", False)))
    r = w.deploy("r2")
    assert r.state == ops.NEEDS_HUMAN and r.switched is None
    assert "while current was being switched: it may point to r2 or still to r1" in r.message
    assert w.releases() == ["r1", "r2"] and w.live() in ("r1", "r2") and w.locked()


# ---------------------------------------------------------------------------- signals

def test_interrupted_before_the_switch_removes_the_new_release(deployed):
    w = deployed
    w.on("step", "sync", w.stop.set)
    r = w.deploy("r2")
    assert r.state == ops.UNTOUCHED and r.switched is False
    assert "interrupted before the switch: the new release was removed" in r.message
    assert _status(r, "shared") == "interrupted" and _status(r, "activate") == "skipped"
    assert w.live() == "r1" and w.releases() == ["r1"] and not w.locked()


def test_interrupted_during_the_build_cuts_it_on_the_host(deployed):
    w = deployed
    w.flag("build", "r2", "slow")
    w.on("step_start", "build", lambda: threading.Timer(0.3, w.stop.set).start())
    t0 = time.monotonic()
    r = w.deploy("r2")
    assert time.monotonic() - t0 < 30
    assert r.state == ops.UNTOUCHED and r.switched is False, r.message
    assert _status(r, "build") == "interrupted"
    assert w.live() == "r1" and w.releases() == ["r1"] and not w.locked()
    assert process_gone(int((w.bin / "build.r2.pid").read_text()), timeout=10)


def test_interrupted_after_the_switch_goes_on_to_a_proven_release(deployed):
    w = deployed
    w.on("step_start", "opcache_reset", w.stop.set)
    r = w.deploy("r2")
    assert r.state == ops.DEPLOYED and r.switched is True, r.message
    assert w.live() == "r2" and not w.locked()


def test_interrupted_after_the_switch_still_rolls_back_a_failure(deployed):
    w = deployed
    w.flag("check", "r2")
    w.on("step_start", "opcache_reset", w.stop.set)
    r = w.deploy("r2")
    assert r.state == ops.ROLLED_BACK, r.message
    assert w.live() == "r1" and w.bad() == ["r2"] and not w.locked()


def test_a_second_signal_after_the_switch_leaves_the_new_release_live_and_says_so(deployed):
    w = deployed
    w.flag("check", "r2", "slow")

    def second_signal():
        w.stop.set()
        threading.Timer(0.3, w.abort.set).start()
    w.on("step_start", "check", second_signal)
    r = w.deploy("r2")
    assert r.state == ops.NEEDS_HUMAN and r.switched is True, r.message
    assert "stopped by a second signal after the switch: r2 is live (complete) but not verified" in r.message
    assert w.live() == "r2" and w.complete("r2") and not w.locked()
    assert_last_history(w, action="deploy", release="r2", state="needs human")
    assert process_gone(int((w.bin / "check.r2.pid").read_text()), timeout=10)


# ---------------------------------------------------------------------------- the fleet's hold

def _fleet(world, release):
    hosts = [world.host("h1"), world.host("h2")]
    primary, hosts = rollout.primary(hosts, world.pipeline)
    plans = {h.name: planner.deploy(h, world.pipeline, release, OP, primary=primary) for h in hosts}
    fleet = fleet_mod.Fleet(hosts, world.pipeline, OP, world.emit, parallel=2, plans=plans, primary=primary)
    return {r.host: r for r in fleet.deploy(release)}


def test_a_fleet_migrates_once_and_every_host_switches_after_it(world):
    w = world
    w.configure(migrate=True)
    results = _fleet(w, "r1")
    assert {n: r.state for n, r in results.items()} == {"h1": ops.DEPLOYED, "h2": ops.DEPLOYED}
    assert [c for c in w.php_calls() if c.startswith("artisan migrate")] == ["artisan migrate --force --no-interaction"]
    assert w.live("h1") == "r1" and w.live("h2") == "r1"
    assert_last_history(w, "h2", action="deploy", state="deployed", migrated_on="h1")
    assert any(h["action"] == "migrate" for h in w.history("h1"))


def test_a_fleet_whose_migration_fails_holds_every_switch(world):
    w = world
    w.configure(migrate=True)
    assert {r.state for r in _fleet(w, "r1").values()} == {ops.DEPLOYED}
    w.code("v2")
    (w.bin / "migrate.fail").touch()
    results = _fleet(w, "r2")
    h1, h2 = results["h1"], results["h2"]
    assert h1.state == ops.FAILED_BEFORE_SWITCH and "step 'migrate' failed (exit 1)" in h1.message
    assert h2.state == ops.FAILED_BEFORE_SWITCH and h2.switched is False
    assert "not switched: the migration on h1 failed (exit 1)" in h2.message
    assert _status(h2, "build") == "interrupted"     # the hold before its first command after migrate
    for name in ("h1", "h2"):
        assert w.live(name) == "r1" and w.releases(name) == ["r1"] and not w.locked(name)


def _held_by_alice(world, host="h1"):
    (world.path(host) / ".deploy" / "lock").mkdir(parents=True)
    (world.path(host) / ".deploy" / "lock" / "info").write_text('{"user": "alice", "machine": "laptop", "pid": 7}\n')


def _fleet_r2_with_a_lock_held_on(world, host):
    """r1 deployed to the fleet, then alice's lock on `host`, then the fleet's deploy of r2."""
    assert {r.state for r in _fleet(world, "r1").values()} == {ops.DEPLOYED}
    world.code("v2")
    _held_by_alice(world, host)
    return _fleet(world, "r2")


def test_all_at_once_a_lock_held_on_a_later_host_stops_the_others_after_their_rsync(world):
    # Each host locks in its own session and starts its rsync; h2's lock is alice's, so h1
    # stops at the barrier before its build: its new release is removed, nothing live changed.
    w = world
    results = _fleet_r2_with_a_lock_held_on(w, "h2")
    h1, h2 = results["h1"], results["h2"]
    assert h2.state == ops.LOCKED and "alice@laptop pid 7" in h2.message
    assert h1.state == ops.UNTOUCHED and h1.message.startswith("not deployed: h2 is locked"), h1.message
    assert _status(h1, "sync") == "ok" and _status(h1, "shared") == "interrupted"
    for name in ("h1", "h2"):
        assert w.live(name) == "r1" and w.releases(name) == ["r1"]
    assert not w.locked("h1") and (w.path("h2") / ".deploy" / "lock" / "info").read_text().startswith('{"user": "alice"')


def test_all_at_once_a_lock_held_on_the_first_host_stops_every_host_before_its_lock(world):
    w = world
    results = _fleet_r2_with_a_lock_held_on(w, "h1")
    assert results["h1"].state == ops.LOCKED
    assert results["h2"].state == ops.UNTOUCHED and results["h2"].message == "not deployed: h1 is locked"
    assert not results["h2"].steps, "h2 ran nothing: not even its lock"
    assert w.live("h2") == "r1" and w.releases("h2") == ["r1"] and not w.locked("h2")


def test_a_host_whose_hold_says_stop_never_switches(deployed):
    # The fleet's answer alone (deploy_host with a Hold already refused), at the switch gate.
    w = deployed
    w.configure(migrate=True)
    steps = planner.deploy(w.host("h1"), w.pipeline, "r2", OP, primary="h9")
    assert not [s for s in steps if s.name == "migrate"][0].commands
    hold = fleet_mod.Hold("h9")
    hold.resolve(False, "the migration on h9 failed (exit 1)")
    r = w.deploy("r2", steps=steps, hold=hold)
    assert r.state == ops.FAILED_BEFORE_SWITCH and r.switched is False
    assert "not switched: the migration on h9 failed (exit 1); the new release was removed" in r.message
    assert w.live() == "r1" and w.releases() == ["r1"] and not w.locked()


# ---------------------------------------------------------------------------- in place

@pytest.fixture
def in_place(world):
    """h1 laid out in place (code directly under the deploy path) with r1 live, its own storage
    data, the code then changed to v2."""
    w = world
    w.configure(strategy="in-place")
    assert w.deploy("r1").state == ops.DEPLOYED
    write(w.path() / "storage" / "app" / "upload.txt", "a user's upload\n")
    w.code("v2")
    return w


def _in_place_live(w):
    return (w.path() / "RELEASE").read_text().strip(), (w.path() / "public" / "index.php").read_text()


def test_in_place_a_deploy_rewrites_the_live_tree_after_a_snapshot(in_place):
    w = in_place
    r = w.deploy("r2")
    assert r.state == ops.DEPLOYED and r.switched is True, r.message
    assert _in_place_live(w) == ("r2", "<?php echo 'v2';\n")
    snap = w.path() / ".deploy" / "snapshots" / "r1"
    assert (snap / "RELEASE").read_text().strip() == "r1" and "v1" in (snap / "public" / "index.php").read_text()
    assert not (w.path() / "releases").exists() and not (w.path() / "current").exists()
    assert (w.path() / "storage" / "app" / "upload.txt").read_text() == "a user's upload\n"
    assert not w.locked()
    assert_last_history(w, action="deploy", release="r2", state="deployed")


def test_in_place_a_failure_after_sync_restores_the_snapshot(in_place):
    # In place the live tree changed as soon as sync wrote into it: a failure before activate
    # is a failure after the switch (docs/pipeline.md, the in-place strategy).
    w = in_place
    w.flag("build", "r2")
    r = w.deploy("r2")
    assert r.state == ops.ROLLED_BACK and r.switched is True, r.message
    assert _in_place_live(w) == ("r1", "<?php echo 'v1';\n")
    assert w.bad() == ["r2"] and not w.locked()
    assert (w.path() / "storage" / "app" / "upload.txt").read_text() == "a user's upload\n"
    assert _status(r, "activate (rollback)") == "ok"


def test_in_place_interrupted_before_sync_changes_nothing(in_place):
    w = in_place
    w.on("step", "prepare", w.stop.set)
    r = w.deploy("r2")
    assert r.state == ops.UNTOUCHED and r.switched is False, r.message
    assert _in_place_live(w) == ("r1", "<?php echo 'v1';\n") and not w.locked()


# ---------------------------------------------------------------------------- fab rollback

@pytest.fixture
def two(deployed):
    assert deployed.deploy("r2").state == ops.DEPLOYED
    return deployed


def test_rollback_goes_back_to_the_previous_release_and_marks_the_live_one_bad(two):
    w = two
    r = w.rollback()
    assert r.state == ops.ROLLED_BACK and r.switched is True and r.release == "r1" and r.previous == "r2"
    assert "now serving r1 (was r2)" in r.message
    assert w.live() == "r1" and w.releases() == ["r1", "r2"] and w.bad() == ["r2"] and not w.locked()
    assert_last_history(w, action="rollback", release="r1", state="rolled back")
    assert [s.status for s in r.steps] == ["ok"] * len(r.steps)


def test_rollback_with_nothing_to_go_back_to_changes_nothing(deployed):
    w = deployed
    r = w.rollback()
    assert r.state == ops.FAILED and "no earlier good release to roll back to" in r.message
    assert w.live() == "r1" and not w.locked() and w.bad() == []


def test_rollback_never_switches_to_a_gutted_release(two):
    w = two
    (w.path() / "releases" / "r1" / "public" / "index.php").unlink()
    r = w.rollback()
    assert r.state == ops.FAILED and r.switched is False
    assert "release r1 changed on disk since it was verified" in r.message
    assert w.live() == "r2" and w.bad() == [] and not w.locked()


def test_rollback_whose_target_fails_goes_back_to_the_live_release(two):
    w = two
    w.flag("check", "r1")
    r = w.rollback()
    assert r.state == ops.FAILED, r.message
    assert "back on r2 (verified), r1 marked bad" in r.message
    assert w.live() == "r2" and w.bad() == ["r1"] and not w.locked()


def test_rollback_lost_after_its_switch_and_back_finishes_its_steps(two):
    w = two
    steps = planner.rollback(w.host(), w.pipeline, "r1", OP, failed="r2", reason="manual rollback", take_lock=True)
    n = session_index(steps, "activate (rollback)")
    w.on("step", "state", lambda: w.transports[-1].lose_after(f"E {n}"))
    r = w.rollback()
    assert r.state == ops.ROLLED_BACK and r.switched is True, r.message
    assert w.transports[-1].connections == 2
    assert _status(r, "check (rollback)") == "ok"
    assert w.live() == "r1" and w.bad() == ["r2"] and not w.locked()


def test_rollback_lost_after_its_switch_for_good_needs_a_human(two):
    w = two
    steps = planner.rollback(w.host(), w.pipeline, "r1", OP, failed="r2", reason="manual rollback", take_lock=True)
    n = session_index(steps, "activate (rollback)")
    w.on("step", "state", lambda: (w.transports[-1].lose_after(f"E {n}"),
                                   setattr(w.transports[-1], "reconnects", False)))
    r = w.rollback()
    assert r.state == ops.NEEDS_HUMAN and r.switched is True
    assert "r1 is live but NOT verified" in r.message
    assert w.live() == "r1" and w.locked()


# ---------------------------------------------------------------------------- helpers

def _status(result, name):
    """The status of the last run of step `name` (a step run again after a reconnect: the rerun)."""
    return [s.status for s in result.steps if s.name == name][-1]


def _command(result, name):
    return next(s for s in result.steps if s.name == name).commands[-1]


def _output(result, name):
    return "\n".join(c.output for s in result.steps if s.name == name for c in s.commands)
