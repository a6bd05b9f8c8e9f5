"""One parser per section of deploy/remote/gather.sh's output: text in, plain data out.

Pure functions (tests/test_health_parsers.py feeds each one a table of outputs). The shapes are
what the checks read; a section the host did not print parses to its "not checked" shape.
"""

from __future__ import annotations

import json
import re

from .. import remote

# The last marker may end the output (the executor strips what a command printed).
_SECTION = re.compile(r"\n?\x1dS (\S+)(?: (\S*))?(?:\n|$)")
_RC = re.compile(r"\n?\x1dRC (-?\d+)\s*$")


def split(text):
    """Gather output -> ({name: text}, [(name, host time)]) in the order printed."""
    parts = _SECTION.split(text or "")
    out, times = {}, []
    for i in range(1, len(parts) - 2, 3):
        out[parts[i]] = parts[i + 2]
        try:
            times.append((parts[i], float(parts[i + 1])))
        except (TypeError, ValueError):
            pass
    return out, times


def tabbed(text):
    """Non-empty lines split at tabs."""
    return [line.rstrip("\r").split("\t") for line in (text or "").split("\n") if line.strip()]


def rc_split(text):
    """A program's output and its exit code (the `\\x1dRC n` marker gather.sh prints after it)."""
    if text is None:
        return None, None
    m = _RC.search(text)
    return (text[:m.start()], int(m.group(1))) if m else (text, None)


def json_with_rc(text):
    """fpmctl output: one JSON object, then the exit code marker -> {"rc", "data"}; None when absent."""
    if text is None:
        return None
    body, code = rc_split(text)
    data = None
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            break
    return {"rc": code, "data": data}


# ---------------------------------------------------------------------------- host and layout

def meta(text):
    return {r[0]: r[1] for r in tabbed(text) if len(r) > 1}


def layout(text):
    out = {"releases": [], "writable": {}}
    for r in tabbed(text):
        if r[0] == "release" and len(r) > 1:
            out["releases"].append(r[1])
        elif r[0] == "writable" and len(r) > 1:
            out["writable"][r[1]] = r[2] if len(r) > 2 else ""
        else:
            out[r[0]] = r[1] if len(r) > 1 else ""
    return out


def history(text):
    out = []
    for line in (text or "").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def programs(text):
    """`sha256sum *.php` of the host's installed programs -> what it has, and what it lacks."""
    have = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            have[parts[1].lstrip("*")] = parts[0]
    return {"have": have, "missing": remote.missing(text)}


# ---------------------------------------------------------------------------- the pool

def pool(status):
    """The pool's report on every script it cached and its error log: part of fpmctl status
    (changed_cached, error_log, error_log_tail), kept apart for the checks that read it."""
    if not status or status.get("rc") != 0 or not isinstance(status.get("data"), dict):
        return None
    st = status["data"]
    cached = (st.get("opcache") or {}).get("changed_cached")
    if not isinstance(cached, dict):
        return None
    return {"rc": 0, "data": {"pid": st.get("pid"), "live": st.get("current_realpath"), "opcache": cached,
                              "error_log": st.get("error_log"), "error_log_tail": st.get("error_log_tail")}}


# ---------------------------------------------------------------------------- what is served

def http(text):
    if not text:
        return None
    head, _, body = text.partition("\x1dBODY\n")
    code = None
    for r in tabbed(head):
        if r[0] == "code" and len(r) > 1:
            code = int(r[1]) if r[1].isdigit() else 0
    return {"code": code or 0, "body": body.rstrip("\n")}


def disk(text):
    runs = []
    for chunk in re.split(r"\x1dRUN \d+\n", text or "")[1:]:
        m = re.search(r"\x1dSTATUS (-?\d+)\n", chunk)
        if m:
            runs.append({"status": int(m.group(1)), "body": chunk[m.end():].rstrip("\n")})
        else:
            runs.append({"status": None, "body": chunk.strip()})
    return runs


