"""The lab's app stack: what a real Laravel host talks to besides PHP-FPM and nginx.

For the whole lab (one ``root``), shared by every host, as on a real fleet:

* ONE MariaDB server (Debian's ``mariadb-server``) on ``127.0.0.1:{db_port}``, everything
  under ``{root}/db/`` (config ``my.cnf``, ``data/``, socket, pid file, log), initialised with
  ``mariadb-install-db``; a database ``app`` and a user ``app`` with a generated password
  (``{root}/db/credentials.json``). ``root`` logs in through the unix socket only.
* ONE Redis server (Debian's ``redis-server``) on ``127.0.0.1:{redis_port}``, under
  ``{root}/redis/``, no persistence: the queue and the cache.

Per host ``labN``:

* a supervisord (Debian's ``supervisor``, its own config and unix socket under
  ``{root}/labN/supervisor/``, no systemd) running the group ``app``: ``queue`` (2 processes of
  ``php <deploy_path>/current/artisan queue:work redis ...``) and ``scheduler``
  (``artisan schedule:work``), as the web user unless told otherwise. ``directory`` is
  ``<deploy_path>/current``: chdir(2) resolves the symlink, so each process's cwd is the real
  release it started in (what ``deploy/remote/workers.sh`` checks). With nothing deployed yet
  the chdir fails and the programs end FATAL; ``supervisorctl ... restart app:*`` after a
  deploy starts them.
* the first ``<deploy_path>/shared/.env`` (database, Redis, queue and cache settings, a
  per-host ``CACHE_PREFIX``), written only when missing: on a real server an ops person puts
  it there by hand; the deploy's ``shared`` step links it into each release.

The stack's ports and workers user are kept in ``{root}/stack.json``; ``info()`` reads them
back into a ``Stack``. Daemons are stopped by pid file checked against their command line, like
the host daemons (``processes.py``), so a stranger's mariadbd, redis-server or supervisord is
never signalled. Configs are rendered from ``templates/`` (``my.cnf``, ``redis.conf``,
``supervisord.conf``, ``env``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import users
from .configs import render
from .files import mkdir, tail, write
from .messages import LabError, log
from .model import ADDRESS, LabHost
from .packages import MARIADB, MARIADB_INSTALL_DB, MARIADBD, REDIS_SERVER, SUPERVISORCTL, SUPERVISORD
from .processes import START_TIMEOUT, daemon_pid, matching, port_open, run_daemon, stop, wait
from .users import WEB_USER

DB_PORT = 3307
REDIS_PORT = 6380
DB_NAME = "app"
DB_USER = "app"
GROUP = "app"             # supervisor group: `supervisorctl restart app:*`
QUEUE_PROCESSES = 2

# The environment supervisord (and so every worker) starts with: nothing of the caller's
# (a CI job's secrets must not leak into long-running workers).
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


# ------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Database:
    port: int
    socket: str
    conf: str
    log: str
    pid: int | None
    database: str | None
    username: str | None
    password: str | None
    host: str = ADDRESS

    @property
    def login(self) -> str:
        return f"mariadb --no-defaults -h {self.host} -P {self.port} -u {self.username} -p"


@dataclass(frozen=True)
class Redis:
    port: int
    conf: str
    log: str
    pid: int | None
    host: str = ADDRESS


@dataclass(frozen=True)
class Supervisor:
    """A host's supervisord: its files, pid, the workers' user and supervisorctl command lines."""

    dir: str
    conf: str
    socket: str
    pid_file: str
    log: str
    pid: int | None
    user: str
    group: str = GROUP

    @property
    def ctl(self) -> str:
        return f"{SUPERVISORCTL} -c {self.conf}"

    @property
    def restart(self) -> str:
        return f"{self.ctl} restart {self.group}:*"

    @property
    def status(self) -> str:
        return f"{self.ctl} status"


@dataclass(frozen=True)
class Stack:
    """The stack as one host sees it (`LabHost.stack`; None when the lab has no stack)."""

    db: Database
    redis: Redis
    supervisor: Supervisor
    env_file: str


@dataclass(frozen=True)
class Layout:
    """The stack's files under a lab root."""

    root: Path

    @property
    def state_file(self) -> str:
        return str(self.root / "stack.json")

    @property
    def start_log(self) -> str:
        return str(self.root / "stack-start.log")

    @property
    def db_dir(self) -> str:
        return str(self.root / "db")

    @property
    def db_conf(self) -> str:
        return f"{self.db_dir}/my.cnf"

    @property
    def db_data(self) -> str:
        return f"{self.db_dir}/data"

    @property
    def db_socket(self) -> str:
        return f"{self.db_dir}/mysqld.sock"

    @property
    def db_pid_file(self) -> str:
        return f"{self.db_dir}/mysqld.pid"

    @property
    def db_log(self) -> str:
        return f"{self.db_dir}/mysqld.log"

    @property
    def db_credentials(self) -> str:
        return f"{self.db_dir}/credentials.json"

    @property
    def redis_dir(self) -> str:
        return str(self.root / "redis")

    @property
    def redis_conf(self) -> str:
        return f"{self.redis_dir}/redis.conf"

    @property
    def redis_pid_file(self) -> str:
        return f"{self.redis_dir}/redis.pid"

    @property
    def redis_log(self) -> str:
        return f"{self.redis_dir}/redis.log"


