"""Real local sandbox "hosts" on loopback, for trying deploys for real.

Each lab host ``lab{i}`` is a set of real daemons started by hand (no systemd):

* its own OpenSSH ``sshd`` on ``127.0.0.1:{ssh_base+i}`` (key-only, root login by key),
* its own PHP-FPM master with one ``www-data`` pool on a unix socket (OPcache on,
  ``validate_timestamps`` configurable: the incident's setting is 0),
* its own nginx on ``127.0.0.1:{http_base+i}`` serving ``{deploy_path}/current/public``.

Everything of a host lives in ``{root}/lab{i}/``; the client key and ``known_hosts``
shared by all hosts live in ``{root}/ssh/``. ``up()`` writes an inventory YAML that the
deploy tool reads. ``down()`` stops every daemon started under a root, by pid file.

Only the standard library and the lab's own ``services`` module (the app stack) are used:
nothing from the rest of the tool. Must run as root (sshd, nginx
``user www-data``, FPM pools switching to www-data).

CLI: ``python -m deploy.lab up [N] [--root R] [--inventory F] ...``,
``python -m deploy.lab down [--root R] [--purge]``, ``python -m deploy.lab status``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__:
    from . import latency
else:  # loaded by path (tests/test_lab.py does): the relay is the sibling file, standard library only
    import importlib.util

    _spec = importlib.util.spec_from_file_location("lab_latency", Path(__file__).with_name("latency.py"))
    latency = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(latency)

DEFAULT_ROOT = "/srv/lab"
DEFAULT_INVENTORY = "hosts/lab.yml"
WEB_USER = "www-data"

SSHD = "/usr/sbin/sshd"
PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"

PACKAGES = [
    "openssh-server",
    "php8.2-fpm",
    "php8.2-cli",
    "php8.2-sqlite3",
    "php-laravel-framework",
    "nginx",
    "rsync",
    "acl",
    "curl",
    "sudo",  # for hosts whose deploy user is not root (sudo -n for setfacl and the FPM reload)
    "chromium",  # headless, for the tests of the HTML report (tests/test_htmlreport_lab.py)
    "wrk",  # the HTTP load of the zero-downtime tests and bench/load.py (deploy/lab/load.py)
    # the app stack (services.py) and what the sample app needs from it
    "mariadb-server",
    "mariadb-client",
    "redis-server",
    "supervisor",
    "composer",
    "php8.2-mysql",
    "php8.2-redis",
]
# binaries we call, and the package that brings each one
BINARIES = {
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "ssh": "openssh-client",
    SSHD: "openssh-server",
    PHP_FPM: "php8.2-fpm",
    NGINX: "nginx",
    "/usr/sbin/mariadbd": "mariadb-server",
    "/usr/bin/mariadb": "mariadb-client",
    "/usr/bin/redis-server": "redis-server",
    "/usr/bin/supervisord": "supervisor",
    "composer": "composer",
    "wrk": "wrk",
}

START_TIMEOUT = 10.0
# Hosts whose daemons start at once in up(): starting is mostly waiting for ports and pings.
START_WORKERS = 8
# The delaying relay in front of sshd (latency.py), run by path with this interpreter.
LATENCY_SCRIPT = Path(__file__).with_name("latency.py")
STOP_TIMEOUT = 10.0

# Pool settings written by up(); fpm_restart(**overrides) changes them per host.
DEFAULT_POOL = {
    "max_children": 2,
    "opcache_enable": 1,
    "validate_timestamps": 0,
    "revalidate_freq": 2,
    "opcache_file_cache": None,  # a directory, or None for no file cache
    # [global] process_control_timeout, seconds: how long a reload (SIGUSR2) lets requests in
    # flight finish. FPM's default, 0, kills them (nginx answers 502): set as a real host should be.
    "process_control_timeout": 10,
    "directives": {},  # raw extra pool lines: {"php_admin_value[opcache.jit]": "off"}
}

_NAME_RE = re.compile(r"^lab(\d+)$")


class LabError(RuntimeError):
    """A lab daemon could not be started/stopped, or the lab is in a state we refuse."""


# --------------------------------------------------------------------------- utils


def _log(msg: str) -> None:
    if os.environ.get("LAB_QUIET") != "1":
        print(f"[lab] {msg}", file=sys.stderr, flush=True)


def _require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (sshd, nginx 'user www-data', FPM pools)")


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically (tmp + rename) with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _mkdir(path: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, uid, gid)


def _web_ids() -> tuple[int, int]:
    import grp
    import pwd

    return pwd.getpwnam(WEB_USER).pw_uid, grp.getgrnam(WEB_USER).gr_gid


@contextlib.contextmanager
def _locked(root: Path):
    """Serialise up/down/helpers on one root (several processes may drive the lab)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lab.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _wait(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        res = pred()
        if res:
            return res
        if time.monotonic() >= deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


# ----------------------------------------------------------------------- processes


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (PID 1 here may not reap daemons)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _on_port(port: int) -> list[int]:
    """Processes holding a TCP socket whose local port is `port` (a server's connections)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{f[9]}]")
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (p / "fd").iterdir()):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in _children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def _daemon_pid(pidfile: Path, marker: str) -> int | None:
    """Pid from pidfile if that process is alive AND its cmdline names our config.

    The marker check protects against a stale pid file whose pid was reused by an
    unrelated process: we never signal a process that is not the lab's.
    """
    pid = _read_pid(pidfile)
    if pid and _alive(pid) and marker in _cmdline(pid):
        return pid
    return None


def _kill_wait(pids: list[int], sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> None:
    pids = [p for p in pids if _alive(p)]
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, sig)
            os.kill(p, signal.SIGCONT)  # in case it was frozen by freeze_sshd()
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() >= deadline:
            for p in pids:
                if _alive(p):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
            _wait(lambda: not any(_alive(p) for p in pids), 5, f"pids {pids} to die")
            return
        time.sleep(0.02)


def _run_daemon(argv: list[str], logfile: Path, env: dict | None = None) -> None:
    """Run a self-daemonizing program; its output goes to logfile (never to our pipes)."""
    with open(logfile, "ab") as log:
        log.write(f"--- {time.strftime('%F %T')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            timeout=30,
            env=env,
        )
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} exited {proc.returncode}:\n{_tail(logfile)}")


# ------------------------------------------------------------------------- FastCGI


def fcgi_request(
    socket_path: str | os.PathLike,
    params: dict[str, str],
    stdin: bytes = b"",
    timeout: float = 5.0,
) -> tuple[bytes, bytes, int]:
    """One FastCGI RESPONDER request over a unix socket: (stdout, stderr, app_status).

    Enough to ping a pool (SCRIPT_NAME=/fpm-ping), read its status page, or run a
    script inside the pool (SCRIPT_FILENAME=/path/to/file.php).
    """
    def record(rtype: int, content: bytes, req_id: int = 1) -> bytes:
        pad = (8 - len(content) % 8) % 8
        return struct.pack("!BBHHBB", 1, rtype, req_id, len(content), pad, 0) + content + b"\0" * pad

    def nv(name: str, value: str) -> bytes:
        out = b""
        for part in (name.encode(), value.encode()):
            n = len(part)
            out += struct.pack("!B", n) if n < 128 else struct.pack("!I", n | 0x80000000)
        return out + name.encode() + value.encode()

    body = b"".join(nv(k, str(v)) for k, v in params.items())
    msg = record(1, struct.pack("!HB5x", 1, 0))  # BEGIN_REQUEST, role RESPONDER, no keep-conn
    for i in range(0, len(body), 65535):
        msg += record(4, body[i : i + 65535])
    msg += record(4, b"")
    for i in range(0, len(stdin), 65535):
        msg += record(5, stdin[i : i + 65535])
    msg += record(5, b"")

    out, err, status = bytearray(), bytearray(), None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(os.fspath(socket_path))
        s.sendall(msg)
        buf = b""
        while status is None:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 8:
                _, rtype, _, clen, plen, _ = struct.unpack("!BBHHBB", buf[:8])
                if len(buf) < 8 + clen + plen:
                    break
                content, buf = buf[8 : 8 + clen], buf[8 + clen + plen :]
                if rtype == 6:
                    out += content
                elif rtype == 7:
                    err += content
                elif rtype == 3:
                    status = struct.unpack("!I", content[:4])[0]
    if status is None:
        raise LabError(f"FastCGI: connection to {socket_path} closed before END_REQUEST")
    return bytes(out), bytes(err), status


def _fcgi_get(socket_path, path: str, query: str = "", timeout: float = 5.0) -> bytes:
    out, _, _ = fcgi_request(
        socket_path,
        {
            "GATEWAY_INTERFACE": "FastCGI/1.0",
            "REQUEST_METHOD": "GET",
            "SCRIPT_NAME": path,
            "SCRIPT_FILENAME": path,
            "REQUEST_URI": path + ("?" + query if query else ""),
            "QUERY_STRING": query,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
        },
        timeout=timeout,
    )
    return out.split(b"\r\n\r\n", 1)[-1]


def _fpm_pong(socket_path) -> bool:
    try:
        return _fcgi_get(socket_path, "/fpm-ping", timeout=2.0).strip() == b"pong"
    except OSError:
        return False
    except LabError:
        return False


# ------------------------------------------------------------------- host layout


def _index(name: str) -> int:
    m = _NAME_RE.match(name)
    if not m:
        raise LabError(f"not a lab host name: {name!r} (expected lab1, lab2, ...)")
    return int(m.group(1))


def _paths(root: Path, i: int) -> dict:
    d = root / f"lab{i}"
    return {
        "name": f"lab{i}",
        "index": i,
        "root": str(root),
        "dir": str(d),
        "deploy_path": str(d / "app"),
        "socket": str(d / "php-fpm.sock"),
        "sshd_config": str(d / "sshd_config"),
        "sshd_pid_file": str(d / "sshd.pid"),
        "sshd_log": str(d / "sshd.log"),
        "host_key": str(d / "ssh_host_ed25519_key"),
        "fpm_conf": str(d / "fpm.conf"),
        "fpm_pid_file": str(d / "fpm.pid"),
        "fpm_log": str(d / "fpm.log"),
        "php_error_log": str(d / "php-error.log"),
        "nginx_conf": str(d / "nginx.conf"),
        "nginx_pid_file": str(d / "nginx.pid"),
        "nginx_error_log": str(d / "nginx-error.log"),
        "nginx_access_log": str(d / "nginx-access.log"),
        "state_file": str(d / "lab.json"),
        "start_log": str(d / "start.log"),
        "latency_pid_file": str(d / "latency.pid"),
        "latency_ctl": str(d / "latency.ctl"),
        "latency_log": str(d / "latency.log"),
        "key": str(root / "ssh" / "id_ed25519"),
        "known_hosts": str(root / "ssh" / "known_hosts"),
        "authorized_keys": str(root / "ssh" / "authorized_keys"),
    }


def _load_state(root: Path, i: int) -> dict | None:
    try:
        return json.loads((root / f"lab{i}" / "lab.json").read_text())
    except (OSError, ValueError):
        return None


def _save_state(root: Path, i: int, state: dict) -> None:
    _write(root / f"lab{i}" / "lab.json", json.dumps(state, indent=2, sort_keys=True) + "\n")


def _pids(h: dict) -> dict:
    return {
        "sshd": _daemon_pid(Path(h["sshd_pid_file"]), h["sshd_config"]),
        "fpm": _daemon_pid(Path(h["fpm_pid_file"]), h["fpm_conf"]),
        "nginx": _daemon_pid(Path(h["nginx_pid_file"]), h["nginx_conf"]),
        "latency": _daemon_pid(Path(h["latency_pid_file"]), h["latency_ctl"]),
    }


def _host(root: Path, i: int, state: dict) -> dict:
    h = _paths(root, i)
    h.update(
        ssh_port=state["ssh_port"],
        http_port=state["http_port"],
        # with a latency relay, clients (the inventory, known_hosts) use its port, not sshd's
        proxy_port=state.get("proxy_port"),
        port=state.get("proxy_port") or state["ssh_port"],
        latency_ms=state.get("latency_ms", 0),
        light=state.get("light", False),
        address="127.0.0.1",
        realpath_root=state["realpath_root"],
        sftp=state.get("sftp", True),
        pool=dict(state["pool"]),
        health_url=f"http://127.0.0.1:{state['http_port']}/version",
        base_url=f"http://127.0.0.1:{state['http_port']}",
        fpm_reload_cmd=f'kill -USR2 "$(cat {h["fpm_pid_file"]})"',
        current=str(Path(h["deploy_path"]) / "current"),
        releases=str(Path(h["deploy_path"]) / "releases"),
    )
    return h


def _existing_indexes(root: Path) -> list[int]:
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _NAME_RE.match(p.name)
        if m and p.is_dir():
            out.append(int(m.group(1)))
    return sorted(out)


# ----------------------------------------------------------------- config writers


def _sshd_config(h: dict) -> str:
    return f"""\
# generated by deploy/lab/ for {h['name']} -- do not edit
Port {h['ssh_port']}
ListenAddress 127.0.0.1
HostKey {h['host_key']}
PidFile {h['sshd_pid_file']}
AuthorizedKeysFile {h['authorized_keys']}
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes yes
UseDNS no
# VERBOSE: one "Starting session: ..." line per session (channel), counted by bench/
LogLevel VERBOSE
PrintMotd no
PrintLastLog no
X11Forwarding no
# enough for parallel deploys / multiplexed connections
MaxStartups 100:30:200
MaxSessions 64
""" + ("# SFTP for people logging in by hand; the tool itself never needs it\nSubsystem sftp internal-sftp\n"
       if h.get("sftp", True) else "# no SFTP subsystem, as on some hardened servers\n")


def _fpm_config(h: dict) -> str:
    pool = h["pool"]
    lines = [
        f"; generated by deploy/lab/ for {h['name']} -- do not edit",
        "[global]",
        f"pid = {h['fpm_pid_file']}",
        f"error_log = {h['fpm_log']}",
        "daemonize = yes",
        f"process_control_timeout = {int(pool.get('process_control_timeout', DEFAULT_POOL['process_control_timeout']))}s",
        "",
        f"[{h['name']}]",
        f"user = {WEB_USER}",
        f"group = {WEB_USER}",
        f"listen = {h['socket']}",
        f"listen.owner = {WEB_USER}",
        f"listen.group = {WEB_USER}",
        "listen.mode = 0660",
        "pm = static",
        f"pm.max_children = {int(pool['max_children'])}",
        "pm.status_path = /fpm-status",
        "ping.path = /fpm-ping",
        "catch_workers_output = yes",
        f"php_admin_value[opcache.enable] = {int(pool['opcache_enable'])}",
        f"php_admin_value[opcache.validate_timestamps] = {int(pool['validate_timestamps'])}",
        f"php_admin_value[opcache.revalidate_freq] = {int(pool['revalidate_freq'])}",
        f"php_admin_value[error_log] = {h['php_error_log']}",
    ]
    if pool.get("opcache_file_cache"):
        lines.append(f"php_admin_value[opcache.file_cache] = {pool['opcache_file_cache']}")
    for k, v in (pool.get("directives") or {}).items():
        lines.append(f"{k} = {v}")
    return "\n".join(lines) + "\n"


def _fpm_argv(h: dict) -> list[str]:
    argv = [PHP_FPM, "-y", h["fpm_conf"]]
    # opcache.file_cache is PHP_INI_SYSTEM: also give it to the master, so the
    # setting is the same in the master and in every worker.
    if h["pool"].get("opcache_file_cache"):
        argv += ["-d", f"opcache.file_cache={h['pool']['opcache_file_cache']}"]
    return argv


def _nginx_config(h: dict) -> str:
    d = h["dir"]
    var = "$realpath_root" if h["realpath_root"] else "$document_root"
    return f"""\
# generated by deploy/lab/ for {h['name']} -- do not edit
# realpath_root = {h['realpath_root']}
user {WEB_USER};
worker_processes 1;
pid {h['nginx_pid_file']};
error_log {h['nginx_error_log']};

events {{
    worker_connections {64 if h['light'] else 256};
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {h['nginx_access_log']};
    client_body_temp_path {d}/nginx-tmp/client_body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    fastcgi_temp_path {d}/nginx-tmp/fastcgi;
    uwsgi_temp_path {d}/nginx-tmp/uwsgi;
    scgi_temp_path {d}/nginx-tmp/scgi;
    sendfile on;
    keepalive_timeout 5;
    server_tokens off;

    server {{
        listen 127.0.0.1:{h['http_port']};
        server_name {h['name']};
        root {h['deploy_path']}/current/public;
        index index.php;

        location / {{
            try_files $uri /index.php?$query_string;
        }}

        # FPM's own status/ping pages, loopback only
        location ~ ^/fpm-(status|ping)$ {{
            allow 127.0.0.1;
            deny all;
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $fastcgi_script_name;
            fastcgi_pass unix:{h['socket']};
        }}

        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_pass unix:{h['socket']};
            fastcgi_param SCRIPT_FILENAME {var}$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT {var};
        }}
    }}
}}
"""


def _nginx_argv(h: dict, *extra: str) -> list[str]:
    return [NGINX, "-c", h["nginx_conf"], "-p", h["dir"] + "/", "-e", h["nginx_error_log"], *extra]


# ------------------------------------------------------------------ start / stop


def _start_sshd(h: dict) -> int:
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    _write(Path(h["sshd_config"]), _sshd_config(h))
    Path(h["sshd_pid_file"]).unlink(missing_ok=True)
    mark = _size(h["sshd_log"])
    _run_daemon([SSHD, "-f", h["sshd_config"], "-E", h["sshd_log"]], Path(h["start_log"]))

    # sshd daemonizes before it binds, and writes its pid file once it listens: wait for the
    # pid file first (a connect to a port nobody listens on can even succeed, to itself).
    def listening():
        if _logged_since(h["sshd_log"], mark, ("Cannot bind any address",)):
            raise LabError(f"{h['name']}: sshd cannot listen on 127.0.0.1:{h['ssh_port']}:\n{_tail(Path(h['sshd_log']), 4)}")
        return _daemon_pid(Path(h["sshd_pid_file"]), h["sshd_config"])

    pid = _wait(listening, START_TIMEOUT, f"{h['name']} sshd pid file")
    _wait(lambda: _port_open(h["ssh_port"]), START_TIMEOUT, f"{h['name']} sshd on port {h['ssh_port']}")
    return pid


def _start_fpm(h: dict) -> int:
    _write(Path(h["fpm_conf"]), _fpm_config(h))
    cache = h["pool"].get("opcache_file_cache")
    if cache:
        _mkdir(Path(cache), 0o755, *_web_ids())
    Path(h["fpm_pid_file"]).unlink(missing_ok=True)
    Path(h["socket"]).unlink(missing_ok=True)
    test = subprocess.run(_fpm_argv(h) + ["-t"], capture_output=True, text=True)
    if test.returncode != 0:
        raise LabError(f"{h['name']}: php-fpm config test failed:\n{test.stdout}{test.stderr}")
    _run_daemon(_fpm_argv(h), Path(h["start_log"]))
    try:
        _wait(lambda: _fpm_pong(h["socket"]), START_TIMEOUT, f"{h['name']} FPM ping on {h['socket']}")
    except LabError as e:
        raise LabError(f"{e}\n{_tail(Path(h['fpm_log']))}") from None
    return _wait(
        lambda: _daemon_pid(Path(h["fpm_pid_file"]), h["fpm_conf"]),
        START_TIMEOUT,
        f"{h['name']} FPM pid file",
    )


def _start_nginx(h: dict) -> int:
    _write(Path(h["nginx_conf"]), _nginx_config(h))
    Path(h["dir"], "nginx-tmp").mkdir(exist_ok=True)
    Path(h["nginx_pid_file"]).unlink(missing_ok=True)
    _run_daemon(_nginx_argv(h), Path(h["start_log"]))
    try:
        _wait(lambda: _port_open(h["http_port"]), START_TIMEOUT, f"{h['name']} nginx on port {h['http_port']}")
    except LabError as e:
        raise LabError(f"{e}\n{_tail(Path(h['nginx_error_log']))}") from None
    return _wait(
        lambda: _daemon_pid(Path(h["nginx_pid_file"]), h["nginx_conf"]),
        START_TIMEOUT,
        f"{h['name']} nginx pid file",
    )


def _start_proxy(h: dict) -> int:
    Path(h["latency_pid_file"]).unlink(missing_ok=True)
    _run_daemon([sys.executable, str(LATENCY_SCRIPT), "serve", "--listen", str(h["proxy_port"]),
                 "--target", str(h["ssh_port"]), "--delay-ms", str(h["latency_ms"]), "--ctl", h["latency_ctl"],
                 "--pid-file", h["latency_pid_file"], "--log", h["latency_log"]], Path(h["start_log"]))
    _wait(lambda: _port_open(h["proxy_port"]), START_TIMEOUT, f"{h['name']} latency relay on port {h['proxy_port']}")
    return _wait(
        lambda: _daemon_pid(Path(h["latency_pid_file"]), h["latency_ctl"]) and Path(h["latency_ctl"]).exists(),
        START_TIMEOUT,
        f"{h['name']} latency relay pid file",
    )


# A client socket's TIME_WAIT (60 s) blocks a listener's bind too, when that client did not set
# SO_REUSEADDR (most do not).
BIND_RETRY_FOR = 65.0


def _bind_retry(start, h: dict, log: str):
    """start(h), again while its port is taken by someone else's connection.

    Ports at or above 32768 are also the kernel's ephemeral range: an outgoing connection of any
    process on the machine may hold our port for a while, and binding then fails with "Address
    already in use". The daemon's log says so; wait and try again, for a bounded time.
    """
    deadline = time.monotonic() + BIND_RETRY_FOR
    while True:
        mark = _size(log)
        try:
            return start(h)
        except LabError:
            if time.monotonic() > deadline or not _logged_since(log, mark, ("Address already in use",)):
                raise
            _log(f"{h['name']}: a port is in use by another connection, retrying")
            time.sleep(1.0)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _logged_since(path: str, offset: int, needles) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return False
    return any(n in text for n in needles)


def _stop(pidfile: str, marker: str, with_descendants: bool = False) -> bool:
    pid = _daemon_pid(Path(pidfile), marker)
    if pid is None:
        return False
    pids = [pid] + (_descendants(pid) if with_descendants else [])
    _kill_wait(pids)
    # workers die with their master; wait for them too so nothing of the lab is left
    return True


def _stop_host(h: dict) -> list[str]:
    stopped = []
    for what, pidfile, marker, desc in (
        ("latency", h["latency_pid_file"], h["latency_ctl"], False),
        ("nginx", h["nginx_pid_file"], h["nginx_conf"], True),
        ("fpm", h["fpm_pid_file"], h["fpm_conf"], True),
        ("sshd", h["sshd_pid_file"], h["sshd_config"], True),
    ):
        if _stop(pidfile, marker, with_descendants=desc):
            stopped.append(what)
    Path(h["socket"]).unlink(missing_ok=True)
    return stopped


def _stray_masters(root: Path) -> list[int]:
    """Lab masters under root found by cmdline (for pid files lost or overwritten)."""
    pat = re.compile(
        r"^(sshd:|/usr/sbin/sshd|php-fpm|/usr/sbin/php-fpm|nginx:|/usr/sbin/nginx|nginx |\S*python\S* \S*latency\.py )"
        r".*" + re.escape(str(root)) + r"/lab\d+/(sshd_config|fpm\.conf|nginx\.conf|latency\.ctl)\b"
    )
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            cmd = _cmdline(int(p.name))
            if cmd and pat.search(cmd) and _alive(int(p.name)):
                out.append(int(p.name))
    return out


# ------------------------------------------------------------------- public API


def ensure_packages(packages: list[str] | None = None) -> list[str]:
    """Install what is missing of PACKAGES (apt-get update once, then install).

    Returns the list of packages that were installed (empty when all were present).
    """
    wanted = list(packages or PACKAGES)
    missing = []
    for pkg in wanted:
        r = subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0 or not r.stdout.startswith("ii"):
            missing.append(pkg)
    for binary, pkg in BINARIES.items():
        if shutil.which(binary) is None and pkg not in missing:
            missing.append(pkg)
    if not missing:
        return []
    _require_root()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _log(f"installing {' '.join(missing)}")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    still = [b for b in BINARIES if shutil.which(b) is None]
    if still:
        raise LabError(f"still missing after install: {' '.join(still)}")
    return missing


def _ensure_client_key(root: Path) -> None:
    sshdir = root / "ssh"
    _mkdir(sshdir, 0o700)
    key = sshdir / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab@{root}", "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    pub = (sshdir / "id_ed25519.pub").read_text().strip()
    ak = sshdir / "authorized_keys"
    lines = ak.read_text().splitlines() if ak.exists() else []
    if pub not in lines:
        lines.append(pub)
    _write(ak, "\n".join(lines) + "\n", 0o600)
    kh = sshdir / "known_hosts"
    if not kh.exists():
        _write(kh, "", 0o644)


def _ensure_host_key(h: dict) -> None:
    key = Path(h["host_key"])
    if not key.exists() or not Path(h["host_key"] + ".pub").exists():
        key.unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{h['name']}@lab", "-f", str(key)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    os.chmod(key, 0o600)


def _write_known_hosts(root: Path, hosts: list[dict]) -> None:
    kh = root / "ssh" / "known_hosts"
    new = {}
    for h in hosts:
        typ, b64 = Path(h["host_key"] + ".pub").read_text().split()[:2]
        # sshd's own port, and the relay's when there is one (same host key behind it)
        for port in dict.fromkeys((h["ssh_port"], h["port"])):
            new[f"[127.0.0.1]:{port}"] = f"[127.0.0.1]:{port} {typ} {b64}"
    keep = []
    if kh.exists():
        for line in kh.read_text().splitlines():
            if line.strip() and line.split()[0] not in new:
                keep.append(line)
    _write(kh, "\n".join(keep + list(new.values())) + "\n", 0o644)


def inventory_yaml(root: str | os.PathLike, hosts: list[dict]) -> str:
    root = Path(root)
    out = [
        "# Generated by `fab lab.up` (deploy/lab/): local loopback lab hosts.",
        "# Rewritten on every `lab.up`; edit deploy/lab/, not this file.",
        "defaults:",
        "  user: root",
        f"  key: {root / 'ssh' / 'id_ed25519'}",
        f"  known_hosts: {root / 'ssh' / 'known_hosts'}",
        f"  web_user: {WEB_USER}",
        "hosts:",
    ]
    for h in hosts:
        out += [
            f"  {h['name']}:",
            "    address: 127.0.0.1",
            f"    port: {h['port']}",
            f"    deploy_path: {h['deploy_path']}",
            "    fpm:",
            f"      socket: {h['socket']}",
            f"      reload: {h['fpm_reload_cmd']}",
            f"    health_url: {h['health_url']}",
        ]
        if h.get("stack"):
            # the host's supervisor restarts its queue workers and scheduler (the workers step)
            restart = h["stack"]["supervisor"]["restart"]
            out += ["    workers:", f"      restart: {json.dumps(restart)}"]
    out += ["groups:", f"  lab: [{', '.join(h['name'] for h in hosts)}]"]
    return "\n".join(out) + "\n"


def _write_inventory(inventory: str | os.PathLike, root: Path, hosts: list[dict]) -> Path:
    path = Path(inventory)
    if not path.is_absolute():
        path = Path.cwd() / path
    text = inventory_yaml(root, hosts)
    try:  # sanity check: it must parse back to what we mean
        import yaml

        data = yaml.safe_load(text)
        assert list(data["hosts"]) == [h["name"] for h in hosts]
        assert data["groups"]["lab"] == [h["name"] for h in hosts]
    except ImportError:
        pass
    _write(path, text, 0o644)
    return path


def up(
    n: int = 3,
    root: str = DEFAULT_ROOT,
    inventory: str | None = DEFAULT_INVENTORY,
    ssh_base: int = 2200,
    http_base: int = 8000,
    validate_timestamps: int = 0,
    realpath_root: bool = True,
    stack: bool = False,
    db_port: int | None = None,
    redis_port: int | None = None,
    workers_user: str = WEB_USER,
    latency_ms: float = 0,
    proxy_base: int | None = None,
    light: bool = False,
) -> list[dict]:
    """Start lab1..lab{n} under root (idempotent) and write the inventory.

    A daemon that is already running is left alone; only dead ones are (re)started.
    A host whose daemons run on other ports than asked is an error (run down() first).
    With stack, also the app stack (services.py): one MariaDB on db_port and one Redis on
    redis_port for the lab, a supervisord per host running the queue workers and the
    scheduler as workers_user, and each host's first shared/.env.
    latency_ms > 0 puts a delaying relay (latency.py, latency_ms each way) in front of each
    host's sshd on port proxy_base+i (default ssh_base+1000+i); the inventory and known_hosts
    then name the relay's port. A running relay gets the asked delay. light: one FPM worker
    and fewer nginx connections per host (for fleets of 100). Hosts start in parallel.
    Returns one dict per host listed in the inventory (1..n plus any other running host).
    """
    from . import services
    _require_root()
    if n < 1:
        raise ValueError("n must be >= 1")
    if latency_ms < 0:
        raise ValueError("latency_ms must be >= 0")
    if proxy_base is None:
        proxy_base = ssh_base + 1000
    rootp = Path(root).resolve()
    t0 = time.monotonic()
    with _locked(rootp):
        _mkdir(rootp, 0o755)
        (rootp / ".lab-root").touch()
        _ensure_client_key(rootp)

        indexes = sorted(set(range(1, n + 1)) | {
            i for i in _existing_indexes(rootp)
            if any(_pids(_paths(rootp, i)).values())
        })
        todo = []
        for i in indexes:
            want = {
                "ssh_port": ssh_base + i,
                "http_port": http_base + i,
                "realpath_root": bool(realpath_root),
                "pool": dict(DEFAULT_POOL, validate_timestamps=int(validate_timestamps), directives={},
                             **({"max_children": 1} if light else {})),
                "light": bool(light),
                "latency_ms": float(latency_ms),
                "proxy_port": proxy_base + i if latency_ms > 0 else None,
            }
            old = _load_state(rootp, i)
            running = _pids(_paths(rootp, i))
            if old and any(running.values()):
                if i <= n and (old["ssh_port"], old["http_port"]) != (want["ssh_port"], want["http_port"]):
                    raise LabError(
                        f"lab{i} is running on ssh {old['ssh_port']} / http {old['http_port']}, "
                        f"not {want['ssh_port']} / {want['http_port']}: run down(root={root!r}) first"
                    )
                state = old  # keep the running host's settings (fault injections included)
                if i <= n and latency_ms > 0:
                    if running["latency"] and old.get("proxy_port") != want["proxy_port"]:
                        raise LabError(f"lab{i}'s latency relay runs on port {old.get('proxy_port')}, "
                                       f"not {want['proxy_port']}: run down(root={root!r}) first")
                    state = dict(old, proxy_port=want["proxy_port"], latency_ms=want["latency_ms"])
            else:
                state = want
            h = _host(rootp, i, state)
            d = Path(h["dir"])
            _mkdir(d, 0o755)
            _mkdir(Path(h["deploy_path"]), 0o755)
            _ensure_host_key(h)
            _save_state(rootp, i, state)
            todo.append((h, running))

        def start(item):
            h, running = item
            started = []
            if not running["sshd"]:
                _bind_retry(_start_sshd, h, h["sshd_log"])
                started.append("sshd")
            if not running["fpm"]:
                _start_fpm(h)
                started.append("fpm")
            if not running["nginx"]:
                _bind_retry(_start_nginx, h, h["nginx_error_log"])
                started.append("nginx")
            if h["proxy_port"] and not running["latency"]:
                _bind_retry(_start_proxy, h, h["start_log"])
                started.append(f"latency relay ({h['latency_ms']:g} ms each way)")
            elif running["latency"]:
                latency.set_delay(h["latency_ctl"], h["latency_ms"])
            if started:
                _log(f"{h['name']}: started {', '.join(started)} (ssh {h['port']}, http {h['http_port']})")
            return h

        with ThreadPoolExecutor(max_workers=max(1, min(START_WORKERS, len(todo)))) as pool:
            hosts = list(pool.map(start, todo))

        _write_known_hosts(rootp, hosts)
        if stack:
            services.up(rootp, hosts, db_port or services.DB_PORT, redis_port or services.REDIS_PORT, workers_user)
        for h in hosts:
            h["stack"] = services.info(rootp, h)
        if inventory:
            path = _write_inventory(inventory, rootp, hosts)
            _log(f"inventory {path}")
    for h in hosts:
        h.update({f"{k}_pid": v for k, v in _pids(h).items()})
    _log(f"up: {len(hosts)} host(s) ready in {time.monotonic() - t0:.2f}s")
    return hosts


def down(root: str = DEFAULT_ROOT, purge: bool = False) -> list[str]:
    """Stop every nginx, php-fpm and sshd master of the lab under root, and its app stack
    (every host's supervisord and its workers, Redis, the database) if it has one.

    Stops by pid file (checked against the process's command line), then also any
    lab master of this root found in /proc whose pid file was lost. SSH sessions
    (children of a lab sshd) are ended too. With purge, removes the root directory
    (only if it is a lab root, i.e. holds the .lab-root marker). Returns what was stopped.
    """
    from . import services

    _require_root()
    rootp = Path(root).resolve()
    if not rootp.exists():
        return []
    stopped = []
    with _locked(rootp):
        stopped += services.down(rootp, [_paths(rootp, i) for i in _existing_indexes(rootp)])
        for i in _existing_indexes(rootp):
            h = _paths(rootp, i)
            for what in _stop_host(h):
                stopped.append(f"lab{i}:{what}")
        stray = _stray_masters(rootp) + services.stray_pids(rootp)
        if stray:
            _kill_wait(stray + [d for p in stray for d in _descendants(p)])
            stopped += [f"pid {p}" for p in stray]
    if purge:
        if not (rootp / ".lab-root").exists():
            raise LabError(f"refusing to purge {rootp}: no .lab-root marker (not a lab root)")
        if rootp == Path("/") or len(rootp.parts) < 2:
            raise LabError(f"refusing to purge {rootp}")
        shutil.rmtree(rootp)
    if stopped:
        _log(f"down: stopped {', '.join(stopped)}" + (f"; removed {rootp}" if purge else ""))
    return stopped


def _get_host(name: str, root: str) -> dict:
    rootp = Path(root).resolve()
    i = _index(name)
    state = _load_state(rootp, i)
    if state is None:
        raise LabError(f"{name} does not exist under {rootp} (run up() first)")
    return _host(rootp, i, state)


def host_info(name: str, root: str = DEFAULT_ROOT) -> dict:
    """Paths, ports, settings and live pids (None when not running) of one lab host."""
    h = _get_host(name, root)
    pids = _pids(h)
    h.update({f"{k}_pid": v for k, v in pids.items()})
    h["fpm_workers"] = _children(pids["fpm"]) if pids["fpm"] else []
    h["nginx_workers"] = _children(pids["nginx"]) if pids["nginx"] else []
    from . import services

    h["stack"] = services.info(Path(h["root"]), h)
    return h


def supervisorctl(name: str, root: str = DEFAULT_ROOT) -> list[str]:
    """argv prefix of supervisorctl for the host's supervisord, e.g. + ["restart", "app:*"]."""
    from . import services

    return services.supervisorctl_argv(_get_host(name, root))


def hosts(root: str = DEFAULT_ROOT) -> list[dict]:
    """host_info() of every lab host that exists under root."""
    rootp = Path(root).resolve()
    return [host_info(f"lab{i}", root) for i in _existing_indexes(rootp) if _load_state(rootp, i)]


def fpm_ping(name: str, root: str = DEFAULT_ROOT) -> bool:
    """True if the pool answers its ping path over its socket."""
    return _fpm_pong(_get_host(name, root)["socket"])


def fpm_status(name: str, root: str = DEFAULT_ROOT, full: bool = False) -> dict:
    """The pool's pm.status_path page (JSON) fetched over its socket."""
    h = _get_host(name, root)
    q = "json&full" if full else "json"
    return json.loads(_fcgi_get(h["socket"], "/fpm-status", q))


def fpm_reload(name: str, root: str = DEFAULT_ROOT, timeout: float = START_TIMEOUT) -> dict:
    """Graceful reload (SIGUSR2 to the master): clears OPcache's shared memory.

    Note: with ``daemonize = yes`` the re-executed master daemonizes again, so the
    master's pid CHANGES on every reload (the pid file is rewritten). Waits until the
    pid file names a live master whose workers are all new, every old worker is gone
    and the socket answers the ping again. Returns host_info().
    """
    h = _get_host(name, root)
    with _locked(Path(h["root"])):
        pidfile = Path(h["fpm_pid_file"])
        pid = _daemon_pid(pidfile, h["fpm_conf"])
        if pid is None:
            raise LabError(f"{name}: FPM is not running")
        old = set(_children(pid))
        os.kill(pid, signal.SIGUSR2)
        want = int(h["pool"]["max_children"])

        def ready():
            master = _daemon_pid(pidfile, h["fpm_conf"])
            if master is None:
                return False
            kids = set(_children(master))
            return (
                len(kids) >= want
                and not (kids & old)
                and not any(_alive(p) for p in old)
                and _fpm_pong(h["socket"])
            )

        _wait(ready, timeout, f"{name} FPM reload")
    return host_info(name, root)


def fpm_stop(name: str, root: str = DEFAULT_ROOT) -> bool:
    """Stop the FPM master (and its workers). False if it was not running."""
    h = _get_host(name, root)
    with _locked(Path(h["root"])):
        ok = _stop(h["fpm_pid_file"], h["fpm_conf"], with_descendants=True)
        Path(h["socket"]).unlink(missing_ok=True)
    return ok


def fpm_restart(name: str, root: str = DEFAULT_ROOT, **pool_overrides) -> dict:
    """Stop FPM, rewrite the pool with overrides, start it again.

    Overrides (kept for later restarts/up of this host until down):
      validate_timestamps=0|1, revalidate_freq=N, opcache_enable=0|1, max_children=N,
      process_control_timeout=N (seconds; 0: a reload kills the requests in flight),
      opcache_file_cache="/dir" (None to remove; created owned by www-data),
      directives={"php_admin_value[opcache.jit]": "off", ...} (raw pool lines),
      defaults=True to go back to up()'s defaults first.
    """
    h = _get_host(name, root)
    rootp, i = Path(h["root"]), h["index"]
    with _locked(rootp):
        state = _load_state(rootp, i)
        if pool_overrides.pop("defaults", False):
            state["pool"] = dict(DEFAULT_POOL, directives={})
        unknown = set(pool_overrides) - set(DEFAULT_POOL)
        if unknown:
            raise TypeError(f"unknown pool override(s): {', '.join(sorted(unknown))}")
        state["pool"].update(pool_overrides)
        _save_state(rootp, i, state)
        h = _host(rootp, i, state)
        _stop(h["fpm_pid_file"], h["fpm_conf"], with_descendants=True)
        _start_fpm(h)
    return host_info(name, root)


def stop_sshd(name: str, root: str = DEFAULT_ROOT, kill_sessions: bool = True) -> bool:
    """Stop the host's sshd (new connections get 'connection refused').

    kill_sessions also ends established SSH sessions of that host. False if not running.
    """
    h = _get_host(name, root)
    with _locked(Path(h["root"])):
        stopped = _stop(h["sshd_pid_file"], h["sshd_config"], with_descendants=kill_sessions)
        if kill_sessions:
            # A connection accepted while the master was dying has a child the master's process
            # tree no longer shows: find what is left by the port its connection is on.
            left = [pid for pid in _on_port(h["ssh_port"]) if pid != os.getpid()]
            if left:
                _kill_wait(left)
        return stopped


def start_sshd(name: str, root: str = DEFAULT_ROOT) -> dict:
    """Start the host's sshd again if it is not running."""
    h = _get_host(name, root)
    with _locked(Path(h["root"])):
        if not _daemon_pid(Path(h["sshd_pid_file"]), h["sshd_config"]):
            _start_sshd(h)
    return host_info(name, root)


def freeze_sshd(name: str, root: str = DEFAULT_ROOT) -> int:
    """SIGSTOP the host's sshd and its sessions: a host that hangs instead of refusing.

    The kernel still accepts TCP connections (backlog) but no SSH banner ever comes,
    like a dead host behind a load balancer. Undo with thaw_sshd(). Returns the master pid.
    """
    h = _get_host(name, root)
    pid = _daemon_pid(Path(h["sshd_pid_file"]), h["sshd_config"])
    if pid is None:
        raise LabError(f"{name}: sshd is not running")
    for p in [pid] + _descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGSTOP)
    return pid


def thaw_sshd(name: str, root: str = DEFAULT_ROOT) -> int | None:
    """SIGCONT the host's sshd and its sessions (undo freeze_sshd)."""
    h = _get_host(name, root)
    pid = _daemon_pid(Path(h["sshd_pid_file"]), h["sshd_config"])
    if pid is None:
        return None
    for p in [pid] + _descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGCONT)
    return pid