def fpm(text):
    out = {"listen_inode": None, "masters": [], "socket": None, "all_masters": 0, "http_owners": []}
    for r in tabbed(text):
        if r[0] == "masters":
            out["all_masters"] = len(r[1].split()) if len(r) > 1 else 0
        elif r[0] == "http_owners":
            out["http_owners"] = [int(x) for x in r[1].split()] if len(r) > 1 else []
        elif r[0] == "listen_inode":
            out["listen_inode"] = None if len(r) < 2 or r[1] in ("", "none") else r[1]
        elif r[0] == "master" and len(r) >= 6:
            out["masters"].append({"pid": int(r[1]), "owns_socket": r[2], "uptime": int(r[3]) if r[3].isdigit() else None,
                                   "workers": int(r[4]) if r[4].strip().isdigit() else 0, "args": r[5]})
        elif r[0] == "socket":
            if len(r) >= 4:
                out["socket"] = {"state": "ok", "owner": r[1], "group": r[2], "mode": r[3]}
            else:
                out["socket"] = {"state": r[1] if len(r) > 1 else "missing"}
    return out


def nginx(text):
    out = {"master": None, "others": [], "default_rc": None, "none": False, "worker_socket": None, "dump": None}
    head, sep, dump = (text or "").partition("\x1dDUMP\n")
    if sep:
        out["dump"] = dump
    for r in tabbed(head):
        if r[0] == "master" and len(r) >= 4:
            out["master"] = {"pid": int(r[1]), "conf": r[2], "rc": int(r[3]), "worker_user": r[4] if len(r) > 4 else ""}
        elif r[0] == "other" and len(r) >= 3:
            out["others"].append({"pid": int(r[1]), "conf": r[2]})
        elif r[0] == "default" and len(r) >= 2:
            out["default_rc"] = int(r[1]) if r[1].lstrip("-").isdigit() else None
        elif r[0] == "worker_socket" and len(r) >= 2:
            out["worker_socket"] = r[1]
        elif r[0] == "nonginx":
            out["none"] = True
    return out


# ---------------------------------------------------------------------------- the live tree's files

def owner(text):
    out = {"checked": False, "noweb": False, "notw": [], "notw_count": {}, "missing": [], "codew": [],
           "codew_count": 0, "codew_top": [], "odd": [], "odd_count": 0}
    for r in tabbed(text):
        out["checked"] = True
        tag = r[0]
        if tag == "noweb":
            out["noweb"] = True
        elif tag in ("notw", "codew", "odd") and len(r) >= 4:
            out[tag].append({"owner": r[1], "mode": r[2], "path": r[3]})
        elif tag == "notw_count" and len(r) >= 3:
            out["notw_count"][r[1]] = int(r[2])
        elif tag in ("codew_count", "odd_count") and len(r) >= 2:
            out[tag] = int(r[1])
        elif tag == "codew_top" and len(r) >= 2:
            out["codew_top"].append(r[1])
        elif tag == "missing" and len(r) >= 2:
            out["missing"].append({"name": r[1], "path": r[2] if len(r) > 2 else ""})
    return out


def bootstrap(text):
    out = {"checked": False, "nodir": False, "files": {}, "configref": {}, "basepath": {}, "newer_config": [],
           "newer_env": None, "newer_routes": []}
    for r in tabbed(text):
        out["checked"] = True
        tag = r[0]
        if tag == "nodir":
            out["nodir"] = True
        elif tag == "file" and len(r) >= 5:
            out["files"][r[1]] = {"owner": r[2], "mode": r[3], "mtime": float(r[4])}
        elif tag in ("configref", "basepath") and len(r) >= 3:
            out[tag][r[2]] = int(r[1])
        elif tag in ("newer_config", "newer_routes") and len(r) >= 2:
            out[tag].append(r[1])
        elif tag == "newer_env" and len(r) >= 2:
            out["newer_env"] = r[1]
    return out


def log(text):
    out = {"file": None, "lines": []}
    head, sep, tail = (text or "").partition("\x1dTAIL\n")
    for r in tabbed(head):
        if r[0] == "file" and len(r) > 1:
            out["file"] = r[1] or None
    out["lines"] = tail.split("\n") if sep else []
    return out