def supervisor_dir(h: LabHost) -> str:
    return f"{h.dir}/supervisor"


def _supervisor(h: LabHost, user: str) -> Supervisor:
    d = supervisor_dir(h)
    conf, pid_file = f"{d}/supervisord.conf", f"{d}/supervisord.pid"
    return Supervisor(dir=d, conf=conf, socket=f"{d}/supervisor.sock", pid_file=pid_file, log=f"{d}/supervisord.log",
                      pid=daemon_pid(pid_file, conf), user=user)


def load_state(root: Path) -> dict | None:
    try:
        return json.loads(Path(Layout(root).state_file).read_text())
    except (OSError, ValueError):
        return None


def _credentials(root: Path) -> dict:
    """The app's database login, generated once per lab root (kept across up/down)."""
    f = Path(Layout(root).db_credentials)
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        creds = {"database": DB_NAME, "username": DB_USER, "password": secrets.token_hex(16)}
        write(f, json.dumps(creds, indent=2) + "\n", 0o600)
        return creds


# ------------------------------------------------------------------------ MariaDB


def _db_pid(p: Layout) -> int | None:
    return daemon_pid(p.db_pid_file, p.db_conf)


def _db_sql(p: Layout, sql: str) -> str:
    """Run SQL as the database's root (unix socket authentication: only the OS root gets in)."""
    r = subprocess.run([MARIADB, "--no-defaults", f"--socket={p.db_socket}", "-u", "root", "-N", "-e", sql],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise LabError(f"database: {sql.split()[0]} ... failed: {r.stderr.strip()}")
    return r.stdout


def _db_answers(p: Layout) -> bool:
    r = subprocess.run([MARIADB, "--no-defaults", f"--socket={p.db_socket}", "-u", "root", "-e", "SELECT 1"],
                       capture_output=True, timeout=10)
    return r.returncode == 0


def _start_db(p: Layout, port: int) -> int:
    mkdir(Path(p.db_dir), 0o755, *users.ids("mysql"))
    write(Path(p.db_conf), render("my.cnf", data=p.db_data, socket=p.db_socket, pid_file=p.db_pid_file, log=p.db_log,
                                  port=port), 0o644)
    if not (Path(p.db_data) / "mysql").is_dir():
        log("db: mariadb-install-db (first start)")
        with open(p.start_log, "ab") as out:
            r = subprocess.run([MARIADB_INSTALL_DB, f"--defaults-file={p.db_conf}", "--skip-test-db",
                                "--auth-root-authentication-method=socket"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=120)
        if r.returncode != 0:
            raise LabError(f"mariadb-install-db exited {r.returncode}:\n{tail(p.start_log)}")
    Path(p.db_pid_file).unlink(missing_ok=True)
    if port_open(port):
        raise LabError(f"port {port} is already in use: the lab's database cannot listen there (pick another db_port)")
    # mariadbd does not daemonize itself: setsid -f detaches it from us (its parent becomes init).
    run_daemon(["setsid", "-f", MARIADBD, f"--defaults-file={p.db_conf}"], Path(p.start_log))
    try:
        wait(lambda: port_open(port) and _db_answers(p), 60, f"the database on port {port}", interval=0.2)
    except LabError as e:
        raise LabError(f"{e}\n{tail(p.db_log)}") from None
    return wait(lambda: _db_pid(p), START_TIMEOUT, "the database's pid file")


def _ensure_app_database(root: Path, p: Layout) -> dict:
    c = _credentials(root)
    # The password is hex (no quoting issue); both hosts: skip-name-resolve makes 127.0.0.1
    # (TCP) and localhost (the socket) different accounts.
    accounts = [f"'{c['username']}'@'127.0.0.1'", f"'{c['username']}'@'localhost'"]
    sql = [f"CREATE DATABASE IF NOT EXISTS `{c['database']}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"]
    for u in accounts:
        sql.append(f"CREATE USER IF NOT EXISTS {u} IDENTIFIED BY '{c['password']}';")
        sql.append(f"ALTER USER {u} IDENTIFIED BY '{c['password']}';")
        sql.append(f"GRANT ALL PRIVILEGES ON `{c['database']}`.* TO {u};")
    _db_sql(p, " ".join(sql))
    return c


# -------------------------------------------------------------------------- Redis


def _redis_pid(p: Layout) -> int | None:
    return daemon_pid(p.redis_pid_file, p.redis_conf)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((ADDRESS, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(p: Layout, port: int) -> int:
    mkdir(Path(p.redis_dir), 0o750, *users.ids("redis"))
    write(Path(p.redis_conf), render("redis.conf", port=port, pid_file=p.redis_pid_file, log=p.redis_log,
                                     dir=p.redis_dir), 0o644)
    Path(p.redis_pid_file).unlink(missing_ok=True)
    if port_open(port):
        raise LabError(f"port {port} is already in use: the lab's Redis cannot listen there (pick another redis_port)")
    run_daemon(["runuser", "-u", "redis", "--", REDIS_SERVER, p.redis_conf], Path(p.start_log))
    try:
        wait(lambda: _redis_ping(port), START_TIMEOUT, f"Redis on port {port}")
    except LabError as e:
        raise LabError(f"{e}\n{tail(p.redis_log)}") from None
    return wait(lambda: _redis_pid(p), START_TIMEOUT, "Redis's pid file")


# --------------------------------------------------------------------- supervisor


def _supervisor_config(h: LabHost, s: Supervisor) -> str:
    common = render("supervisord-program.conf", current=h.current, user=s.user, home=users.home(s.user))
    return render("supervisord.conf", name=h.name, socket=s.socket, log=s.log, pid_file=s.pid_file, dir=s.dir,
                  conf=s.conf, group=s.group, current=h.current, queue_processes=QUEUE_PROCESSES, common=common)


def supervisorctl_argv(h: LabHost) -> list[str]:
    """argv prefix of supervisorctl for this host's supervisord (add e.g. 'restart', 'app:*')."""
    return [SUPERVISORCTL, "-c", f"{supervisor_dir(h)}/supervisord.conf"]


def _start_supervisor(h: LabHost, user: str) -> int:
    s = _supervisor(h, user)
    mkdir(Path(s.dir), 0o755)
    write(Path(s.conf), _supervisor_config(h, s), 0o644)
    Path(s.pid_file).unlink(missing_ok=True)
    Path(s.socket).unlink(missing_ok=True)
    run_daemon([SUPERVISORD, "-c", s.conf], Path(h.start_log), env=CLEAN_ENV)

    def answers():
        r = subprocess.run(supervisorctl_argv(h) + ["pid"], capture_output=True, text=True, timeout=10)
        return r.stdout.strip().isdigit()

    try:
        wait(answers, START_TIMEOUT, f"{h.name} supervisord on {s.socket}", interval=0.1)
    except LabError as e:
        raise LabError(f"{e}\n{tail(s.log)}") from None
    return wait(lambda: daemon_pid(s.pid_file, s.conf), START_TIMEOUT, f"{h.name} supervisord pid file")


# ---------------------------------------------------------------------- .env file


def env_text(h: LabHost, state: dict, creds: dict) -> str:
    key = "base64:" + base64.b64encode(secrets.token_bytes(32)).decode()
    return render("env", deploy_path=h.deploy_path, app_key=key, base_url=h.base_url, name=h.name,
                  db_port=state["db_port"], redis_port=state["redis_port"], **creds)


def _ensure_env(h: LabHost, state: dict, creds: dict) -> bool:
    """Write <deploy_path>/shared/.env if it is missing; True if written."""
    shared = Path(h.deploy_path) / "shared"
    env = shared / ".env"
    if env.exists() or env.is_symlink():
        return False
    mkdir(shared, 0o755)
    write(env, env_text(h, state, creds), 0o640)
    # owned by the deploy user (root in the lab), readable by the web user's group: the pool
    # and the workers read it, nobody but the deploy user writes it
    os.chown(env, 0, users.web_ids()[1])
    return True


# ------------------------------------------------------------------- up / down


def up(root: Path, hosts: list[LabHost], db_port: int, redis_port: int, workers_user: str) -> dict:
    """Start what is not running of the stack for these hosts (idempotent). Called by lifecycle.up()
    with the lab lock held. A stack already running on other ports is an error."""
    p = Layout(root)
    want = {"db_port": int(db_port), "redis_port": int(redis_port), "workers_user": workers_user}
    old = load_state(root)
    running = {"db": _db_pid(p), "redis": _redis_pid(p)}
    if old and (running["db"] or running["redis"]) and (old["db_port"], old["redis_port"]) != (
            want["db_port"], want["redis_port"]):
        raise LabError(f"the lab's stack is running on db port {old['db_port']} / redis port {old['redis_port']}, "
                       f"not {want['db_port']} / {want['redis_port']}: run down(root={str(root)!r}) first")
    if not users.exists(workers_user):
        raise LabError(f"no user {workers_user!r} to run the workers as (workers_user)")
    write(Path(p.state_file), json.dumps(want, indent=2, sort_keys=True) + "\n")
    started = []
    if not running["db"]:
        _start_db(p, want["db_port"])
        started.append(f"mariadb (port {want['db_port']})")
    creds = _ensure_app_database(root, p)
    if not running["redis"]:
        _start_redis(p, want["redis_port"])
        started.append(f"redis (port {want['redis_port']})")
    for h in hosts:
        if _ensure_env(h, want, creds):
            started.append(f"{h.name} .env")
        if not _supervisor(h, workers_user).pid:
            _start_supervisor(h, workers_user)
            started.append(f"{h.name} supervisord")
    if started:
        log(f"stack: started {', '.join(started)}")
    return want


def down(root: Path, hosts: list[LabHost]) -> list[str]:
    """Stop every host's supervisord (and its workers), then Redis, then the database."""
    stopped = []
    for h in hosts:
        s = _supervisor(h, WEB_USER)
        if stop(s.pid_file, s.conf, with_descendants=True):
            stopped.append(f"{h.name}:supervisord")
        Path(s.socket).unlink(missing_ok=True)
    p = Layout(root)
    if stop(p.redis_pid_file, p.redis_conf):
        stopped.append("redis")
    if stop(p.db_pid_file, p.db_conf):
        stopped.append("mariadb")
    return stopped


def stray_pids(root: Path) -> list[int]:
    """Stack daemons of this root found by command line (their pid files lost or overwritten)."""
    return matching(re.compile(r"(mariadbd|redis-server|supervisord).*" + re.escape(str(root))
                               + r"/(db/my\.cnf|redis/redis\.conf|lab\d+/supervisor/supervisord\.conf)\b"))


def info(root: Path, h: LabHost) -> Stack | None:
    """The stack's details as a host sees them (None when the lab has no stack)."""
    state = load_state(root)
    if state is None:
        return None
    p = Layout(root)
    creds = _credentials(root) if Path(p.db_credentials).exists() else {}
    return Stack(
        db=Database(port=state["db_port"], socket=p.db_socket, conf=p.db_conf, log=p.db_log, pid=_db_pid(p),
                    database=creds.get("database"), username=creds.get("username"), password=creds.get("password")),
        redis=Redis(port=state["redis_port"], conf=p.redis_conf, log=p.redis_log, pid=_redis_pid(p)),
        supervisor=_supervisor(h, state["workers_user"]),
        env_file=f"{h.deploy_path}/shared/.env",
    )
