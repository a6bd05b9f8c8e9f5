"""The Debian packages the lab (and `make deps`) needs, and the binaries it runs.

`ensure_packages()` installs what is missing with apt-get; everything else in the lab assumes
these binaries exist.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from .messages import LabError, log
from .users import require_root

SSHD = "/usr/sbin/sshd"
PHP_FPM = "/usr/sbin/php-fpm8.2"
NGINX = "/usr/sbin/nginx"
PHP = "/usr/bin/php"  # the CLI: runs deploy/remote/fpmctl.php against the pools (fpmctl.py)
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL_DB = "/usr/bin/mariadb-install-db"
MARIADB = "/usr/bin/mariadb"
REDIS_SERVER = "/usr/bin/redis-server"
SUPERVISORD = "/usr/bin/supervisord"
SUPERVISORCTL = "/usr/bin/supervisorctl"

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
    "shellcheck",  # lints deploy/remote/*.sh and the CI recipes' shell (tests/test_remote_scripts.py, test_ci_docs.py)
    "nodejs",  # `node --check` of the CI recipe's comment script (tests/test_ci_docs.py)
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
    PHP: "php8.2-cli",
    NGINX: "nginx",
    MARIADBD: "mariadb-server",
    MARIADB: "mariadb-client",
    REDIS_SERVER: "redis-server",
    SUPERVISORD: "supervisor",
    "composer": "composer",
    "wrk": "wrk",
}


def ensure_packages(packages: list[str] | None = None) -> list[str]:
    """Install what is missing of PACKAGES (apt-get update once, then install).

    Returns the list of packages that were installed (empty when all were present).
    """
    wanted = list(packages or PACKAGES)
    missing = []
    for pkg in wanted:
        r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg], capture_output=True, text=True)
        if r.returncode != 0 or not r.stdout.startswith("ii"):
            missing.append(pkg)
    for binary, pkg in BINARIES.items():
        if shutil.which(binary) is None and pkg not in missing:
            missing.append(pkg)
    if not missing:
        return []
    require_root()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {' '.join(missing)}")
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    still = [b for b in BINARIES if shutil.which(b) is None]
    if still:
        raise LabError(f"still missing after install: {' '.join(still)}")
    return missing