def env(text):
    """The live .env: "file" is ok, missing, dangling, unreadable (None: not checked); "keys"
    maps each required key it sets to "set" or "empty" (values are never printed)."""
    out = {"file": None, "path": None, "keys": {}}
    for r in tabbed(text):
        if r[0] == "file" and len(r) > 1:
            out["file"], out["path"] = r[1], (r[2] if len(r) > 2 else None)
        elif r[0] == "key" and len(r) > 2:
            out["keys"][r[1]] = r[2]
    return out


# ---------------------------------------------------------------------------- the app

def app(text):
    """appcheck.php's report -> {"checked", "rc", "data" (its JSON, or None), "noise" (anything
    else it printed: PHP warnings, a fatal error)}."""
    if not (text or "").strip():   # gather.sh did not run it (no live release, no programs)
        return {"checked": False, "rc": None, "data": None, "noise": ""}
    body, code = rc_split(text)
    data, noise = None, []
    for line in body.splitlines():
        if data is None and line.startswith("{"):
            try:
                data = json.loads(line)
                continue
            except ValueError:
                pass
        if line.strip():
            noise.append(line.strip())
    return {"checked": True, "rc": code, "data": data if isinstance(data, dict) else None, "noise": "\n".join(noise)[-600:]}


_MIGRATION_ROW = re.compile(r"^\|\s*(Yes|No)\s*\|\s*(\S+)\s*\|\s*(\d*)\s*\|\s*$")           # Laravel 8
_MIGRATION_LINE = re.compile(r"^\s*(\S+)\s+\.+\s+(?:\[(\d+)\]\s+)?(Ran|Pending)\s*$")       # Laravel 9+


def migrate_status(output, rc=0):
    """`php artisan migrate:status` -> {"state", "ran", "pending", "batch", "error"}.

    state: "table" (ran and pending listed), "no_table" (the migrations table does not exist:
    nothing was ever migrated), "none" (the app has no migrations), "error" (anything else).
    Laravel 8 prints a table ("Ran?" Yes/No); 9 and later print dotted lines (Ran/Pending).
    """
    out = {"state": "error", "ran": [], "pending": [], "batch": None, "error": None}
    text = output or ""
    for line in text.splitlines():
        m = _MIGRATION_ROW.match(line.strip())
        if m:
            (out["ran"] if m.group(1) == "Yes" else out["pending"]).append(m.group(2))
            if m.group(3):
                out["batch"] = max(out["batch"] or 0, int(m.group(3)))
            continue
        m = _MIGRATION_LINE.match(line)
        if m:
            (out["ran"] if m.group(3) == "Ran" else out["pending"]).append(m.group(1))
            if m.group(2):
                out["batch"] = max(out["batch"] or 0, int(m.group(2)))
    low = text.lower()
    if out["ran"] or out["pending"]:
        out["state"] = "table"
    elif "migration table not found" in low:
        out["state"] = "no_table"
    elif "no migrations found" in low:
        out["state"] = "none"
    else:
        lines = [l.strip() for l in text.splitlines() if l.strip()]
        out["error"] = (lines[0] if lines else f"exit {rc}")[:300]
    return out


def workers(text):
    """The workers section: when the live release went live, who ran workers.sh, and one
    entry per matching process (workers.sh's lines: STATUS<TAB>pid=...<TAB>started=...)."""
    out = {"checked": bool((text or "").strip()), "switched": None, "as": None, "rc": None, "processes": [],
           "summary": None, "error": None}
    if not out["checked"]:
        return out
    head, _, body = text.partition("\x1dOUT\n")
    for r in tabbed(head):
        if r[0] == "switched" and len(r) > 1:
            try:
                out["switched"] = float(r[1])
            except ValueError:
                pass
        elif r[0] == "as" and len(r) > 1:
            out["as"] = r[1]
    body, out["rc"] = rc_split(body)
    for line in body.splitlines():
        fields = line.split("\t")
        if fields[0] in ("ok", "old", "stale", "unknown") and len(fields) > 1:
            p = {"status": fields[0]}
            for f in fields[1:]:
                key, _, value = f.partition("=")
                p[key] = value
            p["pid"] = int(p["pid"]) if str(p.get("pid", "")).isdigit() else None
            out["processes"].append(p)
        elif line.startswith(("proven:", "NOT proven:")):
            out["summary"] = line
        elif line.strip() and out["rc"] == 2:
            out["error"] = line.strip()
    return out
