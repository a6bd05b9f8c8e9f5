"""The sandbox hosts: real sshd, PHP-FPM and nginx per host on loopback (see docs/lab.md).

Test infrastructure that users run too (`fab lab.up`). `hosts` starts and stops the per-host
daemons and injects faults; `services` the app stack (one MariaDB and one Redis for the lab,
a supervisord with the queue workers and the scheduler per host). The public functions are
re-exported here so callers write `from deploy import lab; lab.up(3)`.
"""

from .hosts import (DEFAULT_INVENTORY, DEFAULT_ROOT, NGINX, PACKAGES, PHP_FPM, SSHD, WEB_USER, LabError,
                    down, ensure_packages, fcgi_request, fpm_ping, fpm_reload, fpm_restart, fpm_status, fpm_stop,
                    freeze_sshd, host_info, hosts, inventory_yaml, main, nginx_reconfigure, nginx_stop,
                    proxy_stats, set_latency, ssh_command, sshd_sftp, start_sshd, stop_sshd, supervisorctl, thaw_sshd, up)

__all__ = ["DEFAULT_INVENTORY", "DEFAULT_ROOT", "NGINX", "PACKAGES", "PHP_FPM", "SSHD", "WEB_USER", "LabError",
           "down", "ensure_packages", "fcgi_request", "fpm_ping", "fpm_reload", "fpm_restart", "fpm_status",
           "fpm_stop", "freeze_sshd", "host_info", "hosts", "inventory_yaml", "main", "nginx_reconfigure",
           "nginx_stop", "proxy_stats", "set_latency", "ssh_command", "sshd_sftp", "start_sshd", "stop_sshd", "supervisorctl", "thaw_sshd", "up"]
