"""One SSH connection per host, reused by every step: strict host keys, timeouts, TCP_NODELAY.

Fabric's Connection is used for connection management and running commands; its default host
key policy (trust anything: docs/why.md#fabric-host-keys) is replaced before connecting.
"""

import base64
import codecs
import hashlib
import io
import os
import shlex
import socket
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass

import paramiko
from fabric import Config, Connection

from .errors import DeployError


class TransportError(DeployError):
    """The host could not be reached or refused us: nothing was run there."""

    def __init__(self, message, hint=None):
        self.message, self.hint = message, hint
        super().__init__(message + (f"\n  hint: {hint}" if hint else ""))


class HostKeyError(TransportError):
    pass


class SessionLost(TransportError):
    """The connection died (or the host stopped answering) while a session ran. `output` is
    what the session had printed by then."""

    def __init__(self, message, output=""):
        super().__init__(message)
        self.output = output


class InstallError(DeployError):
    """The host refused the tool's programs (disk full, permissions): nothing else was changed."""


class CommandTimeout(DeployError):
    """A local command (rsync) ran past its timeout."""


@dataclass
class Session:
    output: str
    stderr: str
    exit_code: int | None
    aborted: bool = False
    paused: object = None   # the open session, left waiting (Transport.run's pause)


class _Open:
    """A session's open channel and its output decoder, kept between run() and resume()."""

    def __init__(self, chan):
        self.chan = chan
        self.decode = codecs.getincrementaldecoder("utf-8")(errors="replace")


# Seconds of silence after which the host is asked for a reply (an SSH global request, which
# every server must answer, with success or failure).
STALL_PING = 5.0


class _Liveness:
    """Is the host still there while a session is silent? paramiko's own keepalive asks for no
    reply, so it cannot tell a frozen host from a quiet command; this one asks for a reply."""

    def __init__(self, transport, stall_timeout):
        self.transport = transport
        self.stall_timeout = stall_timeout
        self.last = time.monotonic()
        self.asked = None
        self.event = None

    def heard(self):
        self.last = time.monotonic()
        self.asked = None

    def lost(self):
        now = time.monotonic()
        if self.asked is not None:
            if self.event.is_set():
                self.heard()
                return False
            return now - self.asked > self.stall_timeout
        if now - self.last >= min(STALL_PING, self.stall_timeout):
            self._ask()
            self.asked = now
        return False

    def _ask(self):
        # Transport.global_request(wait=True) would block without a timeout: send the same
        # message ourselves and look at paramiko's completion event from the read loop.
        self.event = threading.Event()
        self.transport.completion_event = self.event
        m = paramiko.Message()
        m.add_byte(paramiko.common.cMSG_GLOBAL_REQUEST)
        m.add_string("keepalive@openssh.com")
        m.add_boolean(True)
        self.transport._send_user_message(m)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """OpenSSH's StrictHostKeyChecking=accept-new: learn unknown hosts, still refuse changed keys
    (paramiko raises BadHostKeyException for a changed key before asking the policy)."""

    def __init__(self, path):
        self.path = path

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


_FABRIC_CONFIG = Config(overrides={"load_ssh_configs": False})


