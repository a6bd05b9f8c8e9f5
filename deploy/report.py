"""Output: events -> a Rich live view on a terminal, plain timestamped lines otherwise; summary
tables, plans, JSON reports and JUnit files. Rich is used only in this module.
"""

import json
import shlex
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from rich.console import Console

from .locks import LOCKED_EXIT
from rich.live import Live
from rich.table import Table
from rich.text import Text

STATE_STYLE = {"deployed": "green", "rolled back": "yellow", "failed before switch": "red", "unreachable": "red",
               "locked": "red", "needs human": "bold red", "untouched": "dim", "planned": "cyan", "failed": "red",
               "running": "blue", "healed": "green", "healthy": "green", "not healed": "red"}


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Reporter:
    """Receives executor events from several worker threads and shows them."""

    def __init__(self, live=None, stream=None):
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self.live_mode = self.console.is_terminal if live is None else live
        self.lock = threading.Lock()
        self.rows = {}      # host -> {"step", "state", "t0"}
        self._live = None

    # -- lifecycle
    def start(self, hosts):
        for h in hosts:
            self.rows[h] = {"step": "", "state": "waiting", "t0": None, "end": None}
        if self.live_mode:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)
            self._live.start()

    def stop(self):
        if self._live:
            self._live.update(self._table())
            self._live.stop()
            self._live = None

    # -- events
    def __call__(self, event):
        with self.lock:
            self._handle(event)
            if self._live:
                self._live.update(self._table())

    def _handle(self, e):
        kind, host = e["type"], e.get("host")
        row = self.rows.setdefault(host, {"step": "", "state": "waiting", "t0": None, "end": None}) if host else None
        if kind == "host_start":
            row.update(state="running", t0=time.monotonic())
            self._line(host, f"start (release {e.get('release') or '-'})")
        elif kind == "step_start":
            row["step"] = e["step"]
        elif kind == "step":
            r = e["result"]
            self._line(host, f"step {r.name}: {r.status} ({r.duration:.2f}s)")
            if r.status == "failed" and r.failed_command and r.failed_command.exit_code != LOCKED_EXIT:
                c = r.failed_command
                code = "did not finish" if c.exit_code is None else f"exit {c.exit_code}"
                self._line(host, f"  command failed ({code}): {c.command[:300]}")
                for out_line in c.output.strip().splitlines()[-8:]:
                    self._line(host, f"  | {out_line}")
        elif kind == "host_end":
            r = e["result"]
            row.update(state=r.state, end=time.monotonic(), step="")
            self._line(host, f"{r.state}" + (f": {r.message}" if r.message else ""))
        elif kind == "batch":
            self._line(None, f"batch {e['number']}: {', '.join(e['hosts'])}")
        elif kind == "message":
            self._line(host, e["text"])
        elif kind == "action":
            self._line(host, f"action: {e['action']} — why: {e['why']}")

    def _line(self, host, text):
        prefix = f"{_now()} {host or '-'}"
        if self._live:
            self._live.console.print(Text(f"{prefix} {text}"))
        else:
            print(f"{prefix} {text}", file=self.stream, flush=True)

    def _table(self):
        table = Table(title="deploy", expand=False)
        for col in ("host", "step", "elapsed", "state"):
            table.add_column(col)
        now = time.monotonic()
        for host, row in self.rows.items():
            if host is None:
                continue
            t0 = row["t0"]
            elapsed = "" if t0 is None else f"{(row['end'] or now) - t0:.1f}s"
            table.add_row(host, row["step"], elapsed, Text(row["state"], style=STATE_STYLE.get(row["state"], "")))
        return table

    # -- final output
    def message(self, text):
        print(text, file=self.stream, flush=True)

    def error(self, text):
        Console(file=sys.stderr, highlight=False, soft_wrap=True).print(Text(f"error: {text}", style="bold red"))

    def summary(self, results, title="summary"):
        table = Table(title=title)
        for col in ("host", "state", "release", "previous", "time", "activation→verified", "detail"):
            table.add_column(col, overflow="fold")
        for r in results:
            a2v = "" if r.activated_to_verified is None else f"{r.activated_to_verified:.2f}s"
            detail = (r.message or "").splitlines()[0][:120] if r.message else ""
            table.add_row(r.host, Text(r.state, style=STATE_STYLE.get(r.state, "")), r.release or "-",
                          r.previous or "-", f"{r.duration:.2f}s", a2v, detail)
        self.console.print(table)
        self.step_times(results)

    def step_times(self, results):
        """A row per step, a column per host (or min/median/max for a fleet): where time went."""
        names = []
        for r in results:
            for s in r.steps:
                if s.name not in names and s.status != "skipped":
                    names.append(s.name)
        if not names:
            return
        times = {r.host: {} for r in results}
        for r in results:
            for s in r.steps:
                if s.status != "skipped":
                    times[r.host][s.name] = times[r.host].get(s.name, 0.0) + s.duration
        table = Table(title="step times (s)")
        table.add_column("step")
        fleet = len(results) > 6
        columns = ["min", "median", "max"] if fleet else [r.host for r in results]
        for col in columns:
            table.add_column(col, justify="right")
        for name in names:
            if fleet:
                values = sorted(t[name] for t in times.values() if name in t)
                row = [values[0], values[len(values) // 2], values[-1]] if values else [None] * 3
            else:
                row = [times[r.host].get(name) for r in results]
            table.add_row(name, *["" if v is None else f"{v:.2f}" for v in row])
        self.console.print(table)

    def plan(self, host, planned_steps, extra=None):
        print(f"# host {host.name} ({host.user}@{host.address}:{host.port}, {host.deploy_path})", file=self.stream)
        for s in planned_steps:
            where = f"  ({s.where})" if s.where else ""
            print(f"## {s.name}{where}", file=self.stream)
            for c in s.commands:
                prefix = "local$ " if c.local else "$ "
                print(f"   {prefix}{c.render()}", file=self.stream)
            for note in s.notes:
                print(f"   # {note}", file=self.stream)
        if extra:
            print(extra, file=self.stream)
        print(file=self.stream, flush=True)

    # -- deploy plans (deploy/planfile.py documents)
    def plan_document(self, doc, verbose=False):
        """A deploy plan for people: a header, a step x host summary, then the exact commands
        (of the first host of each group of hosts that differ only in their own values; of
        every host with `verbose`)."""
        out = self.stream
        for line in plan_header(doc):
            print(line, file=out)
        print(file=out)
        self.console.print(plan_steps_table(doc))
        print(file=out)
        if doc["notify"]:
            for text in doc["notify"]:
                print(f"## notify {text}", file=out)
            print(file=out)
        hosts = {h["host"]: h for h in doc["hosts"]}
        members = {}
        for h in doc["hosts"]:
            if h["same_as"]:
                members.setdefault(h["same_as"], []).append(h["host"])
        for h in doc["hosts"]:
            if h["same_as"] and not verbose:
                continue
            _plan_host(out, h, verbose)
            if members.get(h["host"]) and not verbose:
                names = members[h["host"]]
                fields = [f for f in doc["differ_in"] if f != "host"]
                print(f"# host {_names(names)}: the same commands as {h['host']}, with their own "
                      + (", ".join(fields) or "names") + ":", file=out)
                for line in plan_values(doc, [h["host"]] + names, hosts):
                    print(line, file=out)
            print(file=out, flush=True)

    def plan_head(self, doc):
        """Only the plan's header: what a deploy from a saved plan says before it starts."""
        for line in plan_header(doc):
            print(line, file=self.stream, flush=True)

    def plan_check(self, check, files=False):
        """`fab plan --check`: per host what is live, what would change, whether it can deploy."""
        table = Table(title="check (read-only: nothing was written on the hosts)")
        for col in ("host", "live release", "files vs live", "lock", "sudo", "pool", "verdict"):
            table.add_column(col, overflow="fold")
        for h in check["hosts"]:
            table.add_row(h["host"], _check_live(h), _check_files(h), _check_lock(h), _check_sudo(h),
                          _check_pool(h), Text(h["verdict"], style=CHECK_STYLE[h["verdict"]]))
        self.console.print(table)
        for h in check["hosts"]:
            for reason in h["reasons"]:
                print(f"{h['host']}: cannot deploy: {reason}", file=self.stream)
            for warning in h["warnings"]:
                print(f"{h['host']}: note: {warning}", file=self.stream)
            for text in h["sudo"]["unchecked"]:
                print(f"{h['host']}: note: not checked (its arguments need a shell): {text}", file=self.stream)
        for problem in check["problems"]:
            print(f"fleet: cannot deploy: {problem}", file=self.stream)
        if files:
            same = {}   # hosts with the same changes against the same release: listed once
            for h in check["hosts"]:
                f = h["files"]
                if f:
                    key = json.dumps([f["against"], f["list"]])
                    same.setdefault(key, (f, []))[1].append(h["host"])
            for f, names in same.values():
                print(f"# files on {_names(names)} vs {f['against'] or 'nothing live'}: {_file_counts(f)}",
                      file=self.stream)
                for item in f["list"]:
                    print(f"   {item['change']} {item['path']}", file=self.stream)
        verdict = check["verdict"]
        what = {"changes": "every host can be deployed", "no changes": "the release is already live on every host",
                "cannot deploy": "see the reasons above"}[verdict]
        print(f"check: {verdict}: {what} (exit {check['exit_code']})", file=self.stream, flush=True)

    def releases(self, state):
        if "error" in state:
            print(f"# host {state['host']}: {state['error']}", file=self.stream)
            return
        table = Table(title=f"releases on {state['host']}")
        for col in ("release", "built", "state"):
            table.add_column(col)
        for r in state["releases"]:
            marks = []
            if r["id"] == state["current"]:
                marks.append("LIVE")
            if r["id"] in state["bad"]:
                marks.append("bad: " + state["bad"][r["id"]])
            if not r["complete"]:
                marks.append("incomplete")
            built = datetime.fromtimestamp(r["mtime"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(r["id"], built, ", ".join(marks))
        self.console.print(table)
        if state.get("lock"):
            self.console.print(f"lock held: {state['lock']}")
        if not state["releases"]:
            self.console.print("no releases")


CHECK_STYLE = {"changes": "cyan", "no changes": "green", "cannot deploy": "bold red"}


def _names(names, limit=8):
    names = list(names)
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:max(1, limit - 2)]) + f" ... {names[-1]} ({len(names)} hosts)"


def plan_header(doc):
    """The lines above a plan: what, from what, in which order, and what happens on failure."""
    fleet, inputs = doc["fleet"], doc["inputs"]
    src = inputs["source"]
    lines = [f"deploy plan: release {doc['release']} to {len(fleet['hosts'])} host(s): {_names(fleet['hosts'])}"]

    def row(label, text):
        lines.append(f"  {label:<11}{text}")

    if doc["run"]:
        by = doc["planned_by"]
        row("run", f"{doc['run']} (the lock token), plan made {doc['created']} by {by['user']}@{by['machine']}")
    else:
        row("run", "not saved (the lock token is this process; fab plan --out FILE saves a plan to deploy)")
    if src["kind"] == "git":
        g = src["git"]
        where = f", path {g['path']}" if g["path"] else ""
        dirty = f"; {len(g['dirty'])} uncommitted change(s) NOT shipped" if g["dirty"] else ""
        row("source", f"git {g['ref']} = commit {g['commit']} (repo {g['repo']}{where}{dirty})")
        row("", f"exported to {src['path']}")
    else:
        commit = ""
        if src["commit"]:
            commit = f"  (git commit {src['commit']}" + (", with uncommitted changes)" if src["dirty"] else ")")
        row("source", f"{src['path']}{commit}")
    if src.get("sha256"):
        files = f"{src['files']} files, " if src.get("files") is not None else ""
        row("", f"{files}sha256 {src['sha256'][:16]}")
    row("playbook", inputs["pipeline"]["path"] + _hash(inputs["pipeline"]["sha256"]))
    row("inventory", ", ".join(inputs["inventory"]["files"]) + _hash(inputs["inventory"]["sha256"]))
    batches = fleet["batches"]
    for b in batches:
        label = "batches" if b["number"] == 1 else ""
        canary = " (canary)" if b["canary"] else ""
        row(label, f"{b['number']}{canary}: {_names(b['hosts'])}  [max_fail {b['max_fail']}]")
    serial = ", ".join(str(x) for x in fleet["serial"])
    row("", f"serial {serial}; at most {fleet['parallel']} host(s) at a time")
    scope = "every finished batch's deployed hosts roll back" if fleet["rollback_all"] else \
        "that batch's deployed hosts roll back"
    row("max_fail", f"{fleet['max_fail']} per batch: a batch with more failed hosts stops the rollout (no further "
                    f"batch starts) and {scope}")
    for text in doc["on_failure"]:
        row("on failure", text)
    if doc["notify"]:
        row("notify", ", ".join(text.split(":", 1)[0] for text in doc["notify"]) + " (the ## notify lines below)")
    return lines


def _hash(value):
    return f"  (sha256 {value[:16]})" if value else ""


def _count(step):
    n = len(step["commands"])
    if not n:
        return "-"
    local = sum(1 for c in step["commands"] if c["local"])
    return f"{n}" + (" local" if local == n else f" ({local} local)" if local else "")


def plan_steps_table(doc):
    """Step x host: what each step does, and how many commands it runs per group of hosts."""
    heads = [h for h in doc["hosts"] if not h["same_as"]]
    members = {h["host"]: [h["host"]] for h in heads}
    for h in doc["hosts"]:
        if h["same_as"]:
            members[h["same_as"]].append(h["host"])
    table = Table(title="steps (commands per host)", title_justify="left")
    table.add_column("step")
    table.add_column("what it does", overflow="fold")
    for h in heads:
        names = members[h["host"]]
        table.add_column(_names(names, limit=3), justify="right")
    rows = {}
    for h in heads:
        for s in h["steps"]:
            rows.setdefault(s["name"], {"summary": s["summary"], "counts": {}})["counts"][h["host"]] = _count(s)
    for name, r in rows.items():
        table.add_row(name, r["summary"], *[r["counts"].get(h["host"], "") for h in heads])
    return table


def plan_values(doc, names, hosts):
    """One line per host of a group: its own value of each setting that differs between hosts."""
    width = max(len(n) for n in names)
    return [f"   {n:<{width}}  " + "  ".join(f"{f}={shlex.quote(hosts[n]['values'][f])}" for f in doc["differ_in"]
                                            if f != "host") for n in names]


def _plan_host(out, h, verbose):
    v = h["values"]
    print(f"# host {h['host']} ({v['user']}@{v['address']}:{v['port']}, {v['deploy_path']})", file=out)
    for s in h["steps"]:
        where = f"  ({s['where']})" if s["where"] else ""
        print(f"## {s['name']}{where}", file=out)
        for c in s["commands"]:
            if verbose and c["desc"]:
                print(f"   # {c['desc']}", file=out)
            print(f"   {'local$ ' if c['local'] else '$ '}{c['command']}", file=out)
        for note in s["notes"]:
            print(f"   # {note}", file=out)


def _check_live(h):
    live = h["live"]
    if h["connect"] != "ok":
        return Text("unreachable", style="red")
    if not live:
        return "nothing live"
    since = f", since {live['since']}" if live.get("since") else ""
    return f"{live['release']}{since}"


def _file_counts(f):
    return f"{f['total']} to change: +{f['added']} ~{f['modified']} -{f['deleted']}"


def _check_files(h):
    f = h["files"]
    if not f:
        return ""
    return _file_counts(f) if f["against"] else f"first deploy: {f['added']} files"


def _check_lock(h):
    if h["connect"] != "ok":
        return ""
    return Text("LOCKED", style="red") if h["lock"] else "free"


def _check_sudo(h):
    sudo = h["sudo"]
    if h["connect"] != "ok":
        return ""
    if not sudo["needed"]:
        return "root"
    if sudo["refused"]:
        return Text(f"refused ({len(sudo['refused'])})", style="red")
    return f"ok ({len(sudo['checked'])})" if sudo["checked"] else "not used"


def _check_pool(h):
    pool = h["pool"]
    if pool is None:
        return ""
    return "ok" if pool["ok"] else Text("FAILED", style="red")


def write_json(path, payload):
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2, default=str)


def write_junit(path, results, name="deploy"):
    """One testsuite, a testcase per host and step; failed steps carry the failing command."""
    suite = ET.Element("testsuite", name=name, tests="0", failures="0", time="0")
    tests = failures = 0
    total = 0.0
    for r in results:
        if not r.steps:
            tests += 1
            case = ET.SubElement(suite, "testcase", classname=r.host, name="connect", time="0")
            if r.state not in ("deployed", "planned", "untouched"):
                failures += 1
                ET.SubElement(case, "failure", message=r.state).text = r.message
            continue
        for s in r.steps:
            tests += 1
            total += s.duration
            case = ET.SubElement(suite, "testcase", classname=r.host, name=s.name, time=f"{s.duration:.3f}")
            if s.status == "failed":
                failures += 1
                c = s.failed_command
                ET.SubElement(case, "failure", message=f"{s.name} failed").text = (
                    f"{c.command}\nexit: {c.exit_code}\n{c.output}" if c else s.name)
            elif s.status in ("skipped", "interrupted"):
                ET.SubElement(case, "skipped", message=s.status)
        state_case = ET.SubElement(suite, "testcase", classname=r.host, name="final state", time="0")
        tests += 1
        if r.state not in ("deployed", "planned", "untouched"):
            failures += 1
            ET.SubElement(state_case, "failure", message=r.state).text = r.message
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("time", f"{total:.3f}")
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
