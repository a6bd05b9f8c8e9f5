"""A lab host's daemons: start sshd, the PHP-FPM pool, nginx and the latency relay; stop them all.

Each start writes the daemon's config (configs.py), runs the self-daemonizing program with its
output in the host's start.log, and waits until it listens and its pid file names it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from . import fpmctl
from .configs import fpm_argv, fpm_config, nginx_argv, nginx_config, sshd_config
from .files import logged_since, mkdir, size, tail, write
from .messages import LabError
from .model import LabHost, Pids
from .packages import SSHD
from .processes import START_TIMEOUT, alive, children, daemon_pid, matching, port_open, run_daemon, stop, wait
from .users import web_ids

# The delaying relay in front of sshd (latency.py), run by path with this interpreter.
LATENCY_SCRIPT = Path(__file__).with_name("latency.py")


def pids(h: LabHost, workers: bool = False) -> Pids:
    """What runs of the host now (by pid file checked against the command line)."""
    fpm = daemon_pid(h.fpm_pid_file, h.fpm_conf)
    nginx = daemon_pid(h.nginx_pid_file, h.nginx_conf)
    return Pids(sshd=daemon_pid(h.sshd_pid_file, h.sshd_config), fpm=fpm, nginx=nginx,
                latency=daemon_pid(h.latency_pid_file, h.latency_ctl),
                fpm_workers=tuple(children(fpm)) if workers and fpm else (),
                nginx_workers=tuple(children(nginx)) if workers and nginx else ())


def start_sshd(h: LabHost) -> int:
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    write(Path(h.sshd_config), sshd_config(h))
    Path(h.sshd_pid_file).unlink(missing_ok=True)
    mark = size(h.sshd_log)
    run_daemon([SSHD, "-f", h.sshd_config, "-E", h.sshd_log], Path(h.start_log))

    # sshd daemonizes before it binds, and writes its pid file once it listens: wait for the
    # pid file first (a connect to a port nobody listens on can even succeed, to itself).
    def listening():
        if logged_since(h.sshd_log, mark, ("Cannot bind any address",)):
            raise LabError(f"{h.name}: sshd cannot listen on 127.0.0.1:{h.ssh_port}:\n{tail(h.sshd_log, 4)}")
        return daemon_pid(h.sshd_pid_file, h.sshd_config)

    pid = wait(listening, START_TIMEOUT, f"{h.name} sshd pid file")
    wait(lambda: port_open(h.ssh_port), START_TIMEOUT, f"{h.name} sshd on port {h.ssh_port}")
    return pid


def start_fpm(h: LabHost) -> int:
    write(Path(h.fpm_conf), fpm_config(h))
    if h.pool.opcache_file_cache:
        mkdir(Path(h.pool.opcache_file_cache), 0o755, *web_ids())
    Path(h.fpm_pid_file).unlink(missing_ok=True)
    Path(h.socket).unlink(missing_ok=True)
    test = subprocess.run(fpm_argv(h) + ["-t"], capture_output=True, text=True)
    if test.returncode != 0:
        raise LabError(f"{h.name}: php-fpm config test failed:\n{test.stdout}{test.stderr}")
    run_daemon(fpm_argv(h), Path(h.start_log))
    try:
        fpmctl.wait(h.socket, START_TIMEOUT)
    except LabError as e:
        raise LabError(f"{h.name}: {e}\n{tail(h.fpm_log)}") from None
    return wait(lambda: daemon_pid(h.fpm_pid_file, h.fpm_conf), START_TIMEOUT, f"{h.name} FPM pid file")


def start_nginx(h: LabHost) -> int:
    write(Path(h.nginx_conf), nginx_config(h))
    Path(h.dir, "nginx-tmp").mkdir(exist_ok=True)
    Path(h.nginx_pid_file).unlink(missing_ok=True)
    run_daemon(nginx_argv(h), Path(h.start_log))
    try:
        wait(lambda: port_open(h.http_port), START_TIMEOUT, f"{h.name} nginx on port {h.http_port}")
    except LabError as e:
        raise LabError(f"{e}\n{tail(h.nginx_error_log)}") from None
    return wait(lambda: daemon_pid(h.nginx_pid_file, h.nginx_conf), START_TIMEOUT, f"{h.name} nginx pid file")


def reload_nginx(h: LabHost, timeout: float = START_TIMEOUT) -> None:
    """Rewrite the config and reload a running nginx; waits until only new workers serve."""
    pid = daemon_pid(h.nginx_pid_file, h.nginx_conf)
    write(Path(h.nginx_conf), nginx_config(h))
    test = subprocess.run(nginx_argv(h, "-t"), capture_output=True, text=True)
    if test.returncode != 0:
        raise LabError(f"{h.name}: nginx -t failed:\n{test.stderr}")
    old = set(children(pid))
    subprocess.run(nginx_argv(h, "-s", "reload"), check=True, capture_output=True)
    # new workers have the new config; old ones stop accepting and exit
    # (they may serve one more request meanwhile, so wait them out)
    wait(lambda: set(children(pid)) - old, timeout, f"{h.name} nginx reload")
    wait(lambda: not any(alive(p) for p in old), timeout, f"{h.name} old nginx workers to exit")
    wait(lambda: port_open(h.http_port), timeout, f"{h.name} nginx port")


def start_proxy(h: LabHost) -> int:
    Path(h.latency_pid_file).unlink(missing_ok=True)
    run_daemon([sys.executable, str(LATENCY_SCRIPT), "serve", "--listen", str(h.proxy_port),
                "--target", str(h.ssh_port), "--delay-ms", str(h.latency_ms), "--ctl", h.latency_ctl,
                "--pid-file", h.latency_pid_file, "--log", h.latency_log], Path(h.start_log))
    wait(lambda: port_open(h.proxy_port), START_TIMEOUT, f"{h.name} latency relay on port {h.proxy_port}")
    return wait(lambda: daemon_pid(h.latency_pid_file, h.latency_ctl) and Path(h.latency_ctl).exists(),
                START_TIMEOUT, f"{h.name} latency relay pid file")


def stop_host(h: LabHost) -> list[str]:
    """Stop the host's relay, nginx, pool and sshd (with their workers and sessions)."""
    stopped = []
    for what, pidfile, marker, desc in (
        ("latency", h.latency_pid_file, h.latency_ctl, False),
        ("nginx", h.nginx_pid_file, h.nginx_conf, True),
        ("fpm", h.fpm_pid_file, h.fpm_conf, True),
        ("sshd", h.sshd_pid_file, h.sshd_config, True),
    ):
        if stop(pidfile, marker, with_descendants=desc):
            stopped.append(what)
    Path(h.socket).unlink(missing_ok=True)
    return stopped


def stray_masters(root: Path) -> list[int]:
    """Lab masters under root found by cmdline (for pid files lost or overwritten)."""
    return matching(re.compile(
        r"^(sshd:|/usr/sbin/sshd|php-fpm|/usr/sbin/php-fpm|nginx:|/usr/sbin/nginx|nginx |\S*python\S* \S*latency\.py )"
        r".*" + re.escape(str(root)) + r"/lab\d+/(sshd_config|fpm\.conf|nginx\.conf|latency\.ctl)\b"))