def _sha256(key):
    """OpenSSH's fingerprint format, so it can be compared with `ssh-keygen -lf`."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_name(host):
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


class Transport:
    def __init__(self, host):
        self.host = host
        self.conn = None
        self._sock = None
        self._bridge = None
        self.paused = None   # a session left waiting for its next part (run's pause), if any

    def connect(self):
        host = self.host
        known_hosts = os.path.expanduser(host.known_hosts)
        try:
            sock = socket.create_connection((host.address, host.port), timeout=host.connect_timeout)
        except OSError as exc:
            raise TransportError(f"cannot connect to {host.address}:{host.port}: {exc.strerror or exc}",
                                 "is the host up and sshd listening? check address/port in the inventory") from None
        # Paramiko leaves Nagle on: 47 ms per round trip instead of 6 ms (docs/why.md#nagle).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kwargs = {"sock": sock, "banner_timeout": host.connect_timeout,
                  "auth_timeout": host.connect_timeout}
        if host.key:
            kwargs.update(key_filename=os.path.expanduser(host.key), look_for_keys=False, allow_agent=False)
        # The inventory is the only source of truth: ~/.ssh/config must not redirect the host,
        # add a proxy or other keys behind the tool's back.
        conn = Connection(host.address, user=host.user, port=host.port, connect_kwargs=kwargs,
                          connect_timeout=host.connect_timeout, config=_FABRIC_CONFIG)
        client = conn.client
        if os.path.exists(known_hosts):
            client.load_host_keys(known_hosts)
        if host.host_key_policy == "accept-new":
            client.set_missing_host_key_policy(_AcceptNew(known_hosts))
        else:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        name = _known_name(host)
        try:
            conn.open()
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"host key for {name} CHANGED (now {exc.key.get_name()} {_sha256(exc.key)}); refusing to connect",
                f"if the host was really re-installed: ssh-keygen -R '{name}' -f {known_hosts}, then add the new key "
                f"(verify its fingerprint out of band) with ssh-keyscan -p {host.port} {host.address} >> {known_hosts}") from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    f"host key for {name} is unknown (not in {known_hosts}); refusing to connect",
                    f"verify the fingerprint, then: ssh-keyscan -p {host.port} {host.address} >> {known_hosts}"
                    " (or set host_key_policy: accept-new)") from None
            if isinstance(exc, paramiko.AuthenticationException):
                raise TransportError(f"authentication failed for {host.user}@{name}",
                                     "check user and key in the inventory; is the public key in authorized_keys?") from None
            raise TransportError(f"SSH to {name} failed: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            raise TransportError(f"SSH to {name} failed: {exc}") from None
        self.conn = conn
        self._sock = sock
        return self

    def run(self, script, on_output=None, tick=None, keep_stdin=False, pause=None):
        """Run a shell script in one session. Returns a Session (output, exit code, aborted).

        on_output(text): called with each decoded chunk; it may return text to send to the
        script's stdin (the switch gate's answer, see executor.py). keep_stdin: leave stdin open
        for such answers (otherwise it is closed at once: commands never wait for input).
        tick(): called at least twice a second; returning False aborts the session (a command
        ran past its timeout; the executor then kills what is left of it on the host); returning
        text sends it to stdin (a gate answered late).
        pause(): checked after each chunk; once it is true the session is left running, waiting
        on its stdin, and the Session returned carries it as `paused` (see resume): the next
        part of the same script goes on without a new session (and its login shell).

        A host that stops answering is noticed by asking it for a reply every STALL_PING s of
        silence: no reply within host.stall_timeout raises SessionLost, like a dropped
        connection. Either way the exception carries the output received so far, so the caller
        learns which commands finished (the switch of current among them).

        A bare channel on Fabric's connection rather than Connection.run: invoke's runner polls
        every 10 ms with two reader threads per session, which cost CPU per host for as long as
        a command runs (measured in bench/: half the tool's CPU per host at 32 hosts).
        """
        try:
            chan = self.conn.client.get_transport().open_session(timeout=self.host.connect_timeout)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SessionLost(f"connection to {self.host.name} lost: {exc}", "") from None
        try:
            chan.settimeout(0.5)
            chan.exec_command(script)
            if not keep_stdin and pause is None:
                chan.shutdown_write()  # no stdin: commands must never wait for input
        except (OSError, EOFError, paramiko.SSHException) as exc:
            chan.close()
            raise SessionLost(f"connection to {self.host.name} lost: {exc}", "") from None
        return self._pump(_Open(chan), on_output, tick, pause)

    def resume(self, paused, answer, on_output=None, tick=None, pause=None):
        """Go on with a session left waiting by run(pause=...): `answer` goes to its stdin
        ("go\n" to run the rest of its script, "stop\n" to end it), then as run()."""
        if self.paused is paused:
            self.paused = None
        try:
            paused.chan.sendall(answer.encode())
        except (OSError, EOFError, paramiko.SSHException) as exc:
            paused.chan.close()
            raise SessionLost(f"connection to {self.host.name} lost: {exc}", "") from None
        return self._pump(paused, on_output, tick, pause)

    def _pump(self, op, on_output, tick, pause):
        chan = op.chan
        out, err = [], []
        liveness = _Liveness(self.conn.client.get_transport(), self.host.stall_timeout)
        aborted = False
        keep = False
        try:
            try:
                while True:
                    while chan.recv_stderr_ready():
                        err.append(chan.recv_stderr(65536))
                        liveness.heard()
                    try:
                        data = chan.recv(65536)
                    except socket.timeout:
                        data = None
                    if data:
                        liveness.heard()
                        text = op.decode.decode(data)
                        out.append(text)
                        reply = on_output(text) if on_output and text else None
                        if reply is not None:
                            chan.sendall(reply.encode())
                        if pause is not None and pause():
                            keep = True
                            self.paused = op
                            return Session("".join(out), b"".join(err).decode(errors="replace"), None, paused=op)
                    elif data == b"":
                        break  # EOF: the script ended (or the connection did)
                    said = tick() if tick is not None else True
                    if said is False:
                        aborted = True
                        break
                    if isinstance(said, str):
                        chan.sendall(said.encode())
                    if liveness.lost():
                        raise SessionLost(f"{self.host.name} stopped answering (no reply for "
                                          f"{self.host.stall_timeout}s)", "".join(out))
                if aborted:
                    return Session("".join(out), b"".join(err).decode(errors="replace"), None, aborted=True)
                out.append(op.decode.decode(b"", final=True))
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                code = chan.recv_exit_status()
            finally:
                if not keep:
                    chan.close()
        except SessionLost:
            raise
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SessionLost(f"connection to {self.host.name} lost: {exc}", "".join(out)) from None
        if code == -1 and not self.conn.transport.is_active():
            raise SessionLost(f"connection to {self.host.name} lost while a command ran", "".join(out))
        return Session("".join(out), b"".join(err).decode(errors="replace"), code)

    def alive(self):
        return self.conn is not None and self.conn.transport is not None and self.conn.transport.is_active()

    def reconnect(self):
        """A new connection after a lost one (same checks: host key, timeouts). Raises
        TransportError when the host still cannot be reached."""
        self.close()
        return self.connect()

    def run_local(self, command, timeout=None, env=None):
        """Run a local command that talks to this host through the connection (rsync over
        deploy/rsh.py). Returns (stdout, stderr, exit_code).

        Its own process group: a Ctrl-C in the terminal reaches the tool, which decides, and
        not rsync, which would die half-way. A host that stops answering ends it like a
        remote session (SessionLost), instead of a hang until the timeout.
        """
        proc = subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, start_new_session=True)
        deadline = time.monotonic() + timeout if timeout else None
        liveness = _Liveness(self.conn.client.get_transport(), self.host.stall_timeout)
        while True:
            try:
                out, err = proc.communicate(timeout=0.5)
                return out, err, proc.returncode
            except subprocess.TimeoutExpired:
                pass
            if deadline and time.monotonic() > deadline:
                _kill_group(proc)
                raise CommandTimeout(f"timed out after {timeout}s")
            if liveness.lost() or not self.alive():
                _kill_group(proc)
                raise SessionLost(f"{self.host.name} stopped answering (no reply for {self.host.stall_timeout}s)")

    def rsh_socket(self):
        """The unix socket through which deploy/rsh.py (rsync's -e) reaches this connection."""
        if self._bridge is None:
            self._bridge = RshBridge(self.conn.client.get_transport(), self.host.name)
        return self._bridge.path

    def rsh_errors(self):
        return self._bridge.errors() if self._bridge else ""

    def install(self, directory, files):
        """Write files {name: bytes} into `directory` on the host, over an SSH session of this
        connection (a tar stream on stdin: no SFTP, which hardened servers often disable).
        Each file lands by rename, so a program running meanwhile never sees half a file."""
        stream = io.BytesIO()
        with tarfile.open(fileobj=stream, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        # Inline on purpose: it is what installs programs, so it cannot be one of them.
        script = ("umask 022; d=" + shlex.quote(directory) + "; mkdir -p \"$d\" && t=$(mktemp -d \"$d/.install.XXXXXX\")"
                  " && tar -xf - -C \"$t\" && for f in \"$t\"/*; do mv -f \"$f\" \"$d/\" || exit 1; done"
                  " && rmdir \"$t\"")
        try:
            chan = self.conn.client.get_transport().open_session(timeout=self.host.connect_timeout)
            try:
                chan.settimeout(self.host.command_timeout)
                chan.exec_command(script)
                chan.sendall(stream.getvalue())
                chan.shutdown_write()
                err = chan.makefile_stderr("rb").read().decode(errors="replace")
                code = chan.recv_exit_status()
            finally:
                chan.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise SessionLost(f"install into {directory} on {self.host.name} failed: {exc}") from None
        if code != 0:
            raise InstallError(f"install into {directory} on {self.host.name} failed (exit {code}): {err.strip()[-300:]}")

    def close(self):
        self.paused = None   # its channel ends with the connection; the script sees EOF and stops
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None
        if self._sock is not None:
            # Shut the socket down first: a close() alone waits for paramiko's reader thread to
            # leave its recv() (up to 0.1 s) before the FIN goes out, so in a rollout the next
            # host's connection opened while this one was still up (21-23 at --parallel 20).
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def recv_line(conn):
    """The bridge's request: one newline-ended line (the command), read a byte at a time so
    nothing after it is consumed; None when the other side closed first."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            return None
        line += chunk
    return line.decode().rstrip("\n")


class RshBridge:
    """Runs remote commands for deploy/rsh.py over an existing paramiko transport.

    A unix socket in a private 0700 directory: only this user's processes can use the
    connection. One accepted connection = one remote command; bytes are relayed both ways,
    stderr of the remote command is kept for the failure message.
    """

    def __init__(self, transport, name):
        self.transport = transport
        self.dir = tempfile.mkdtemp(prefix=f"deploy-rsh-{name}-")
        os.chmod(self.dir, 0o700)
        self.path = os.path.join(self.dir, "sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(4)
        self._stderr = []
        threading.Thread(target=self._accept, daemon=True, name=f"rsh-{name}").start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        chan = None
        try:
            command = recv_line(conn)
            if command is None:
                return
            chan = self.transport.open_session()
            chan.exec_command(command)
            threading.Thread(target=self._to_channel, args=(conn, chan), daemon=True).start()
            while True:
                while chan.recv_stderr_ready():
                    self._stderr.append(chan.recv_stderr(65536))
                data = chan.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            while chan.recv_stderr_ready():
                self._stderr.append(chan.recv_stderr(65536))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._stderr.append(f"tunnel: {exc}\n".encode())
        finally:
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()
            if chan is not None:
                chan.close()

    @staticmethod
    def _to_channel(conn, chan):
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                chan.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            try:
                chan.shutdown_write()
            except (OSError, EOFError, paramiko.SSHException):
                pass

    def errors(self):
        return b"".join(self._stderr).decode(errors="replace")

    def close(self):
        self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _kill_group(proc):
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.communicate(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_local(command, timeout=None, env=None):
    """Run a local shell command (rsync). Returns (stdout, stderr, exit_code)."""
    try:
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        raise CommandTimeout(f"timed out after {timeout}s") from None
    return proc.stdout, proc.stderr, proc.returncode