def sshd_sftp(name: str, enabled: bool, root: str = DEFAULT_ROOT) -> dict:
    """Restart the host's sshd with (True) or without (False: a hardened server) its SFTP
    subsystem; kept until lab.down. Ends the host's open SSH sessions."""
    h = _get_host(name, root)
    rootp, i = Path(h["root"]), h["index"]
    with _locked(rootp):
        state = _load_state(rootp, i)
        state["sftp"] = bool(enabled)
        _save_state(rootp, i, state)
        h = _host(rootp, i, state)
        _stop(h["sshd_pid_file"], h["sshd_config"], with_descendants=True)
        _start_sshd(h)
    return host_info(name, root)


def nginx_reconfigure(name: str, realpath_root: bool, root: str = DEFAULT_ROOT, timeout: float = START_TIMEOUT) -> dict:
    """Rewrite the host's nginx config with $realpath_root (True) or $document_root
    (False: the symlink fault) and reload nginx; waits for a new worker.
    Starts nginx if it was not running."""
    h = _get_host(name, root)
    rootp, i = Path(h["root"]), h["index"]
    with _locked(rootp):
        state = _load_state(rootp, i)
        state["realpath_root"] = bool(realpath_root)
        _save_state(rootp, i, state)
        h = _host(rootp, i, state)
        pid = _daemon_pid(Path(h["nginx_pid_file"]), h["nginx_conf"])
        if pid is None:
            _start_nginx(h)
        else:
            _write(Path(h["nginx_conf"]), _nginx_config(h))
            test = subprocess.run(_nginx_argv(h, "-t"), capture_output=True, text=True)
            if test.returncode != 0:
                raise LabError(f"{name}: nginx -t failed:\n{test.stderr}")
            old = set(_children(pid))
            subprocess.run(_nginx_argv(h, "-s", "reload"), check=True, capture_output=True)
            # new workers have the new config; old ones stop accepting and exit
            # (they may serve one more request meanwhile, so wait them out)
            _wait(lambda: set(_children(pid)) - old, timeout, f"{name} nginx reload")
            _wait(lambda: not any(_alive(p) for p in old), timeout, f"{name} old nginx workers to exit")
            _wait(lambda: _port_open(h["http_port"]), timeout, f"{name} nginx port")
    return host_info(name, root)


