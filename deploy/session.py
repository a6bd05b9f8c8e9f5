"""One host, one connection, for one operation: connect, hand over a Runner, give back the lock
if the operation took it and did not release it, close. Every operation on a host (deploy,
rollback, heal, health, releases, unlock) goes through it.

    with HostSession(host, emit) as s:          # raises TransportError when it cannot connect
        results = s.run([locks.take(ctx, op), prepare])
        ...

`s.run` is the runner's run; a successful lock step marks the session as holding the lock
(`locked`), and a successful `locks.release` command (its "unlocked" fact) as no longer
holding it. On leaving the block, a lock still held is released when the connection is alive
(best effort: a failing operation must still end unlocked), then the connection is closed.
"""

import time

from . import plan as planner
from .commands import PlannedStep
from .context import StepContext
from .executor import Runner
from .transport import HostKeyError, Transport, TransportError


def connect(host):
    return Transport(host).connect()


class HostSession:
    def __init__(self, host, emit, operator=None, pipeline=None, stop=None, transport=None, locked=False,
                 gate_hook=None, on_signal=None, abort=None):
        self.abort = abort
        self.gate_hook, self.on_signal = gate_hook, on_signal   # the fleet's say (executor.Runner)
        self.host = host
        self.emit = emit
        self.operator = operator
        self.pipeline = pipeline
        self.stop = stop
        self.transport = transport      # an open connection handed over (the fleet's lock pass)
        self.locked = locked            # that connection's operation already holds the lock
        self.runner = None

    def __enter__(self):
        if self.transport is None:
            self.transport = connect(self.host)
        self.runner = Runner(self.transport, self.host, self.emit, stop=self.stop, gate_hook=self.gate_hook,
                             on_signal=self.on_signal, abort=self.abort)
        return self

    def __exit__(self, *exc):
        try:
            if self.locked and self.operator is not None and self.transport.alive():
                self.runner.facts.pop("unlocked", None)
                ctx = StepContext(self.host, self.pipeline, "-")
                self.run([PlannedStep("unlock", "unlock", planner.closing(ctx, self.operator))])
        except Exception:  # best effort on a path that is already failing
            pass
        finally:
            self.transport.close()
        return False

    def run(self, planned_steps, interruptible=False, then=None, barrier=None):
        self.runner.facts.pop("unlocked", None)
        try:
            results = self.runner.run(planned_steps, interruptible=interruptible, then=then, barrier=barrier)
        except TransportError as exc:
            self._track(getattr(exc, "results", []))
            raise
        self._track(results)
        return results

    def _track(self, results):
        if any(r.kind == "lock" and r.status == "ok" for r in results):
            self.locked = True
        if "unlocked" in self.runner.facts:
            self.locked = False

    def reconnect(self):
        """A new connection after a lost one, tried every second for up to connect_timeout
        seconds (a host that blinked, an sshd restarted by its supervisor), the first after a
        second: whatever cut the connection is rarely over within milliseconds, and a server
        that is going down may still accept one last connection. True when it worked."""
        deadline = time.monotonic() + self.host.connect_timeout
        time.sleep(1)
        while True:
            try:
                self.transport.reconnect()
                return True
            except HostKeyError:
                return False   # never retried: a changed key is not a blip
            except TransportError:
                if time.monotonic() + 1 > deadline:
                    return False
                time.sleep(1)

    def detach(self):
        """Hand the open connection over (the fleet keeps a locked host's connection for the
        host's own deploy): nothing is released or closed on exit."""
        transport, self.locked = self.transport, False
        self.transport = _Detached()
        return transport


class _Detached:
    def alive(self):
        return False

    def close(self):
        pass
