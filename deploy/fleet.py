"""Many hosts: rolling batches (canary first), bounded parallelism, a failure threshold per batch.

One release id for the whole run. Each host gets its own connection in its own worker thread
(never shared between threads); at most `parallel` hosts work at once.
"""

import math
import threading
from concurrent.futures import ThreadPoolExecutor

from . import operations as ops

DEFAULT_PARALLEL = 10


def batches(hosts, serial):
    """Split hosts by `serial` (counts or percentages of the whole fleet); the last size repeats."""
    out, i, total = [], 0, len(hosts)
    sizes = list(serial) or ["100%"]
    k = 0
    while i < total:
        spec = sizes[min(k, len(sizes) - 1)]
        text = str(spec)
        size = math.ceil(total * int(text[:-1]) / 100) if text.endswith("%") else int(spec)
        size = max(1, size)
        out.append(hosts[i:i + size])
        i += size
        k += 1
    return out


def threshold(max_fail, batch_size):
    """How many failed hosts a batch tolerates."""
    text = str(max_fail)
    if text.endswith("%"):
        return math.floor(batch_size * int(text[:-1]) / 100)
    return int(max_fail)


class Fleet:
    def __init__(self, hosts, pipeline, operator, emit, parallel=None, stop_event=None):
        self.hosts = hosts
        self.pipeline = pipeline
        self.operator = operator
        self.emit = emit
        self.parallel = max(1, min(parallel or pipeline.parallel or DEFAULT_PARALLEL, len(hosts) or 1))
        self.stop = stop_event or threading.Event()

    def map(self, fn, hosts):
        """Run fn(host) for every host, at most `parallel` at once; results in host order."""
        if not hosts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.parallel, len(hosts)), thread_name_prefix="host") as pool:
            return list(pool.map(fn, hosts))

    def deploy(self, release, serial=None, max_fail=None, rollback_all=False):
        results = {h.name: ops.HostResult(h.name, release) for h in self.hosts}
        serial = serial or self.pipeline.serial
        max_fail = self.pipeline.max_fail if max_fail is None else max_fail
        done_batches = []
        for number, batch in enumerate(batches(self.hosts, serial), 1):
            if self.stop.is_set():
                break
            self.emit({"type": "batch", "number": number, "hosts": [h.name for h in batch]})
            batch_results = self.map(lambda h: self._deploy_one(h, release), batch)
            for r in batch_results:
                results[r.host] = r
            done_batches.append(batch)
            failed = [r for r in batch_results if r.state not in ops.OK_STATES]
            if len(failed) > threshold(max_fail, len(batch)):
                scope = [h for b in done_batches for h in b] if rollback_all else batch
                self.emit({"type": "message", "text": f"batch {number}: {len(failed)} of {len(batch)} hosts failed "
                           f"(max_fail {max_fail}); stopping the rollout and rolling back "
                           f"{'every switched host' if rollback_all else 'this batch'}"})
                self._revert([h for h in scope if results[h.name].state == ops.DEPLOYED], results, release)
                break
        return [results[h.name] for h in self.hosts]

    def _deploy_one(self, host, release):
        if self.stop.is_set():
            return ops.HostResult(host.name, release, state=ops.UNTOUCHED, message="not started: run interrupted")
        return ops.deploy_host(host, self.pipeline, release, self.operator, self.emit)

    def _revert(self, hosts, results, release):
        def revert(host):
            prev = results[host.name].previous
            if not prev:
                r = results[host.name]
                r.state, r.message = ops.NEEDS_HUMAN, "batch failed but this host has no previous release to go back to"
                return r
            r, _ = ops.rollback_host(host, self.pipeline, self.operator, self.emit, to=prev,
                                     mark_bad=release, reason="rollout stopped: batch over max_fail")
            r.release = prev
            return r
        for r in self.map(revert, hosts):
            old = results[r.host]
            r.steps = old.steps + r.steps
            r.executed = old.executed + r.executed
            r.previous = release
            results[r.host] = r
