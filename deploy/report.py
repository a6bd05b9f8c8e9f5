"""Output: events -> a Rich live view on a terminal, plain timestamped lines otherwise; summary
tables, plans, JSON reports and JUnit files. Rich is used only in this module.
"""

import json
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
