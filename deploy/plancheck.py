"""`fab plan --check`: one read-only connection per host, to say whether the plan can run there
and what it would change (docs/commands.md#fab-plan---check).

Per host, in one SSH session of read-only programs (deploy/remote/state.sh, check.sh, sent
inline, nothing installed): the live release and when it went live, the lock, the deploy path's
permissions, php and rsync, `sudo -n -l` for each command the plan runs through sudo, and one
FastCGI request to the pool's socket. Then the plan's own sync command as an rsync dry run
(`--dry-run --itemize-changes`, through the tool's tunnel) against the live release: which files
a deploy would add, change and delete. Nothing is written on the host.

Each host ends in one verdict: "changes" (the plan can run and would deploy), "no changes" (the
release is already live there, with these files), or "cannot deploy" (with the reasons). The
fleet's verdict, and `fab plan --check`'s exit code, follow from them (EXIT_CODES).
"""

import json
import re
import shlex
from dataclasses import replace
from datetime import datetime, timezone

from . import fleet as fleet_mod
from . import locks, planfile, remote
from .commands import PlannedStep, Program, Raw, Secret
from .context import StepContext
from .operations.state import parse_state
from .session import HostSession
from .steps import sync as sync_step
from .transport import TransportError

CHANGES, NO_CHANGES, CANNOT = "changes", "no changes", "cannot deploy"
EXIT_CODES = {CHANGES: 0, CANNOT: 1, NO_CHANGES: 4}

# rsync --itemize-changes: YXcstpoguax NAME, or "*deleting NAME".
_ITEM = re.compile(r"^(\*deleting|[<>ch.][fdLDS][cstpoguax.+? ]{9}) +(.+)$")
# fpmctl's error kinds that still mean a pool worker answered (the script is missing on purpose).
_ANSWERED = ("script_unreadable", "http_status")


def run(hosts, pipe, plans, release, parallel):
    """Check every host (at most `parallel` at once); returns the check document."""
    fleet = fleet_mod.Fleet(hosts, pipe, None, lambda e: None, parallel=parallel)
    return summarize(fleet.map(lambda h: check_host(h, pipe, plans[h.name], release), hosts), release)


def summarize(results, release):
    problems = []
    verdicts = {r["verdict"] for r in results}
    if CANNOT in verdicts:
        verdict = CANNOT
    elif verdicts == {NO_CHANGES}:
        verdict = NO_CHANGES
    elif NO_CHANGES in verdicts:
        # A deploy fails on the hosts where the id is already live: the fleet cannot go as planned.
        live = [r["host"] for r in results if r["verdict"] == NO_CHANGES]
        problems.append(f"release {release} is already live on {', '.join(live)} but not on the other hosts: "
                        "a deploy would fail there (use a new release id)")
        verdict = CANNOT
    else:
        verdict = CHANGES
    return {"verdict": verdict, "exit_code": EXIT_CODES[verdict], "problems": problems, "hosts": results}