def nginx_stop(name: str, root: str = DEFAULT_ROOT) -> bool:
    """Stop the host's nginx. False if it was not running."""
    h = _get_host(name, root)
    with _locked(Path(h["root"])):
        return _stop(h["nginx_pid_file"], h["nginx_conf"], with_descendants=True)


def set_latency(delay_ms: float, root: str = DEFAULT_ROOT, names: list[str] | None = None) -> list[dict]:
    """Change the one-way delay of running latency relays (all hosts of root, or names).

    Hosts started without a relay are skipped (start them with up(latency_ms=...)). The delay
    is kept in lab.json, so a later up() without latency_ms keeps it. Returns the relays' stats.
    """
    rootp = Path(root).resolve()
    out = []
    with _locked(rootp):
        for i in _existing_indexes(rootp):
            state = _load_state(rootp, i)
            h = _paths(rootp, i)
            if not state or (names and h["name"] not in names):
                continue
            if not _daemon_pid(Path(h["latency_pid_file"]), h["latency_ctl"]):
                continue
            state["latency_ms"] = float(delay_ms)
            _save_state(rootp, i, state)
            out.append(dict(latency.set_delay(h["latency_ctl"], delay_ms), host=h["name"]))
    return out


def proxy_stats(name: str, root: str = DEFAULT_ROOT) -> dict:
    """The latency relay's counters for one host (connections, open, bytes, turns; latency.py)."""
    h = _get_host(name, root)
    if not _daemon_pid(Path(h["latency_pid_file"]), h["latency_ctl"]):
        raise LabError(f"{name} has no latency relay running (start it with up(latency_ms=...))")
    return latency.stats(h["latency_ctl"])


