"""A fake transport: the "host" is this machine, its commands run in a local `sh`, rsync reaches
it through the same rsh tunnel protocol as a real host (deploy/rsh.py -> a unix socket -> a
local process). No SSH, no root. Faults are injected by rules on the session's markers:

    t = LocalTransport(host)
    t.lose_after("E 3")        # the connection dies right after command 3 ended
    t.lose_before("E 3")       # ...or just before its end marker reached the tool: command 3
                               # ran on the host, the tool never heard how it ended
    t.hang_after("B 2")        # the session goes silent (like a frozen sshd)
    t.reconnects = False       # and it does not come back

Used by tests/test_executor.py and tests/test_deploy_flow.py through `deploy.session.connect`.
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from deploy.transport import Session, SessionLost, TransportError, recv_line


class LocalTransport:
    def __init__(self, host):
        self.host = host
        self.rules = []            # (marker, action) matched against session output lines
        self.reconnects = True
        self.sessions = 0          # how many sessions were opened (a seam for counting)
        self.connections = 1
        self.connected = True
        self.installed = []
        self.procs = []            # every session's shell, to reap at the end
        self._bridge = None
        self.paused = None         # a session left waiting for its next part

    # -- faults
    def lose_after(self, marker):
        self.rules.append((marker, "lose"))
        return self

    def lose_before(self, marker):
        self.rules.append((marker, "lose before"))
        return self

    def hang_after(self, marker):
        self.rules.append((marker, "hang"))
        return self

    # -- the Transport interface
    def connect(self):
        return self

    def alive(self):
        return self.connected

    def reconnect(self):
        if not self.reconnects:
            raise TransportError(f"cannot connect to {self.host.name}: refused (fake)")
        if self.paused is not None:   # a new connection: the old one's sessions are gone
            self._close(self.paused.proc)
            self.paused = None
        self.connected = True
        self.connections += 1
        return self

    def close(self):
        if self.paused is not None:
            self._close(self.paused.proc)
            self.paused = None
        if self._bridge:
            self._bridge.close()
            self._bridge = None

    def reap(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
            proc.wait()

    def run(self, script, on_output=None, tick=None, keep_stdin=False, pause=None):
        if not self.connected:
            raise SessionLost(f"connection to {self.host.name} lost (fake)")
        self.sessions += 1
        proc = subprocess.Popen(["sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        if not keep_stdin and pause is None:
            proc.stdin.close()
        return self._pump(_Open(proc), on_output, tick, pause)

    def resume(self, paused, answer, on_output=None, tick=None, pause=None):
        if self.paused is paused:
            self.paused = None
        if not self.connected:
            self._close(paused.proc)
            raise SessionLost(f"connection to {self.host.name} lost (fake)")
        paused.proc.stdin.write(answer.encode())
        paused.proc.stdin.flush()
        return self._pump(paused, on_output, tick, pause)

    def _pump(self, op, on_output, tick, pause):
        proc, streams = op.proc, op.streams
        out, err = [], []
        keep = False
        try:
            while True:
                ready, _, _ = select.select(streams, [], [], 0.1) if streams else ([], [], time.sleep(0.1))
                for f in ready:
                    data = os.read(f.fileno(), 65536)
                    if not data:
                        streams.remove(f)
                        continue
                    if f is proc.stderr:
                        err.append(data.decode(errors="replace"))
                        continue
                    text = data.decode(errors="replace")
                    if op.hung:
                        continue        # a frozen host: nothing reaches the tool any more
                    out.append(text)
                    op.buf += text
                    lines = op.buf.split("\n")
                    op.buf = lines.pop()
                    for line in lines:
                        for marker, action in self.rules:
                            if line == "\x1e" + marker or line.startswith("\x1e" + marker + " "):
                                self.rules.remove((marker, action))
                                if action == "lose":
                                    self.connected = False
                                    raise SessionLost(f"connection to {self.host.name} lost (fake, after {marker})",
                                                      "".join(out))
                                if action == "lose before":
                                    self.connected = False
                                    raise SessionLost(f"connection to {self.host.name} lost (fake, before {marker})",
                                                      op.heard)
                                op.hung = time.monotonic()
                        op.heard += line + "\n"
                    reply = on_output(text) if on_output and not op.hung else None
                    if reply is not None and proc.stdin and not proc.stdin.closed:
                        proc.stdin.write(reply.encode())
                        proc.stdin.flush()
                    if pause is not None and pause() and not op.hung:
                        keep = True
                        self.paused = op
                        return Session("".join(out), "".join(err), None, paused=op)
                if tick is not None:
                    said = tick()
                    if said is False:
                        return Session("".join(out), "".join(err), None, aborted=True)
                    if isinstance(said, str) and proc.stdin and not proc.stdin.closed:
                        proc.stdin.write(said.encode())
                        proc.stdin.flush()
                if op.hung and time.monotonic() - op.hung > self.host.stall_timeout:
                    self.connected = False
                    raise SessionLost(f"{self.host.name} stopped answering (no reply for {self.host.stall_timeout}s)",
                                      "".join(out))
                if not streams and proc.poll() is not None:
                    break
            return Session("".join(out), "".join(err), proc.returncode)
        finally:
            if not keep:
                self._close(proc)

    def _close(self, proc):
        # Like a real channel closing: the script's pipes close (its next write gets
        # SIGPIPE), nothing is killed; a lost connection kills what ran on it, as sshd does.
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except (OSError, AttributeError):
                pass
        if not self.connected and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        self.procs.append(proc)

    def run_local(self, command, timeout=None, env=None):
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
        if not self.connected:
            raise SessionLost(f"connection to {self.host.name} lost (fake)")
        return proc.stdout, proc.stderr, proc.returncode

    def install(self, directory, files):
        if not self.connected:
            raise SessionLost("lost (fake)")
        os.makedirs(directory, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as fh:
                fh.write(data)
            self.installed.append(name)

    def rsh_socket(self):
        if self._bridge is None:
            self._bridge = LocalBridge()
        return self._bridge.path

    def rsh_errors(self):
        return ""


class _Open:
    """One session's shell and what its pump keeps between run() and resume()."""

    def __init__(self, proc):
        self.proc = proc
        self.streams = [proc.stdout, proc.stderr]
        self.buf = ""
        self.heard = ""     # the complete lines before the current one: what a "lose before" delivers
        self.hung = 0.0     # when the session went silent (a "hang" rule)


class LocalBridge:
    """deploy/rsh.py's other end, for a host that is this machine: each connection's first line
    is a command, run here with sh; bytes relayed both ways."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fake-rsh-")
        self.path = os.path.join(self.dir, "sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        command = recv_line(conn)   # the same request protocol as the real bridge
        if command is None:
            return
        proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)

        def pump_in():
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    proc.stdin.write(data)
                    proc.stdin.flush()
            except (OSError, ValueError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        threading.Thread(target=pump_in, daemon=True).start()
        while True:
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            conn.sendall(data)
        proc.wait()
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()

    def close(self):
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)
