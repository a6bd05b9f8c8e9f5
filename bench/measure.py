"""The benchmark's instruments: run a command and take its wall time, CPU and peak memory;
count SSH connections and sessions from sshd's log; read the latency relays' counters; sample
open SSH connections over time; check that every host serves the new release.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT = 1200


class BenchError(RuntimeError):
    pass


def log(msg):
    import sys
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tail(path, n=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# Python as users run it: with its bytecode cache (some CI images set PYTHONDONTWRITEBYTECODE,
# which would time the compilation of every module on every run).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_measured(argv, stdout_path, stdin_path=None, timeout=RUN_TIMEOUT, cwd=None, on_start=None):
    """Run argv. Returns a dict: code, wall (s), cpu_own (s, the process itself), cpu_total
    (s, with the children it waited for: rsync, ssh, php...), maxrss_kb (peak RSS of the
    largest process of that tree, from the kernel).

    Own CPU comes from /proc/PID/stat read while the process is a zombie (WNOWAIT), before
    wait4() reaps it and returns the totals.
    """
    with open(stdout_path, "wb") as out, open(stdin_path or os.devnull, "rb") as inp:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=inp, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=ENV)
        if on_start:
            on_start(proc.pid)
        deadline = time.monotonic() + timeout
        while True:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            if info is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise BenchError(f"{argv[0]} took more than {timeout}s; output in {stdout_path}")
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        own = None
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            own = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return {"code": proc.returncode, "wall": wall, "cpu_own": own, "cpu_total": ru.ru_utime + ru.ru_stime,
            "maxrss_kb": ru.ru_maxrss}


# ------------------------------------------------------------------------ sshd's log


class SshdLogs:
    """Counts, per host, what its sshd logged since mark(): authenticated connections
    ("Accepted publickey") and sessions ("Starting session: ...", one per channel that runs a
    command or subsystem; the lab's sshd runs at LogLevel VERBOSE for this)."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.offsets = {}

    def mark(self):
        self.offsets = {h.name: _size(h.sshd_log) for h in self.hosts}

    def counts(self):
        out = {}
        for h in self.hosts:
            try:
                with open(h.sshd_log, "rb") as fh:
                    fh.seek(self.offsets.get(h.name, 0))
                    text = fh.read().decode(errors="replace")
            except OSError:
                text = ""
            lines = text.splitlines()
            out[h.name] = {
                "connections": sum("Accepted publickey for" in line for line in lines),
                "sessions": sum(line.startswith("Starting session:") for line in lines),
                "sftp": sum("Starting session: subsystem 'sftp'" in line for line in lines),
            }
        return out


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# ------------------------------------------------------------------- latency relays


class RelayCounters:
    """Differences of the latency relays' counters (deploy/lab/latency.py) across a deploy."""

    def __init__(self, hosts):
        from deploy.lab import latency

        self.latency = latency
        self.hosts = [h for h in hosts if h.proxy_port]
        self.before = {}

    def mark(self):
        self.before = {h.name: self.latency.stats(h.latency_ctl) for h in self.hosts}

    def counts(self, settle=3.0):
        """Counters since mark(); waits (bounded) until the deploy's connections are closed."""
        deadline = time.monotonic() + settle
        while True:
            now = {h.name: self.latency.stats(h.latency_ctl) for h in self.hosts}
            if all(s["open"] == 0 for s in now.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        keys = ("connections", "bytes_up", "bytes_down", "turns")
        return {name: {k: s[k] - self.before.get(name, {}).get(k, 0) for k in keys} for name, s in now.items()}


# ------------------------------------------------------------- open connections over time


def tcp_table():
    """(local port, remote port, state) of every TCP socket on the machine (IPv4 and IPv6); the
    state is /proc/net/tcp's code: "01" ESTABLISHED, "06" TIME_WAIT, "0A" LISTEN."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            text = _read_at_once(table)
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            parts = line.split(None, 4)
            if len(parts) > 3:
                out.append((int(parts[1].rsplit(":", 1)[1], 16), int(parts[2].rsplit(":", 1)[1], 16), parts[3]))
    return out


def _read_at_once(path):
    """The table, read in one tight loop (the kernel builds it a page per read())."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 4 << 20)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)
    finally:
        os.close(fd)


def tcp_sockets():
    """(local port, state) of every TCP socket on the machine."""
    return [(local, state) for local, _, state in tcp_table()]


def ports_in_use():
    """Local ports held by any TCP socket. TIME_WAIT included: a client socket's TIME_WAIT
    blocks a listener's bind for 60 s when the client did not set SO_REUSEADDR."""
    return {port for port, _ in tcp_sockets()}


class ConnectionSampler:
    """Every `interval` s: how many SSH connections to the given sshd ports are open, and the
    peak RSS so far of a process. A connection is counted by its client side (an ESTABLISHED
    socket whose peer is one of the ports: only the tool connects to them during its deploy),
    which is what the tool holds; the server side (`peak_server`) leaves ESTABLISHED a moment
    later, when the client's FIN has arrived."""

    def __init__(self, ports, interval=0.1):
        self.ports = set(ports)
        self.interval = interval
        self.samples = []  # (t, open connections: client side, server side)
        self.pid = None
        self.hwm_kb = 0
        self._stop = threading.Event()
        self._thread = None

    def watch(self, pid):
        self.pid = pid

    def __enter__(self):
        self.t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="conn-sampler")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            # The kernel builds the table page by page as it is read: a connection closed and the
            # next one opened between two pages are both in one read. Two reads in a row, and the
            # lower count of each side: what was open at once for longer than a read.
            counts = [self._count(tcp_table()) for _ in range(2)]
            self.samples.append((time.monotonic() - self.t0, min(c[0] for c in counts), min(c[1] for c in counts)))
            if self.pid:
                self.hwm_kb = max(self.hwm_kb, _vm_hwm(self.pid))
            self._stop.wait(self.interval)

    def _count(self, table):
        established = [(local, remote) for local, remote, state in table if state == "01"]
        return (sum(1 for _, remote in established if remote in self.ports),
                sum(1 for local, _ in established if local in self.ports))

    def peak(self):
        return max((n for _, n, _ in self.samples), default=0)

    def peak_server(self):
        return max((n for _, _, n in self.samples), default=0)

    def series(self, points=12):
        """A short time series: the most open connections in each of `points` equal slices."""
        if not self.samples:
            return []
        end = self.samples[-1][0] or 1e-9
        out = []
        for i in range(points):
            lo, hi = end * i / points, end * (i + 1) / points
            vals = [n for t, n, _ in self.samples if lo <= t < hi or (i == points - 1 and t == end)]
            out.append((round(hi, 1), max(vals) if vals else (out[-1][1] if out else 0)))
        return out


def _vm_hwm(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


# ------------------------------------------------------------------------ HTTP check


def http_body(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace").strip()
    except Exception as exc:  # noqa: BLE001 - reported as a failure by the caller
        return None, f"{type(exc).__name__}: {exc}"


def check_live(hosts, release, who):
    """Every host's /version must answer the release id, or the run fails."""
    bad = []
    for h in hosts:
        status, body = http_body(h.health_url)
        if status != 200 or not re.search(r"(?<![\w.-])" + re.escape(release) + r"(?![\w.-])", body):
            bad.append(f"{h.name}: HTTP {status}, body {body[:120]!r} (want {release})")
    if bad:
        raise BenchError(f"{who} deploy of {release} did not take effect on {len(bad)} host(s):\n  " + "\n  ".join(bad))


def other_sandbox_hosts(roots):
    """FPM masters of sandbox hosts that are not ours (other labs on this machine add noise)."""
    mine = [str(Path(r).resolve()) + "/" for r in roots]
    n = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("php-fpm: master process") and not any(m in cmd for m in mine):
                n += 1
    return n
