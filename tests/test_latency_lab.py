"""deploy/lab/latency.py: the delaying relay in front of a lab host's sshd (WAN latency on
loopback), alone against an echo server, then in a lab: a deploy through it, strict host keys
on the relay's port, counters, and lab.down stopping it."""

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy import lab
from deploy.lab import latency
from helpers import PROJECT, fab, slot_port, slot_root
from labfixture import needs_root, start, wait_for

RELAY = PROJECT / "deploy" / "lab" / "latency.py"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def echo():
    """A TCP echo server on loopback: what comes in goes back out."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


@pytest.fixture
def relay(echo, tmp_path):
    """latency.py in the foreground in front of the echo server, 20 ms each way."""
    port, ctl = _free_port(), str(tmp_path / "relay.ctl")
    proc = subprocess.Popen([sys.executable, str(RELAY), "serve", "--listen", str(port), "--target", str(echo),
                             "--delay-ms", "20", "--ctl", ctl])
    try:
        assert wait_for(lambda: os.path.exists(ctl), timeout=10), "relay did not start"
        yield port, ctl
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _running(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _ping(sock, n):
    rtts = []
    for i in range(n):
        t0 = time.perf_counter()
        sock.sendall(b"p")
        assert sock.recv(16) == b"p"
        rtts.append(time.perf_counter() - t0)
    return rtts


def test_relay_adds_the_round_trip_and_keeps_every_byte_in_order(relay):
    port, ctl = relay
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rtts = _ping(s, 10)
        # 20 ms each way: no reply can come back sooner than 40 ms.
        assert min(rtts) >= 0.040 * 0.999, rtts
        data = os.urandom(5_000_000)
        got = bytearray()

        def read():
            while len(got) < len(data):
                chunk = s.recv(1 << 20)
                if not chunk:
                    return
                got.extend(chunk)

        reader = threading.Thread(target=read)
        reader.start()
        s.sendall(data)
        reader.join(timeout=60)
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        s.shutdown(socket.SHUT_WR)  # end-of-stream goes through too: the echo server closes, we see EOF
        s.settimeout(10)
        assert s.recv(16) == b""
    assert wait_for(lambda: latency.stats(ctl)["open"] == 0, timeout=10)
    st = latency.stats(ctl)
    assert st["connections"] == 1 and st["max_open"] == 1
    assert st["bytes_up"] == st["bytes_down"] == 10 + len(data)
    assert st["turns"] >= 10  # every ping after a pong is an exchange that changes direction
    assert st["delay_ms"] == 20


def test_relay_delay_can_change_while_running_and_counters_reset(relay):
    port, ctl = relay
    assert latency.set_delay(ctl, 50)["delay_ms"] == 50
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert min(_ping(s, 3)) >= 0.100 * 0.999
        latency.set_delay(ctl, 0)
        _ping(s, 3)
    assert wait_for(lambda: latency.stats(ctl)["open"] == 0, timeout=10)
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    assert wait_for(lambda: latency.stats(ctl)["open"] == 3, timeout=10)
    for c in conns:
        c.close()
    assert wait_for(lambda: latency.stats(ctl)["open"] == 0, timeout=10)
    st = latency.stats(ctl)
    assert st["connections"] == 4 and st["max_open"] == 3 and st["delay_ms"] == 0
    st = latency.reset(ctl)
    assert st["connections"] == 0 and st["bytes_up"] == 0 and st["turns"] == 0


def test_relay_refuses_a_busy_port_in_the_foreground(relay, tmp_path):
    port, _ = relay
    r = subprocess.run([sys.executable, str(RELAY), "serve", "--listen", str(port), "--target", "1",
                        "--ctl", str(tmp_path / "x.ctl"), "--pid-file", str(tmp_path / "x.pid")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert not (tmp_path / "x.pid").exists()


# ------------------------------------------------------------------------------ in a lab

ROOT = slot_root("/srv/lablatency")
SSH_BASE, HTTP_BASE, PROXY_BASE = slot_port(3450), slot_port(9450), slot_port(3460)


@pytest.fixture(scope="module")
def wan_lab(tmp_path_factory):
    lab.down(ROOT, purge=True)
    the_lab = start(ROOT, 1, SSH_BASE, HTTP_BASE, tmp_path_factory.mktemp("lablatency"), latency_ms=15,
                    proxy_base=PROXY_BASE)
    yield the_lab
    lab.down(ROOT, purge=True)


@needs_root
@pytest.mark.lab
def test_lab_host_behind_a_relay_deploys_through_it(wan_lab, tmp_path):
    h = wan_lab.hosts["lab1"]
    relay_port = PROXY_BASE + 1
    assert h.proxy_port == relay_port and h.port == relay_port and h.ssh_port == SSH_BASE + 1
    inventory = Path(wan_lab.inventory).read_text()
    assert f"port: {relay_port}" in inventory
    assert f"[127.0.0.1]:{relay_port} ssh-ed25519 " in Path(h.known_hosts).read_text()

    before = lab.proxy_stats("lab1", ROOT)
    t0 = time.perf_counter()
    ssh = subprocess.run(lab.ssh_command("lab1", ROOT) + ["echo via-relay"], capture_output=True, text=True,
                         timeout=60)
    took = time.perf_counter() - t0
    assert ssh.returncode == 0 and ssh.stdout.strip() == "via-relay", ssh.stderr
    # An SSH login needs several round trips of 30 ms each (key exchange, auth, session).
    assert took >= 3 * 0.030

    r = fab("deploy", "--host", "lab1", "--inventory", wan_lab.inventory, "--release", "wan1", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert wan_lab.get("lab1") == (200, "wan1")
    after = lab.proxy_stats("lab1", ROOT)
    assert after["connections"] - before["connections"] == 2  # ssh above + the deploy's one connection
    assert after["bytes_up"] > before["bytes_up"] and after["turns"] > before["turns"]
    log = Path(h.sshd_log).read_text()
    assert log.count("Accepted publickey for root from 127.0.0.1") >= 2
    assert "Starting session: command for root" in log  # LogLevel VERBOSE: sessions are countable


@needs_root
@pytest.mark.lab
def test_host_keys_are_checked_on_the_relay_port(wan_lab):
    h = wan_lab.hosts["lab1"]
    kh = Path(h.known_hosts)
    saved = kh.read_text()
    try:
        kh.write_text("".join(line + "\n" for line in saved.splitlines() if f"]:{h.port} " not in line))
        r = fab("deploy", "--host", "lab1", "--inventory", wan_lab.inventory, "--release", "wan-nokey", timeout=120)
        assert r.returncode != 0
        assert "unknown" in (r.stdout + r.stderr) and f"[127.0.0.1]:{h.port}" in (r.stdout + r.stderr)
    finally:
        kh.write_text(saved)
    assert wan_lab.get("lab1")[1] != "wan-nokey"


@needs_root
@pytest.mark.lab
def test_set_latency_changes_a_running_relay_and_down_stops_it(wan_lab):
    assert [s["delay_ms"] for s in lab.set_latency(40, ROOT)] == [40]
    assert lab.host_info("lab1", ROOT).latency_ms == 40
    lab.set_latency(15, ROOT)
    # up() again keeps the running relay (same port) and applies the asked delay
    hosts = lab.up(1, ROOT, None, SSH_BASE, HTTP_BASE, latency_ms=25, proxy_base=PROXY_BASE)
    assert hosts[0].pids.latency and lab.proxy_stats("lab1", ROOT)["delay_ms"] == 25
    pid = hosts[0].pids.latency
    stopped = lab.down(ROOT)
    assert "lab1:latency" in stopped
    assert wait_for(lambda: not _running(pid), timeout=10)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", PROXY_BASE + 1), timeout=2).close()
    # and up() brings the whole host back, relay included, for the tests that follow
    hosts = lab.up(1, ROOT, wan_lab.inventory, SSH_BASE, HTTP_BASE, latency_ms=15, proxy_base=PROXY_BASE)
    assert hosts[0].pids.latency and hosts[0].port == PROXY_BASE + 1
