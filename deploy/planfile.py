"""A deploy plan as a document: what `fab plan --json` prints and `fab plan --out FILE` saves,
and what `fab deploy --plan FILE` executes (docs/commands.md#saved-plans).

The document (format "deploy-plan/1") holds the release id, the run id (the lock token), the
fleet's batches, and per host every step with its exact commands, masked: a secret is `***`
in it, never its value. It also records what the plan was made from, each with a hash: the
deploy tool, the inventory files, the playbook and the source. A deploy from a saved plan
reads those inputs again only to compare them (stale()), rebuilds the commands from them (the
real ones, secrets included) and runs them only if their masked form is the saved one
(differences()): what runs is what was approved, and the report carries the plan's sha256.

Hosts whose plans differ only in their own values (deploy path, socket, URL...) form a group:
groups() checks that each member's commands are the first member's with its values put in.
"""

import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from . import rollout
from .errors import ConfigError
from .steps import spec as kind_spec

FORMAT = "deploy-plan/1"
MAX_BYTES = 256 * 1024 * 1024
PACKAGE = Path(__file__).resolve().parent

# Host settings that may differ between hosts of one group (shown in a table instead of repeating
# their commands). Order: the table's columns.
HOST_FIELDS = ("host", "address", "port", "user", "deploy_path", "web_user", "php", "health_url", "fpm.socket",
               "fpm.reload", "fpm.file_cache")


def new_run_id():
    return secrets.token_hex(6)


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- input hashes