def ssh_command(name: str, root: str = DEFAULT_ROOT) -> list[str]:
    """argv prefix for the OpenSSH client to log in to a lab host (strict host keys)."""
    h = _get_host(name, root)
    return [
        "ssh",
        "-i", h["key"],
        "-o", f"UserKnownHostsFile={h['known_hosts']}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-p", str(h["port"]),
        "root@127.0.0.1",
    ]


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.lab", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pu = sub.add_parser("up", help="start lab hosts and write the inventory")
    pu.add_argument("n", nargs="?", type=int, default=3)
    pu.add_argument("--root", default=DEFAULT_ROOT)
    pu.add_argument("--inventory", default=DEFAULT_INVENTORY)
    pu.add_argument("--ssh-base", type=int, default=2200)
    pu.add_argument("--http-base", type=int, default=8000)
    pu.add_argument("--validate-timestamps", type=int, default=0)
    pu.add_argument("--document-root", action="store_true", help="nginx passes $document_root (the symlink fault)")
    pu.add_argument("--ensure-packages", action="store_true")
    pu.add_argument("--stack", action="store_true", help="also the app stack: MariaDB, Redis, supervisord per host")
    pu.add_argument("--db-port", type=int, default=None, help="the stack's MariaDB port (default 3307)")
    pu.add_argument("--redis-port", type=int, default=None, help="the stack's Redis port (default 6380)")
    pu.add_argument("--workers-user", default=WEB_USER, help="user of the queue workers and the scheduler")
    pu.add_argument("--latency", type=float, default=0, metavar="MS",
                    help="delay every SSH byte MS each way (a relay in front of sshd; round trip 2 x MS)")
    pu.add_argument("--proxy-base", type=int, default=None, help="relay ports: BASE+i (default: ssh-base+1000)")
    pu.add_argument("--light", action="store_true", help="one FPM worker, fewer nginx connections (big fleets)")
    pd = sub.add_parser("down", help="stop all lab daemons under root")
    pd.add_argument("--root", default=DEFAULT_ROOT)
    pd.add_argument("--purge", action="store_true")
    ps = sub.add_parser("status", help="show lab hosts and their pids")
    ps.add_argument("--root", default=DEFAULT_ROOT)
    a = p.parse_args(argv)
    try:
        if a.cmd == "up":
            if a.ensure_packages:
                ensure_packages()
            hs = up(a.n, a.root, a.inventory, a.ssh_base, a.http_base, a.validate_timestamps, not a.document_root,
                    stack=a.stack, db_port=a.db_port, redis_port=a.redis_port, workers_user=a.workers_user,
                    latency_ms=a.latency, proxy_base=a.proxy_base, light=a.light)
            for h in hs:
                via = f" (relay, {h['latency_ms']:g} ms each way, sshd {h['ssh_port']})" if h["proxy_port"] else ""
                print(f"{h['name']}\tssh {h['port']}{via}\thttp {h['http_port']}\t{h['deploy_path']}")
        elif a.cmd == "down":
            down(a.root, a.purge)
        else:
            for h in hosts(a.root):
                print(
                    f"{h['name']}\tssh {h['ssh_port']} pid {h['sshd_pid']}\tfpm pid {h['fpm_pid']}\t"
                    f"http {h['http_port']} pid {h['nginx_pid']}\trealpath_root={h['realpath_root']}\t"
                    f"validate_timestamps={h['pool']['validate_timestamps']}"
                    + (f"\tsupervisord pid {h['stack']['supervisor']['pid']}\tdb {h['stack']['db']['port']} pid "
                       f"{h['stack']['db']['pid']}\tredis {h['stack']['redis']['port']} pid {h['stack']['redis']['pid']}"
                       if h["stack"] else "")
                    + (f"\tlatency relay {h['proxy_port']} pid {h['latency_pid']} {h['latency_ms']:g} ms"
                       if h["proxy_port"] else "")
                )
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # python -m deploy.lab.hosts; `python -m deploy.lab` runs __main__.py
    sys.exit(main())