def check_host(host, pipe, steps, release):
    out = {"host": host.name, "verdict": CANNOT, "reasons": [], "warnings": [], "connect": None, "user": host.user,
           "live": None, "lock": None, "path": None, "php": None, "rsync": None,
           "sudo": {"needed": not host.is_root, "checked": [], "refused": [], "unchecked": []},
           "pool": None, "files": None}
    ctx = StepContext(host=host, pipeline=pipe, release=release)
    sudo = sudo_commands(steps, host)
    pool = uses_pool(steps, ctx)
    commands = [remote.run(ctx, "state.sh", host.deploy_path, "in-place" if ctx.in_place else "releases",
                           capture="state", desc="read releases, current, bad marks, lock"),
                remote.run(ctx, "check.sh", "env", host.deploy_path, host.php, capture="env",
                           desc="deploy path, php and rsync")]
    for i, words in enumerate(sudo["checks"]):
        commands.append(remote.run(ctx, "check.sh", "sudo", str(i), *words, desc="may sudo run it?"))
    if pool:
        commands.append(remote.run(ctx, "check.sh", "pool", "0", host.php, host.fpm.socket,
                                   ctx.paths.meta + "/no-such-script.php", ctx.paths.fpmctl,
                                   remote.digest("fpmctl.php"),
                                   Program(remote.local_path("fpmctl.php").read_text(), remote.label("fpmctl.php")),
                                   Program(remote.local_path("fastcgi.php").read_text(), remote.label("fastcgi.php")),
                                   desc="one FastCGI request to the pool"))
    try:
        with HostSession(host, lambda e: None) as s:
            res = s.run([PlannedStep("check", "check", commands)])[0]
            out["connect"] = "ok"
            outputs = [c.output for c in res.commands]
            if res.status != "ok" or len(outputs) != len(commands):
                failed = res.failed_command
                out["reasons"].append("the read-only checks did not run: "
                                      + (failed.output.strip()[-300:] if failed else res.status))
                return out
            _read(out, host, pipe, ctx, outputs, sudo, pool, release)
            if out["path"]["ok"] and out["rsync"]:
                dry = dry_run_command(steps, host, ctx, out["live"])
                if dry is not None:
                    r = s.run([PlannedStep("check sync", "check", [dry])])[0]
                    c = r.commands[0] if r.commands else None
                    if r.status == "ok" and c is not None:
                        out["files"] = itemized(c.output, out["live"]["release"] if out["live"] else None)
                    else:
                        code = c.exit_code if c else None
                        out["reasons"].append(f"rsync dry run of the sync step failed (exit {code}): "
                                              + (c.output.strip().splitlines() or ["no output"])[-1][:300])
    except TransportError as exc:
        out["connect"] = str(exc).splitlines()[0]
        out["reasons"].append(f"cannot connect: {exc}")
        return out
    out["verdict"] = _verdict(out, ctx, release)
    return out


def _read(out, host, pipe, ctx, outputs, sudo, pool, release):
    state = parse_state(outputs[0])
    env = _tags(outputs[1])
    live = state["current"]
    if live:
        out["live"] = {"release": live, **_went_live(state, live)}
    if state["lock"]:
        text = _lock_text(state["lock"], pipe.lock_stale_after, host.name)
        out["lock"] = {"held": True, "by": text}
        out["reasons"].append(f"locked: {text}")
    if release in state["bad"]:
        out["warnings"].append(f"release {release} is marked bad here ({state['bad'][release]}); "
                               "deploying it again removes the mark")
    if not live:
        out["warnings"].append("nothing is live yet: first deploy (a failure after activate leaves the new "
                               "release live, marked bad: needs human)")
    writable = env.get("WRITABLE", "no").split(" ", 1)
    meta = env.get("META", "missing")
    ok = writable[0] == "yes" and meta != "no"
    out["path"] = {"exists": env.get("PATH") == "exists", "ok": ok,
                   "detail": (f"{writable[1] if len(writable) > 1 else host.deploy_path} is not writable by {host.user}"
                              if writable[0] != "yes" else
                              f"{ctx.paths.meta} is not writable by {host.user}" if meta == "no" else "writable")}
    if not ok:
        out["reasons"].append(f"deploy path: {out['path']['detail']}")
    php = env.get("PHP", "missing")
    out["php"] = None if php == "missing" else php
    if php == "missing":
        out["reasons"].append(f"php ({host.php}) does not run on the host")
    rsync = env.get("RSYNC", "missing")
    out["rsync"] = None if rsync == "missing" else rsync
    if rsync == "missing":
        out["reasons"].append("rsync is not installed on the host (sync needs it at both ends)")
    index = 2
    for i, (shown, words) in enumerate(zip(sudo["shown"], sudo["checks"])):
        line = _tags(outputs[index + i]).get("SUDO", f"{i} refused no answer")
        _, verdict, *why = line.split(" ", 2)
        out["sudo"]["checked"].append(shown)
        if verdict != "ok":
            out["sudo"]["refused"].append({"command": shown, "why": (why or [""])[0]})
            out["reasons"].append(f"sudo -n refuses {shown}: {(why or [''])[0]}")
    out["sudo"]["unchecked"] = sudo["unchecked"]
    index += len(sudo["checks"])
    if pool:
        out["pool"] = _pool(_tags(outputs[index]).get("POOL", ""), host)
        if not out["pool"]["ok"]:
            out["reasons"].append(f"pool {host.fpm.socket}: {out['pool']['detail']}")


