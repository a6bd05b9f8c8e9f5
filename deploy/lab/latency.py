"""A delaying TCP relay in front of a lab host's sshd: a WAN round trip on loopback.

Every chunk read from either side is written to the other side DELAY later (so a round trip
costs 2 x DELAY), in the order it was read; end-of-stream is delayed the same way. Kernel
queueing disciplines (netem) are not available on these machines, a relay needs nothing.

The relay also counts, per host, what the benchmark reports: TCP connections (total, open
now, most open at once), bytes each way, and "turns": chunks from the client that arrive
after the server sent something since the client's previous chunk. A turn is where an
exchange changes direction; over a WAN each turn the client waits on costs at least one
round trip. It is an upper bound on the round trips a client waited for (SSH keepalives and
window adjustments that cross in flight count too); the wall-time difference between the
same deploy at 0 and at 30 ms round trip is the other measure the benchmark gives.

Standard library only, run by path (`python latency.py serve ...`): the lab starts one per
host, as a daemon with its own pid file. A unix control socket answers one line per request:

    stats          -> {"delay_ms": 15, "connections": 3, "open": 1, "max_open": 2, ...}
    delay MS       -> sets the one-way delay for new chunks, answers the stats
    reset          -> zeroes the counters (not the open connections), answers the stats

`stats(ctl)`, `set_delay(ctl, ms)` and `reset(ctl)` are the client side.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import socket
import sys
import time

CHUNK = 65536
HIGH_WATER = 8 << 20  # bytes queued in one direction before we stop reading that side
COUNTERS = ("connections", "bytes_up", "bytes_down", "chunks_up", "chunks_down", "turns")


class Relay:
    def __init__(self, target_host: str, target_port: int, delay_ms: float):
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self.open = 0
        self.max_open = 0
        self.counts = dict.fromkeys(COUNTERS, 0)

    def snapshot(self) -> dict:
        return {"delay_ms": self.delay * 1000.0, "open": self.open, "max_open": self.max_open, **self.counts}

    def reset(self) -> None:
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.max_open = self.open

    async def handle(self, client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.counts["connections"] += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        last = {"dir": None}
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, "up", last),
                self._pipe(server_r, client_w, "down", last),
            )
        finally:
            self.open -= 1
            for w in (client_w, server_w):
                w.close()

    async def _pipe(self, reader, writer, direction, last):
        """Read one side, write to the other `delay` later, in order, end-of-stream included."""
        queue = collections.deque()
        queued = {"bytes": 0}
        ready = asyncio.Event()
        room = asyncio.Event()
        room.set()

        async def deliver():
            try:
                await _deliver()
            finally:
                room.set()  # a dead peer must not leave the reader waiting for room

        async def _deliver():
            loop = asyncio.get_running_loop()
            while True:
                while not queue:
                    ready.clear()
                    await ready.wait()
                due, data = queue.popleft()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
                queued["bytes"] -= len(data)
                if queued["bytes"] < HIGH_WATER:
                    room.set()

        sender = asyncio.ensure_future(deliver())
        loop = asyncio.get_running_loop()
        try:
            while True:
                await room.wait()
                if sender.done():
                    break  # the other side is gone: nothing more can be delivered
                try:
                    data = await reader.read(CHUNK)
                except (ConnectionError, OSError):
                    data = b""
                due = loop.time() + self.delay
                if not data:
                    queue.append((due, None))
                    ready.set()
                    break
                self.counts[f"bytes_{direction}"] += len(data)
                self.counts[f"chunks_{direction}"] += 1
                if direction == "up" and last["dir"] == "down":
                    self.counts["turns"] += 1
                last["dir"] = direction
                queue.append((due, data))
                queued["bytes"] += len(data)
                if queued["bytes"] >= HIGH_WATER:
                    room.clear()
                ready.set()
            await sender
        except (ConnectionError, OSError):
            pass
        finally:
            if not sender.done():
                sender.cancel()

    async def control(self, reader, writer):
        try:
            line = (await reader.readline()).decode(errors="replace").split()
            if line[:1] == ["delay"] and len(line) == 2:
                self.delay = max(0.0, float(line[1])) / 1000.0
            elif line[:1] == ["reset"]:
                self.reset()
            elif line[:1] != ["stats"]:
                writer.write(json.dumps({"error": f"unknown request {' '.join(line)!r}"}).encode() + b"\n")
                return
            writer.write(json.dumps(self.snapshot()).encode() + b"\n")
            await writer.drain()
        except (ValueError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


# --------------------------------------------------------------------------- client side


def _ask(ctl: str, request: str, timeout: float = 5.0) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(ctl)
        s.sendall(request.encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
    data = json.loads(buf)
    if "error" in data:
        raise ValueError(data["error"])
    return data


def stats(ctl: str) -> dict:
    """Counters of the relay behind the control socket `ctl`."""
    return _ask(ctl, "stats")


def set_delay(ctl: str, delay_ms: float) -> dict:
    """Change the one-way delay (ms) of a running relay; chunks already queued keep theirs."""
    return _ask(ctl, f"delay {float(delay_ms)}")


def reset(ctl: str) -> dict:
    return _ask(ctl, "reset")


# --------------------------------------------------------------------------- server side


async def _serve(listen: socket.socket, ctl: str, relay: Relay) -> None:
    server = await asyncio.start_server(relay.handle, sock=listen, limit=CHUNK)
    if os.path.exists(ctl):
        os.unlink(ctl)
    control = await asyncio.start_unix_server(relay.control, path=ctl)
    os.chmod(ctl, 0o600)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    async with server, control:
        await stop.wait()
    try:
        os.unlink(ctl)
    except OSError:
        pass


def _listen_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(512)
    s.setblocking(False)
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="latency.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ps = sub.add_parser("serve", help="relay 127.0.0.1:LISTEN to 127.0.0.1:TARGET with a delay each way")
    ps.add_argument("--listen", type=int, required=True)
    ps.add_argument("--target", type=int, required=True)
    ps.add_argument("--delay-ms", type=float, default=0.0, help="one-way delay (a round trip costs twice this)")
    ps.add_argument("--ctl", required=True, help="unix control socket (stats, delay MS, reset)")
    ps.add_argument("--pid-file", help="with it: run as a daemon and write its pid here")
    ps.add_argument("--log", default=os.devnull)
    for name in ("stats", "reset"):
        sub.add_parser(name).add_argument("--ctl", required=True)
    pd = sub.add_parser("delay")
    pd.add_argument("--ctl", required=True)
    pd.add_argument("ms", type=float)
    a = p.parse_args(argv)
    if a.cmd != "serve":
        try:
            out = {"stats": stats, "reset": reset}[a.cmd](a.ctl) if a.cmd != "delay" else set_delay(a.ctl, a.ms)
        except (OSError, ValueError) as exc:
            print(f"latency: {a.ctl}: {exc}", file=sys.stderr)
            return 1
        print(json.dumps(out))
        return 0
    try:
        listen = _listen_socket(a.listen)  # before forking: a busy port fails in the foreground
    except OSError as exc:
        print(f"latency: cannot listen on 127.0.0.1:{a.listen}: {exc}", file=sys.stderr)
        return 1
    relay = Relay("127.0.0.1", a.target, a.delay_ms)
    if a.pid_file:
        pid = os.fork()
        if pid:
            tmp = f"{a.pid_file}.tmp{os.getpid()}"
            with open(tmp, "w") as fh:
                fh.write(f"{pid}\n")
            os.replace(tmp, a.pid_file)
            os._exit(0)
        os.setsid()
        fd = os.open(a.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        print(f"--- {time.strftime('%F %T')} relay 127.0.0.1:{a.listen} -> 127.0.0.1:{a.target}, "
              f"{a.delay_ms:g} ms each way", flush=True)
    asyncio.run(_serve(listen, a.ctl, relay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
