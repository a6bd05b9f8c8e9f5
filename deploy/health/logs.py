"""Laravel's and PHP's log lines, and the deploy history's last change. Pure functions: text
in, entries out (tests/test_health_parsers.py feeds them tables)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

LOG_TAIL_LINES = 300
# Messages that mean "PHP could not write": the fix is the writable dirs' ACLs.
PERMISSION_PATTERNS = ("permission denied", "must be present and writable", "could not be opened in append mode",
                       "failed to open stream: permission", "read-only file system")
ERROR_LEVELS = ("ERROR", "CRITICAL", "ALERT", "EMERGENCY")

_LARAVEL_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.\d+)?(?:[+-]\d\d:?\d\d)?\]\s+\S+?\.([A-Z]+):\s?(.*)$")
_PHP_LINE = re.compile(r"^\[(\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d)(?: ([A-Za-z_/+-]+))?\]\s+(.*)$")


def parse_utc(text):
    """A log or history timestamp as an aware UTC datetime (naive times are read as UTC), or None."""
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
        try:
            dt = datetime.strptime(text, fmt)
            return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
        except (ValueError, TypeError):
            continue
    return None


def laravel_entries(lines):
    """Laravel single/daily log lines -> [(datetime UTC, LEVEL, message)] (continuation lines dropped)."""
    out = []
    for line in lines:
        m = _LARAVEL_LINE.match(line)
        if m:
            out.append((parse_utc(m.group(1).replace("T", " ")), m.group(2), m.group(3)))
    return out


def php_entries(text):
    """PHP error_log lines -> [(datetime UTC, ERROR|WARNING|NOTICE, message)]."""
    out = []
    for line in (text or "").splitlines():
        m = _PHP_LINE.match(line)
        if not m:
            continue
        try:
            t = datetime.strptime(m.group(1), "%d-%b-%Y %H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        msg = m.group(3)
        level = "ERROR" if re.search(r"PHP (Fatal|Parse) error|Uncaught", msg) else (
            "WARNING" if "PHP Warning" in msg else "NOTICE")
        out.append((t, level, msg))
    return out


def is_permission_error(message):
    low = message.lower()
    return any(p in low for p in PERMISSION_PATTERNS)


def last_change(history):
    """Time of the last deploy/rollback/heal recorded in the history (UTC datetime) or None."""
    for rec in reversed(history or []):
        if rec.get("action") in ("deploy", "rollback", "auto-rollback", "heal") and rec.get("time"):
            t = parse_utc(rec["time"])
            if t:
                return t
    return None