def _verdict(out, ctx, release):
    if out["reasons"]:
        return CANNOT
    live = out["live"]["release"] if out["live"] else None
    if live == release and (not ctx.in_place or (out["files"] and out["files"]["total"] == 0)):
        return NO_CHANGES
    return CHANGES


def _tags(text):
    tags = {}
    for line in text.splitlines():
        tag, _, rest = line.partition(" ")
        if tag.isupper():
            tags[tag] = rest
    return tags


def _went_live(state, live):
    """When `live` went live and who made it so: its last history line, else its RELEASE file time."""
    for record in reversed(state["history"]):
        if record.get("release") == live and record.get("state") in ("deployed", "rolled back"):
            return {"since": record.get("time"), "by": record.get("by"), "action": record.get("action")}
    entry = next((r for r in state["releases"] if r["id"] == live), None)
    since = (datetime.fromtimestamp(entry["mtime"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
             if entry else None)
    return {"since": since, "by": None, "action": None}


def _lock_text(raw, stale_after, host):
    """state.sh's `LOCK <info> <time> AGE <n>s` as `fab releases` and a locked deploy say it."""
    m = re.match(r"(\{.*\})\s*(\S*)\s*AGE (-?\d+)s", raw.strip())
    if not m:
        return raw.strip()
    return locks.describe(f"{m.group(1)}\n{m.group(2)}\nAGE {m.group(3)}", stale_after, host)


def _pool(line, host):
    _, _, rest = line.partition(" ")
    via, _, text = rest.partition(" ")
    try:
        answer = json.loads(text)
    except ValueError:
        return {"ok": False, "via": via or None, "detail": "no answer from fpmctl.php (does php run on the host?)"}
    kind = answer.get("error_kind")
    if answer.get("ok") or kind in _ANSWERED:
        status = answer.get("status")
        return {"ok": True, "via": via, "detail": f"a worker answered (HTTP {status} for a missing script)"
                if status else "a worker answered"}
    return {"ok": False, "via": via, "detail": answer.get("error") or kind or "no answer"}


def uses_pool(steps, ctx):
    """Does the plan talk to the pool (fpmctl.php: opcache_reset, fpm_reload's wait, verify)?"""
    return any(ctx.paths.fpmctl in c.args for s in steps for c in s.commands)


def sudo_commands(steps, host):
    """What to ask `sudo -n -l` about: each command the plan runs through sudo, by its words.

    A compound command is `sh -c SCRIPT` for sudo; an inventory command written with `sudo`
    (fpm.reload, workers.restart), alone or inside a step's shell text, is asked about by its
    words, or by its program only when its arguments need a shell. Words that hold a secret stay
    secret (masked in the report)."""
    checks, shown, unchecked = [], [], []
    if host.is_root:
        return {"checks": checks, "shown": shown, "unchecked": unchecked}
    seen = set()
    for s in steps:
        for c in s.commands:
            asks = []   # (words, masked words) of each sudo this command runs
            if c.sudo:
                asks.append((shlex.split(c.render_command(reveal=True))[2:], shlex.split(c.render_command())[2:]))   # after "sudo -n"
            # Inventory commands (fpm.reload, workers.restart) run as written, alone or inside a
            # step's own shell text (fpm_reload when: needed, the workers' `cd ... && ...`).
            for raw in (a for a in c.args if isinstance(a, Raw)):
                words = _inventory_sudo(raw.text.strip(), unchecked)
                if words:
                    asks.append((words, words))
            for words, masked in asks:
                key = tuple(words)
                if key in seen:
                    continue
                seen.add(key)
                secret = set(c.secrets)
                checks.append([Secret(w) if any(v and v in w for v in secret) else w for w in words])
                shown.append(" ".join(shlex.quote(w) for w in masked) if not secret else " ".join(masked))
    return {"checks": checks, "shown": shown, "unchecked": unchecked}


def _inventory_sudo(text, unchecked):
    """The words to ask sudo about for an inventory command written with `sudo`: its program and
    arguments, or its program alone when its arguments need a shell; None when it uses no sudo."""
    if not text.startswith("sudo "):
        return None
    try:
        parts = shlex.split(text)
    except ValueError:
        unchecked.append(text)
        return None
    parts = parts[1:]
    while parts and parts[0].startswith("-"):
        if parts[0] in ("-u", "-g", "-C", "-D", "-h", "-p", "-R", "-T", "-U"):
            parts = parts[2:]
        else:
            parts = parts[1:]
    if not parts:
        return None
    syntax = any(ch in text for ch in "$`|;&<>")
    return parts[:1] if syntax else parts


def dry_run_command(steps, host, ctx, live):
    """The plan's sync command as an rsync dry run against the live release: same flags and
    excludes, `--dry-run --itemize-changes` added, the destination the live tree (in place: the
    deploy path, already the destination) or, with nothing live, the new release's directory."""
    cmd = planfile.sync_command(steps)
    if cmd is None:
        return None
    args = list(cmd.args)
    if not ctx.in_place and live:
        args[-1] = sync_step.remote_spec(host, ctx.paths.current)
    # The live release also holds what later steps put there on the host (shared storage/ and
    # .env as links, composer's vendor/): not code the source changes, so left out of the
    # comparison (excluded paths are also safe from --delete). In place they are excluded already.
    extra = [] if ctx.in_place else built_on_host(ctx.pipeline)
    return replace(cmd, template="rsync --dry-run --itemize-changes" + " --exclude={}" * len(extra) + " "
                   + cmd.template[len("rsync "):], args=tuple(extra + args), capture="dry_run",
                   desc="rsync dry run of the sync step against the live release")


def built_on_host(pipe):
    """Paths of a release that the steps after sync make on the host, as rsync excludes."""
    out = []
    shared = pipe.first("shared")
    if shared is not None:
        out += ["/" + p.strip("/") for p in shared.settings["dirs"] + shared.settings["files"]]
    if pipe.first("composer") is not None:
        out += sync_step.COMPOSER_PROTECT
    return out


def itemized(output, against):
    """rsync's itemized lines -> counts and the list: + added, ~ changed, - deleted (files and
    links; directories and attribute-only changes are not counted)."""
    changes = []
    attrs = 0
    for line in output.splitlines():
        m = _ITEM.match(line.rstrip("\n"))
        if not m:
            continue
        flags, name = m.group(1), m.group(2)
        if " -> " in name:
            name = name.split(" -> ", 1)[0]
        if flags == "*deleting":
            if not name.endswith("/"):
                changes.append({"change": "-", "path": name})
            continue
        if flags[1] == "d":
            continue
        if flags[0] == ".":
            attrs += 1
        elif flags[2:] == "+++++++++":
            changes.append({"change": "+", "path": name})
        else:
            changes.append({"change": "~", "path": name})
    changes.sort(key=lambda c: c["path"])
    count = {k: sum(1 for c in changes if c["change"] == k) for k in "+~-"}
    return {"against": against, "added": count["+"], "modified": count["~"], "deleted": count["-"],
            "total": len(changes), "attributes_only": attrs, "list": changes}
