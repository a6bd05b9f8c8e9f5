"""The sandbox hosts: real sshd, PHP-FPM and nginx per host on loopback (see docs/lab.md).

Test infrastructure that users run too (`fab lab.up`). A host is a `LabHost` (model.py); the
modules, each named for what it holds: `lifecycle` (up, down, host_info), `daemons` (start and
stop a host's sshd, pool, nginx, relay), `faults` (fault injection), `status` (read-only
helpers), `services` (the app stack: one MariaDB and one Redis for the lab, a supervisord per
host), `configs` + `templates/` (the daemons' config files), `keys` (SSH keys, known_hosts),
`inventory` (hosts/lab.yml), `packages` (Debian packages, binaries), `processes` (pid files,
/proc), `fpmctl` (the pools' FastCGI, through deploy/remote/fpmctl.php), `latency` (the relay),
`load` (HTTP load with wrk), `cli` (`python -m deploy.lab`). The public functions are
re-exported here so callers write `from deploy import lab; lab.up(3)`.
"""

from .cli import main
from .faults import (fpm_reload, fpm_restart, fpm_stop, freeze_sshd, nginx_reconfigure, nginx_stop, set_latency,
                     sshd_sftp, start_sshd, stop_sshd, thaw_sshd)
from .inventory import inventory_yaml
from .lifecycle import down, host_info, hosts, up
from .messages import LabError
from .model import DEFAULT_INVENTORY, DEFAULT_ROOT, LabHost, Pids, Pool
from .packages import NGINX, PACKAGES, PHP_FPM, SSHD, ensure_packages
from .services import Database, Redis, Stack, Supervisor
from .status import fpm_ping, fpm_status, proxy_stats, ssh_command, supervisorctl
from .users import WEB_USER

__all__ = ["DEFAULT_INVENTORY", "DEFAULT_ROOT", "NGINX", "PACKAGES", "PHP_FPM", "SSHD", "WEB_USER", "Database",
           "LabError", "LabHost", "Pids", "Pool", "Redis", "Stack", "Supervisor", "down", "ensure_packages",
           "fpm_ping", "fpm_reload", "fpm_restart", "fpm_status", "fpm_stop", "freeze_sshd", "host_info", "hosts",
           "inventory_yaml", "main", "nginx_reconfigure", "nginx_stop", "proxy_stats", "set_latency", "ssh_command",
           "sshd_sftp", "start_sshd", "stop_sshd", "supervisorctl", "thaw_sshd", "up"]
