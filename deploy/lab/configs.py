"""The daemons' config files, rendered from deploy/lab/templates/ (one file per config).

Templates are plain config files with `@{name}` placeholders (string.Template with `@` as the
delimiter: `$` and braces belong to nginx, `%(...)s` to supervisor). Every placeholder must get
a value; what varies beyond a value (an optional line) is computed here.
"""

from __future__ import annotations

import string
from pathlib import Path

from .model import LabHost
from .packages import NGINX, PHP_FPM
from .users import WEB_USER

TEMPLATES = Path(__file__).resolve().parent / "templates"


class _Template(string.Template):
    delimiter = "@"


def render(template: str, **values) -> str:
    """templates/<template> with every @{name} replaced (KeyError for a missing value)."""
    text = _Template((TEMPLATES / template).read_text()).substitute(values)
    return text.rstrip("\n") + "\n"


def sshd_config(h: LabHost) -> str:
    sftp = ("# SFTP for people logging in by hand; the tool itself never needs it\nSubsystem sftp internal-sftp"
            if h.sftp else "# no SFTP subsystem, as on some hardened servers")
    return render("sshd_config", name=h.name, ssh_port=h.ssh_port, host_key=h.host_key,
                  sshd_pid_file=h.sshd_pid_file, authorized_keys=h.authorized_keys, sftp=sftp)


def fpm_config(h: LabHost) -> str:
    pool = h.pool
    extra = []
    if pool.opcache_file_cache:
        extra.append(f"php_admin_value[opcache.file_cache] = {pool.opcache_file_cache}")
    extra += [f"{k} = {v}" for k, v in (pool.directives or {}).items()]
    return render("php-fpm.conf", name=h.name, fpm_pid_file=h.fpm_pid_file, fpm_log=h.fpm_log,
                  process_control_timeout=int(pool.process_control_timeout), web_user=WEB_USER, socket=h.socket,
                  max_children=int(pool.max_children), opcache_enable=int(pool.opcache_enable),
                  validate_timestamps=int(pool.validate_timestamps), revalidate_freq=int(pool.revalidate_freq),
                  php_error_log=h.php_error_log, extra="\n".join(extra))


def fpm_argv(h: LabHost) -> list[str]:
    argv = [PHP_FPM, "-y", h.fpm_conf]
    # opcache.file_cache is PHP_INI_SYSTEM: also give it to the master, so the
    # setting is the same in the master and in every worker.
    if h.pool.opcache_file_cache:
        argv += ["-d", f"opcache.file_cache={h.pool.opcache_file_cache}"]
    return argv


def nginx_config(h: LabHost) -> str:
    return render("nginx.conf", name=h.name, realpath_root=h.realpath_root, web_user=WEB_USER,
                  nginx_pid_file=h.nginx_pid_file, nginx_error_log=h.nginx_error_log,
                  worker_connections=64 if h.light else 256, nginx_access_log=h.nginx_access_log, dir=h.dir,
                  http_port=h.http_port, deploy_path=h.deploy_path, socket=h.socket,
                  root_var="$realpath_root" if h.realpath_root else "$document_root")


def nginx_argv(h: LabHost, *extra: str) -> list[str]:
    return [NGINX, "-c", h.nginx_conf, "-p", h.dir + "/", "-e", h.nginx_error_log, *extra]
