"""A steady HTTP load on a lab host's nginx, with every answer counted (tests and bench/load.py).

It runs Debian's `wrk` with load.lua: C connections, each pausing before every request, so the
rate stays near what was asked whatever the deploy does to the host; every answer is counted by
its HTTP status, and wrk counts the requests that got no answer at all (connect, read, write
errors and timeouts). A request "failed" when it got a non-2xx answer or none.

    with Load("http://127.0.0.1:8001/version", rate=100) as load:
        ...                          # deploy, roll back, heal
    print(load.result.failed, load.result.p99_ms)

Only the standard library and wrk: the lab does not depend on the rest of the tool.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "load.lua"
MARK = "WRK_RESULT "


class LoadError(RuntimeError):
    """wrk is missing, did not start, or printed no result."""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: dict = field(default_factory=dict)   # {200: 1234, 502: 1}
    errors: dict = field(default_factory=dict)     # {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    @property
    def non_2xx(self):
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def socket_errors(self):
        return sum(self.errors.values())

    @property
    def failed(self):
        """Requests that got a non-2xx answer or no answer (connection errors, timeouts)."""
        return self.non_2xx + self.socket_errors

    @property
    def rate(self):
        return self.requests / self.seconds if self.seconds else 0.0

    def describe(self):
        bad = {s: n for s, n in sorted(self.statuses.items()) if not 200 <= s < 300}
        errs = {k: v for k, v in self.errors.items() if v}
        return (f"{self.requests} requests in {self.seconds:.1f}s ({self.rate:.0f}/s), {self.failed} failed"
                + (f" (non-2xx {bad})" if bad else "") + (f" (no answer {errs})" if errs else "")
                + f", p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms")

    @classmethod
    def parse(cls, text):
        line = next((l for l in text.splitlines() if l.startswith(MARK)), None)
        if line is None:
            raise LoadError(f"wrk printed no result line:\n{text[-2000:]}")
        data = json.loads(line[len(MARK):])
        lat = data["latency_us"]
        return cls(requests=data["requests"], seconds=data["duration_us"] / 1e6,
                   statuses={int(k): v for k, v in data["statuses"].items()}, errors=data["errors"],
                   p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000,
                   max_ms=lat["max"] / 1000)


class Load:
    """wrk against `url` for as long as the `with` block runs (at most `max_seconds`).

    rate: requests per second asked for (approximate: each of the `connections` pauses
    connections/rate seconds before each request, plus the request's own latency); 0: no
    pauses, as fast as the server answers.
    timeout: seconds before wrk counts a request as timed out (an error).
    """

    def __init__(self, url, rate=100, connections=4, timeout=10, max_seconds=900):
        if shutil.which("wrk") is None:
            raise LoadError("wrk is not installed (apt-get install wrk; `make deps` installs it)")
        self.url = url
        self.connections = connections
        self.delay_ms = max(0, int(connections * 1000 / rate)) if rate else 0
        self.timeout = timeout
        self.max_seconds = max_seconds
        self.result = None
        self._proc = None
        self._out = None

    def start(self):
        self._out = tempfile.TemporaryFile(mode="w+")
        argv = ["wrk", "-t", str(min(2, self.connections)), "-c", str(self.connections), "-d", f"{self.max_seconds}s",
                "--timeout", f"{self.timeout}s", "-s", str(LUA), self.url, "--", str(self.delay_ms)]
        self._proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        # wrk connects at once; give it a moment so the load is on before the caller acts.
        time.sleep(0.5)
        if self._proc.poll() is not None:
            raise LoadError(f"wrk exited at once ({self._proc.returncode}):\n{self._read()}")
        return self

    def stop(self):
        """SIGINT makes wrk stop, print its summary and run done(): the counts so far."""
        if self._proc is None:
            return self.result
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout=self.timeout + 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        text = self._read()
        self._out.close()
        self._proc = None
        self.result = LoadResult.parse(text)
        self.output = text
        return self.result

    def _read(self):
        self._out.seek(0)
        return self._out.read()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