def tool_digest():
    """The deploy tool's own code (deploy/, without the lab): a plan is run by the code that made it."""
    h = hashlib.sha256()
    files = sorted(p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in (".py", ".sh", ".php")
                   and "__pycache__" not in p.parts and p.relative_to(PACKAGE).parts[0] != "lab")
    for p in files:
        h.update(str(p.relative_to(PACKAGE)).encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def tool_commit():
    try:
        r = subprocess.run(["git", "-C", str(PACKAGE), "rev-parse", "--verify", "--quiet", "HEAD"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None


def inventory_digest(files):
    h = hashlib.sha256()
    for f in sorted(str(f) for f in files):
        h.update(Path(f).name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return h.hexdigest()


def sync_command(steps):
    """The rsync command of a host's plan (the step that ships the code)."""
    for s in steps:
        k = kind_spec(s.kind)
        if k is not None and k.ships_code:
            for c in s.commands:
                if c.local and c.template.startswith("rsync "):
                    return c
    return None


def source_listing(sync_cmd):
    """Every file the sync step would send, with its checksum: the sync command itself, run
    locally as a dry run into an empty directory (so its exclude list is the one used), with
    an output format that prints each item's md5, permissions, name and link target."""
    argv = shlex.split(sync_cmd.render(reveal=True))
    out, skip = [], False
    for word in argv[:-1]:  # the last word is the destination
        if skip:
            skip = False
        elif word == "-e":
            skip = True
        elif word == "--stats" or word.startswith("--link-dest="):
            continue
        else:
            out.append(word)
    with tempfile.TemporaryDirectory(prefix="deploy-src-") as empty:
        cmd = [out[0], "--dry-run", "--checksum-choice=md5", "--out-format=%C %B %n%L", *out[1:], empty + "/"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        except FileNotFoundError:
            raise ConfigError("rsync is not installed on this machine", hint="apt-get install rsync") from None
    if r.returncode != 0:
        raise ConfigError(f"cannot list the source: rsync exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def source_digest(pipe, steps):
    """What will be shipped, as a hash: a git source by its tree id, a directory by the listing
    of every file sync sends (content checksum, permissions, name, link target)."""
    if pipe.git is not None:
        g = pipe.git
        return {"kind": "git", "path": pipe.source, "sha256": sha256_bytes(f"git tree {g.tree}".encode()),
                "files": None, "commit": g.commit, "dirty": bool(g.dirty), "git": g.as_dict()}
    cmd = sync_command(steps)
    commit, dirty = _dir_commit(pipe.source)
    if cmd is None:
        return {"kind": "dir", "path": pipe.source, "sha256": None, "files": None, "commit": commit,
                "dirty": dirty, "git": None}
    listing = source_listing(cmd)
    files = sum(1 for line in listing.splitlines() if line and not line.endswith("/"))
    return {"kind": "dir", "path": pipe.source, "sha256": sha256_bytes(listing.encode()), "files": files,
            "commit": commit, "dirty": dirty, "git": None}


def _dir_commit(path):
    """A source directory in a git work tree: its HEAD and whether it has uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "--verify", "--quiet", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode != 0 or not head.stdout.strip():
            return None, None
        status = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--", "."],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


# ----------------------------------------------------------------------------- the document

def host_values(host):
    return {"host": host.name, "address": host.address, "port": str(host.port), "user": host.user,
            "deploy_path": host.deploy_path, "web_user": host.web_user, "php": host.php,
            "health_url": host.health_url or "", "fpm.socket": host.fpm.socket, "fpm.reload": host.fpm.reload or "",
            "fpm.file_cache": host.fpm.file_cache or ""}


def step_summary(step):
    """A planned step in plain English: its kind's summary, or what its commands say they do."""
    k = kind_spec(step.kind)
    descs = [c.desc for c in step.commands if c.desc]
    if k is None:
        return "; ".join(dict.fromkeys(descs)) or step.kind
    if step.kind == "run":
        return k.summary + ": " + "; ".join(d.removeprefix("run: ") for d in descs)
    return k.summary


def steps_doc(steps):
    return [{"name": s.name, "kind": s.kind, "where": s.where, "summary": step_summary(s),
             "commands": [{"command": c.render(), "local": c.local, "desc": c.desc} for c in s.commands],
             "notes": list(s.notes)} for s in steps]


def _lines(steps_data):
    """A host's plan as lines of text: what groups compare."""
    out = []
    for s in steps_data:
        out.append(f"## {s['name']} {s['kind']} {s['where']}")
        out += [("L " if c["local"] else "R ") + c["command"] for c in s["commands"]]
        out += ["# " + n for n in s["notes"]]
    return out


def _placeholder(field):
    return f"\x00{field}\x00"


def _normalize(lines, values, fields):
    """Each host value (longest first, as a whole word: `web1` is not part of `web10`) -> its
    placeholder."""
    pairs = sorted(((values[f], f) for f in fields if values[f]), key=lambda p: -len(p[0]))
    if not pairs:
        return list(lines)
    # One pattern per host (alternatives longest first), not one per value: 500 hosts would
    # overflow re's cache and compile thousands of patterns.
    placeholder = {}
    for v, f in pairs:
        placeholder.setdefault(v, _placeholder(f))
    pattern = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(re.escape(v) for v, _ in pairs) + r")(?![A-Za-z0-9_])")
    return [pattern.sub(lambda m: placeholder[m.group(1)], line) for line in lines]


def _denormalize(lines, values, fields):
    pairs = sorted(((values[f], f) for f in fields if values[f]), key=lambda p: len(p[0]))
    out = []
    for line in lines:
        for value, field in pairs:
            line = line.replace(_placeholder(field), value)
        out.append(line)
    return out


def groups(entries):
    """Group hosts whose plans are the same once each host's own values are taken out.

    entries: [{"host", "values", "steps"}] in order. Returns (groups, fields): groups are lists
    of host names, the first of each shown in full; fields are the host settings that differ
    between the hosts. A host joins a group only if putting its values into the first member's
    plan gives exactly its own plan, so "same as" is checked, never assumed."""
    fields = [f for f in HOST_FIELDS if len({e["values"][f] for e in entries}) > 1]
    lines = {e["host"]: _lines(e["steps"]) for e in entries}
    if any("\x00" in line for ls in lines.values() for line in ls):
        fields = []  # cannot happen with real commands; never group on ambiguous text
    out, keys = [], []
    for e in entries:
        key = _normalize(lines[e["host"]], e["values"], fields)
        for i, k in enumerate(keys):
            if k == key and _denormalize(k, e["values"], fields) == lines[e["host"]]:
                out[i].append(e["host"])
                break
        else:
            keys.append(key)
            out.append([e["host"]])
    return out, fields


def fleet_doc(hosts, pipe, serial=None, max_fail=None, parallel=None, rollback_all=False):
    """The rollout as the deploy will run it (deploy/fleet.py): batches, canary, threshold."""
    serial = serial or pipe.serial
    max_fail = pipe.max_fail if max_fail is None else max_fail
    names = [h.name for h in hosts]
    batches = rollout.batches(names, serial)
    par = max(1, min(parallel or pipe.parallel or rollout.DEFAULT_PARALLEL, len(hosts) or 1))
    # A canary: a first batch that goes alone before batches at least as big.
    canary = len(batches) > 1 and len(batches[0]) <= min(len(b) for b in batches[1:])
    return {"hosts": names, "serial": list(serial), "max_fail": max_fail, "parallel": par,
            "rollback_all": bool(rollback_all),
            "batches": [{"number": i, "hosts": b, "max_fail": rollout.threshold(max_fail, len(b)),
                         "canary": canary and i == 1} for i, b in enumerate(batches, 1)]}


def build(*, release, operator, hosts, plans, pipe, inventory, fleet, on_failure, notify, flags,
          digests=True, created=None):
    """The plan document. `inventory`: (path as given, files); `flags`: the flags that shaped the
    plan and that a deploy from it must reuse (source, allow_dirty). digests=False leaves out the
    hashes that read the whole source (the text plan does not show them)."""
    entries = [{"host": h.name, "values": host_values(h), "steps": steps_doc(plans[h.name])} for h in hosts]
    grouped, fields = groups(entries)
    first_of = {name: g[0] for g in grouped for name in g}
    inv_path, inv_files = inventory
    if digests and hosts:
        source = source_digest(pipe, plans[hosts[0].name])
    elif pipe.git is not None:
        source = {"kind": "git", "path": pipe.source, "sha256": None, "files": None, "commit": pipe.git.commit,
                  "dirty": bool(pipe.git.dirty), "git": pipe.git.as_dict()}
    else:
        commit, dirty = _dir_commit(pipe.source)
        source = {"kind": "dir", "path": pipe.source, "sha256": None, "files": None, "commit": commit,
                  "dirty": dirty, "git": None}
    return {
        "format": FORMAT,
        "created": created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": "deploy",
        "release": release,
        "run": operator.run,
        "planned_by": {"user": operator.user, "machine": operator.machine, "pid": operator.pid},
        "tool": {"sha256": tool_digest() if digests else None, "commit": tool_commit()},
        "inputs": {
            "inventory": {"path": str(inv_path), "files": [str(f) for f in inv_files],
                          "sha256": inventory_digest(inv_files) if digests else None},
            "pipeline": {"path": str(pipe.file), "sha256": sha256_file(pipe.file) if digests else None},
            "source": source,
        },
        "flags": flags,
        "fleet": fleet,
        "on_failure": list(on_failure),
        "notify": list(notify),
        "differ_in": fields,
        "hosts": [{"host": e["host"], "values": e["values"], "same_as": None if first_of[e["host"]] == e["host"]
                   else first_of[e["host"]], "steps": e["steps"]} for e in entries],
        "check": None,
    }


# ----------------------------------------------------------------------------- saved plans

def encode(doc):
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def save(path, doc):
    """Write the plan; returns the sha256 of the bytes written (what the deploy report records)."""
    data = encode(doc)
    tmp = Path(str(path) + f".tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return sha256_bytes(data)


def load(path):
    """(document, sha256 of the file). ConfigError (exit 2) for anything that is not a plan."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise ConfigError(f"too big for a saved plan ({p.stat().st_size} bytes)", p)
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError("saved plan not found", p, hint="make one with fab plan --out FILE") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a saved plan", p, hint="pass the file fab plan --out wrote") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the saved plan: {exc.strerror}", p) from None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"not a saved plan (invalid JSON: {exc})", p, hint="pass the file fab plan --out wrote") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise ConfigError(f"not a saved plan of this tool (format {found!r}, expected {FORMAT!r})", p,
                          hint="make it again with fab plan --out FILE")
    for key in ("release", "run", "planned_by", "tool", "inputs", "fleet", "hosts", "flags"):
        if key not in doc:
            raise ConfigError(f"saved plan is incomplete: no {key!r}", p, hint="make it again with fab plan --out FILE")
    if not doc["run"] or not doc["hosts"]:
        raise ConfigError("saved plan has no run id or no hosts", p, hint="make it again with fab plan --out FILE")
    return doc, sha256_bytes(data)


def stale(doc, now):
    """What changed since the plan was made: one line per input. `now` is build()'s document for
    the same inputs read again (digests included)."""
    out = []
    if doc["tool"]["sha256"] != now["tool"]["sha256"]:
        out.append(f"the deploy tool changed (its code in {PACKAGE}: sha256 {_short(doc['tool']['sha256'])} "
                   f"then, {_short(now['tool']['sha256'])} now; commit {_short(doc['tool']['commit'])} then, "
                   f"{_short(now['tool']['commit'])} now)")
    a, b = doc["inputs"], now["inputs"]
    if a["inventory"]["sha256"] != b["inventory"]["sha256"]:
        files = "" if a["inventory"]["files"] == b["inventory"]["files"] else (
            f"; files then: {', '.join(a['inventory']['files'])}; now: {', '.join(b['inventory']['files'])}")
        out.append(f"inventory {a['inventory']['path']} changed (sha256 {_short(a['inventory']['sha256'])} then, "
                   f"{_short(b['inventory']['sha256'])} now{files})")
    if a["pipeline"]["sha256"] != b["pipeline"]["sha256"]:
        out.append(f"playbook {a['pipeline']['path']} changed (sha256 {_short(a['pipeline']['sha256'])} then, "
                   f"{_short(b['pipeline']['sha256'])} now)")
    sa, sb = a["source"], b["source"]
    if sa["kind"] == "git" and sb["kind"] == "git":
        if sa["commit"] != sb["commit"] or sa["git"]["tree"] != sb["git"]["tree"]:
            out.append(f"source: git {sb['git']['ref']} is now commit {_short(sb['commit'])} "
                       f"(the plan has {_short(sa['commit'])})")
    elif sa["kind"] != sb["kind"]:
        out.append(f"source changed from a {sa['kind']} source to a {sb['kind']} source")
    elif sa["sha256"] != sb["sha256"] or sa["path"] != sb["path"]:
        where = sa["path"] if sa["path"] == sb["path"] else f"{sa['path']} (now {sb['path']})"
        out.append(f"source {where} changed: the files sync would send differ ({sa['files']} files then, "
                   f"{sb['files']} now; sha256 {_short(sa['sha256'])} then, {_short(sb['sha256'])} now)")
    return out


def differences(doc, now, limit=5):
    """Saved commands vs the commands rebuilt now (both masked), per host: lines saying where."""
    out = []
    saved = {h["host"]: h["steps"] for h in doc["hosts"]}
    rebuilt = {h["host"]: h["steps"] for h in now["hosts"]}
    for host, steps in saved.items():
        mine = rebuilt.get(host)
        if mine is None:
            out.append(f"{host}: not in the rebuilt plan")
            continue
        a = [(s["name"], i, c["local"], c["command"]) for s in steps for i, c in enumerate(s["commands"], 1)]
        b = [(s["name"], i, c["local"], c["command"]) for s in mine for i, c in enumerate(s["commands"], 1)]
        if [(s["name"], s["kind"]) for s in steps] != [(s["name"], s["kind"]) for s in mine]:
            out.append(f"{host}: the steps differ: saved {', '.join(s['name'] for s in steps)}; "
                       f"now {', '.join(s['name'] for s in mine)}")
        elif a != b:
            for x, y in zip(a, b):
                if x != y:
                    saved, built = _around_difference(x[3], y[3])
                    out.append(f"{host}: step {x[0]}, command {x[1]} differs:\n    saved: {saved}\n    now:   {built}")
                    break
            else:
                out.append(f"{host}: {len(a)} commands saved, {len(b)} now")
        if len(out) >= limit:
            out.append("... (only the first differences are shown)")
            break
    return out


def _around_difference(a, b, before=60, after=140):
    """Both texts from a little before their first differing character."""
    k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, k - before)

    def cut(text):
        piece = text[start:k + after]
        return ("..." if start else "") + piece + ("..." if len(text) > k + after else "")
    return cut(a), cut(b)


def _short(value):
    return value[:12] if value else "none"


def age(doc):
    """Seconds since the plan was made (None if its time is unreadable)."""
    try:
        made = datetime.strptime(doc["created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except (KeyError, TypeError, ValueError):
        return None
    return max(0, int(time.time() - made.timestamp()))
