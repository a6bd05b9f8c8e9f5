"""Many hosts: rolling batches (canary first), bounded parallelism, a failure threshold per batch.

One release id for the whole run. Each host gets its own connection in its own worker thread
(never shared between threads); at most `parallel` hosts work at once.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import operations as ops
# The rollout's arithmetic (pure, shared with the plan): deploy/rollout.py.
from .rollout import DEFAULT_PARALLEL, batches, threshold

_FOLD = object()   # a host whose lock is taken in its own first session, not in the lock pass
_OWN = object()    # a host of an all-at-once rollout: it takes its lock itself (_lock_and_deploy)
_BLOCKING = (ops.LOCKED, ops.FAILED)   # a host in one of these states stops the whole run


def _not_deployed(blocker, state):
    """What the other hosts say when `blocker` ended in a _BLOCKING state."""
    return f"not deployed: {blocker} " + ("is locked" if state == ops.LOCKED else "cannot be deployed")


class _Locks:
    """The locks of an all-at-once rollout, taken by each host in its own thread.

    The first host (by name) locks alone first, so of two runs started at once the one that
    gets it proceeds and the other stops before any other host is touched (as in
    Fleet.lock_all). Then every host locks and goes on with its rsync, which only writes into
    its new release dir; the first command after it waits at `barrier` until every host has
    answered. A lock held elsewhere (or a host that cannot be deployed) then stops every host
    before anything else runs: their new releases are removed, nothing live changed."""

    def __init__(self, names, first, stop):
        self.first, self.stop = first, stop
        self.pending = set(names)
        self.first_done, self.all_done = threading.Event(), threading.Event()
        self.first_ok = False
        self.blocker = self.refusal = None
        self._mutex = threading.Lock()

    def report(self, name, state):
        with self._mutex:
            if state in _BLOCKING and self.blocker is None:
                self.blocker, self.refusal = name, _not_deployed(name, state)
            if name == self.first:
                self.first_ok = state != ops.LOCKED
                self.first_done.set()
            self.pending.discard(name)
            if not self.pending:
                self.all_done.set()

    def _wait(self, event):
        while not event.wait(0.05):
            if self.stop.is_set():
                return False
        return True

    def wait_first(self):
        """May the other hosts lock now? (The first host is locked, or could not be reached.)"""
        return self._wait(self.first_done) and self.first_ok

    def barrier(self):
        """None once every host is locked (or unreachable), or once a stop was asked for (the
        run then stops on its own: executor.Runner.run); else why this host must stop."""
        self._wait(self.all_done)
        return self.refusal


class Hold:
    """Every host's switch waits for the fleet's once-per-deploy steps (the migration on the
    primary host): the gate before activate answers "go" once they succeeded, "stop" when they
    failed or the primary ended without running them."""

    def __init__(self, primary):
        self.primary = primary
        self.done = threading.Event()
        self.ok = None
        self.reason = ""

    def answer(self):
        if not self.done.is_set():
            return None
        return "go" if self.ok else "stop"

    def refused(self):
        return self.done.is_set() and not self.ok

    def signalled(self, signal, code):
        self.resolve(code == 0, "" if code == 0 else f"the migration on {self.primary} failed (exit {code})")

    def resolve(self, ok, reason=""):
        if not self.done.is_set():
            self.ok, self.reason = ok, reason
            self.done.set()


class Fleet:
    def __init__(self, hosts, pipeline, operator, emit, parallel=None, stop_event=None, plans=None, primary=None,
                 abort_event=None):
        self.abort = abort_event
        self.hosts = hosts
        # One host and nothing else to wait for: no hold (its own migration precedes its switch).
        self.hold = Hold(primary) if primary and len(hosts) > 1 else None
        self.pipeline = pipeline
        self.operator = operator
        self.emit = emit
        self.parallel = max(1, min(parallel or pipeline.parallel or DEFAULT_PARALLEL, len(hosts) or 1))
        self.stop = stop_event or threading.Event()
        self.plans = plans or {}  # host name -> the deploy plan already made for it
        self.batch_log = []       # per batch that ran: number, hosts, times, failed, outcome (reports)

    def map(self, fn, hosts, workers=None):
        """Run fn(host) for every host, at most `parallel` (or `workers`) at once; results in host order."""
        if not hosts:
            return []
        width = max(1, min(workers or self.parallel, self.parallel, len(hosts)))
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="host") as pool:
            return list(pool.map(fn, hosts))

    def lock_all(self, release):
        """Take every host's lock before the first batch: the rollout is one deploy.

        The first host (by name) is locked alone first: of two runs started at once on the
        same hosts, the one that gets it proceeds and the other stops there, before touching
        anything (no run ends up holding half the fleet). Unreachable hosts are reported and
        left out; a host locked by someone else stops the whole run.
        """
        ordered = sorted(self.hosts, key=lambda h: h.name)
        held, results = {}, {}
        # Only the hosts that start right away keep their connection; the others give it up as
        # soon as their lock is taken (the lock stays) and connect again when their turn comes:
        # a host of batch 5 must not sit on an idle connection for the whole rollout, and the
        # lock pass itself never holds more connections than the parallelism.
        first_wave = {h.name for h in batches(self.hosts, self.serial)[0][:self.parallel]} if self.hosts else set()

        def take(host):
            transport, result = ops.lock_host(host, self.pipeline, release, self.operator, self.emit,
                                              self.plans.get(host.name))
            if transport is not None and host.name not in first_wave:
                transport.close()
                return host, None, result, True
            return host, transport, result, transport is not None

        # The hosts that give their connection up first, the ones that keep it last: open
        # connections never exceed the parallelism, during the lock pass either.
        later = [h for h in ordered[1:] if h.name not in first_wave]
        wave = [h for h in ordered[1:] if h.name in first_wave]
        outcomes = [take(ordered[0])] if ordered else []
        if outcomes and outcomes[0][2].state != ops.LOCKED:
            kept = 1 if outcomes[0][1] is not None else 0
            outcomes += self.map(take, later, workers=self.parallel - kept)
            outcomes += self.map(take, wave)
        for host, transport, result, locked in sorted(outcomes, key=lambda o: o[0].name):
            results[host.name] = result
            if locked:
                held[host.name] = transport   # None: locked, connects again at its turn
        if any(r.state in _BLOCKING for r in results.values()):
            blocker = next(n for n, r in results.items() if r.state in _BLOCKING)
            message = _not_deployed(blocker, results[blocker].state)
            for host in ordered:
                if host.name not in results:
                    results[host.name] = ops.HostResult(host.name, release, state=ops.UNTOUCHED,
                                                        message=message)
                if host.name in held:
                    ops.release_lock(host, self.pipeline, release, self.operator, held.pop(host.name))
                    results[host.name] = ops.HostResult(host.name, release, state=ops.UNTOUCHED,
                                                        message=message)
            return None, results
        return held, results

    def deploy(self, release, serial=None, max_fail=None, rollback_all=False):
        results = {h.name: ops.HostResult(h.name, release, message="not started") for h in self.hosts}
        self.serial = serial or self.pipeline.serial
        self.locks = None
        if len(self.hosts) == 1:
            # One host: its lock is taken in its own first session (one round trip less).
            held, lock_results = {self.hosts[0].name: _FOLD}, {}
        elif self._all_at_once():
            # Every host starts at once: each takes its lock in its own session and goes on
            # (see _Locks); nothing after its rsync runs before every lock was answered.
            self.locks = _Locks([h.name for h in self.hosts], min(h.name for h in self.hosts), self.stop)
            held, lock_results = {h.name: _OWN for h in self.hosts}, {}
        else:
            held, lock_results = self.lock_all(release)
        results.update(lock_results)
        if held is None:
            for r in lock_results.values():
                self.emit({"type": "host_end", "host": r.host, "result": r})
            return [results[h.name] for h in self.hosts]
        for r in lock_results.values():
            if r.state == ops.UNREACHABLE:
                self.emit({"type": "host_end", "host": r.host, "result": r})
        serial = self.serial
        max_fail = self.pipeline.max_fail if max_fail is None else max_fail
        done_batches = []
        try:
            for number, batch in enumerate(batches(self.hosts, serial), 1):
                if self.stop.is_set():
                    break
                self.emit({"type": "batch", "number": number, "hosts": [h.name for h in batch]})
                log = {"number": number, "hosts": [h.name for h in batch], "started": round(time.time(), 3)}
                batch_results = self.map(lambda h: self._deploy_one(h, release, held, results), batch)
                for r in batch_results:
                    r.batch = number
                    results[r.host] = r
                done_batches.append(batch)
                if self.locks is not None and self.locks.blocker:
                    # A lock held elsewhere stopped the run, as lock_all would have: no host
                    # switched, nothing to roll back, no threshold to apply.
                    self.batch_log.append({**log, "ended": round(time.time(), 3), "failed": [self.locks.blocker],
                                           "max_fail": 0, "stopped_rollout": True})
                    break
                failed = [r for r in batch_results if r.state not in ops.OK_STATES]
                log.update(ended=round(time.time(), 3), failed=[r.host for r in failed],
                           max_fail=threshold(max_fail, len(batch)), stopped_rollout=False)
                self.batch_log.append(log)
                if self.stop.is_set():
                    # Interrupted: hosts that switched and verified are kept (a complete, proven
                    # release); the rest never started. Nothing is half-switched either way.
                    break
                if len(failed) > threshold(max_fail, len(batch)):
                    scope = [h for b in done_batches for h in b] if rollback_all else batch
                    revert = [h for h in scope if results[h.name].state == ops.DEPLOYED]
                    log["stopped_rollout"] = True
                    self.emit({"type": "message", "text": f"batch {number}: {len(failed)} of {len(batch)} hosts failed "
                               f"(max_fail {max_fail}); stopping the rollout"
                               + (f", rolling back {', '.join(h.name for h in revert)}" if revert else "")})
                    self._revert(revert, results, release)
                    break
        finally:
            # Hosts never started (stopped rollout, Ctrl-C) still hold our lock: give it back.
            for host in self.hosts:
                if host.name in held:
                    transport = held.pop(host.name)
                    if transport not in (_FOLD, _OWN):   # those never took a lock
                        ops.release_lock(host, self.pipeline, release, self.operator, transport)
                    r = results[host.name]
                    r.state = ops.UNTOUCHED
                    r.message = "not started: " + ("run interrupted" if self.stop.is_set() else "rollout stopped")
        return [results[h.name] for h in self.hosts]

    def _deploy_one(self, host, release, held, results):
        result = self._start(host, release, held, results)
        if self.hold and host.name == self.hold.primary:
            # The primary ended and its migration did not end (failed before it, unreachable,
            # never started): the other hosts must not wait for it.
            self.hold.resolve(False, f"{host.name} ended '{result.state}' before its migration ran")
        return result

    def _start(self, host, release, held, results):
        if host.name not in held:   # unreachable when locking
            return results[host.name]
        if self.stop.is_set():
            # Not started: the finally of deploy() gives its lock back.
            return ops.HostResult(host.name, release, state=ops.UNTOUCHED, message="not started: run interrupted")
        transport = held.pop(host.name)
        if transport is _OWN:
            return self._lock_and_deploy(host, release)
        if transport is _FOLD:
            return ops.deploy_host(host, self.pipeline, release, self.operator, self.emit,
                                   steps=self.plans.get(host.name), stop=self.stop, hold=self.hold, abort=self.abort)
        return ops.deploy_host(host, self.pipeline, release, self.operator, self.emit, transport=transport,
                               steps=self.plans.get(host.name), stop=self.stop, locked=results[host.name],
                               hold=self.hold, abort=self.abort)

    def _all_at_once(self):
        """Every host starts right away, each keeping its connection: the lock pass can go host
        by host (_lock_and_deploy). Not in place, where rsync writes into the live tree."""
        first = batches(self.hosts, self.serial)[0] if self.hosts else []
        return (len(first) == len(self.hosts) <= self.parallel and self.pipeline.strategy != "in-place"
                and all(h.name in self.plans for h in self.hosts))

    def _lock_and_deploy(self, host, release):
        """One host of an all-at-once rollout: connect and start its session, take its lock (the
        first host's alone first, as lock_all does), then deploy on without waiting for the
        others: its rsync overlaps their logins; its build waits for every lock (_Locks.barrier)."""
        locks, plan = self.locks, self.plans[host.name]
        transport = ops.open_host(host, plan, self.emit)
        if host.name != locks.first and not locks.wait_first():
            if transport is not None:
                transport.close()
            message = "not deployed: run interrupted" if self.stop.is_set() else _not_deployed(locks.first, ops.LOCKED)
            result = ops.HostResult(host.name, release, state=ops.UNTOUCHED, message=message)
            locks.report(host.name, result.state)
            self.emit({"type": "host_end", "host": host.name, "result": result})
            return result
        transport, result = ops.lock_host(host, self.pipeline, release, self.operator, self.emit, plan,
                                          transport=transport)
        locks.report(host.name, result.state)
        if transport is None:   # not locked: held elsewhere, failed, unreachable
            self.emit({"type": "host_end", "host": host.name, "result": result})
            return result
        return ops.deploy_host(host, self.pipeline, release, self.operator, self.emit, transport=transport,
                               steps=plan, stop=self.stop, locked=result, hold=self.hold, abort=self.abort,
                               barrier=locks.barrier)

    def _revert(self, hosts, results, release):
        def revert(host):
            prev = results[host.name].previous
            if not prev:
                r = results[host.name]
                r.state, r.message = ops.NEEDS_HUMAN, "batch failed but this host has no previous release to go back to"
                return r
            r, _ = ops.rollback_host(host, self.pipeline, self.operator, self.emit, to=prev,
                                     mark_bad=release, reason="rollout stopped: batch over max_fail")
            return r
        for r in self.map(revert, hosts):
            old = results[r.host]
            if r is old:
                continue
            r.steps = old.steps + r.steps
            r.executed = old.executed + r.executed
            # Same shape as an automatic rollback: the release tried, and the one live again.
            r.release, r.previous = release, old.previous
            r.batch = old.batch
            r.actions = old.actions + [{"action": "rollback", "to": old.previous,
                                        "why": "rollout stopped: batch over max_fail"}]
            results[r.host] = r
