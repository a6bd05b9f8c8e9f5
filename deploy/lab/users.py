"""Who the lab runs as: root for the masters, the web user for pools, nginx workers and queue workers."""

from __future__ import annotations

import grp
import os
import pwd

from .messages import LabError

WEB_USER = "www-data"


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab must run as root (sshd, nginx 'user www-data', FPM pools)")


def ids(user: str) -> tuple[int, int]:
    """(uid, gid) of a user's primary group."""
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


def web_ids() -> tuple[int, int]:
    """(uid, gid) of the web user and of its group of the same name."""
    return pwd.getpwnam(WEB_USER).pw_uid, grp.getgrnam(WEB_USER).gr_gid


def home(user: str) -> str:
    return pwd.getpwnam(user).pw_dir


def exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False
