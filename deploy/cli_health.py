"""`fab health` and `fab heal`: parse arguments, run the checks / the healing per host, print
plain text (or JSON), return an exit code.

Exit codes (docs/remediation.md): 0 no failed check (health) / every host serves its live
release and nothing fixable is left (heal); 1 a check failed, a host was unreachable, locked or
not healed; 2 bad input (unknown host, bad YAML, bad flag): nothing was run.

Plain text on purpose: Rich lives only in deploy/report.py; the table here is fixed-width text
that reads the same in a terminal, a CI log and a pager.
"""

from __future__ import annotations

import json
import textwrap
import time

from . import cliargs
from . import fleet as fleet_mod
from . import health as checks
from . import inventory as inventory_mod
from . import plan as planner
from . import remediate
from .cli_plan import DEFAULT_INVENTORY, _path, _pipeline_or_none
from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ConfigError
from .session import HostSession
from .report import Reporter
from .transport import TransportError

WIDTH = 110
STATUS_TEXT = {checks.PASS: "pass", checks.WARN: "WARN", checks.FAIL: "FAIL"}


def _load(host_spec, inventory, pipeline):
    """Hosts, pipeline and layout. The layout (releases or in-place) follows the pipeline's
    strategy when --pipeline is given; without it the default pipeline still names the cache
    commands and writable dirs, but each host's own files decide its layout ("auto")."""
    inv = inventory_mod.load(_path(inventory, DEFAULT_INVENTORY))
    hosts = inv.select(host_spec)
    pipe = _pipeline_or_none(pipeline)
    layout = None if (pipeline and pipe is not None) else checks.AUTO
    return hosts, pipe, layout


def check_host(host, pipeline, emit=None, release=None, layout=None):
    """Connect, gather, evaluate. Returns {"host", "findings", "status", "duration", "error",
    "section_seconds" (host-side time per evidence section), "layout"}."""
    t0 = time.monotonic()
    out = {"host": host.name, "findings": [], "status": checks.FAIL, "duration": 0.0, "error": None}
    try:
        with HostSession(host, emit or (lambda e: None)) as s:
            ev = checks.gather(s.runner, host, pipeline, release, layout)
            out["findings"] = checks.evaluate(ev, host, pipeline, release, layout)
            out["layout"] = ev["layout"].get("layout")
            out["status"] = checks.worst(out["findings"])
            out["section_seconds"] = ev.get("section_seconds", {})
    except TransportError as exc:
        out["error"] = str(exc)
    out["duration"] = time.monotonic() - t0
    return out


# ---------------------------------------------------------------------------- text

def format_findings(findings, width=WIDTH):
    """Fixed-width table: check, status, evidence (and the fix when not passing)."""
    col1, col2 = max([16] + [len(f.title) for f in findings]), 6
    text_w = max(40, width - col1 - col2 - 4)
    lines = [f"  {'check':<{col1}} {'status':<{col2}} evidence / fix"]
    for f in findings:
        ev = textwrap.wrap(f.evidence, text_w) or [""]
        lines.append(f"  {f.title:<{col1}} {STATUS_TEXT.get(f.status, f.status):<{col2}} {ev[0]}")
        pad = " " * (col1 + col2 + 4)
        lines += [pad + l for l in ev[1:]]
        if f.status != checks.PASS:
            fix = f.fix + (f"  [auto: {f.remedy}]" if f.remedy else "  [manual]")
            for i, l in enumerate(textwrap.wrap(fix, text_w - 5)):
                lines.append(pad + ("fix: " if i == 0 else "     ") + l)
    return "\n".join(lines)


def _counts(findings):
    c = {s: sum(1 for f in findings if f.status == s) for s in (checks.FAIL, checks.WARN, checks.PASS)}
    return f"{c[checks.FAIL]} fail, {c[checks.WARN]} warn, {c[checks.PASS]} pass"


def format_host(result):
    if result.get("error"):
        return f"# {result['host']}: unreachable: {result['error']}"
    head = (f"# {result['host']}: {STATUS_TEXT[result['status']].upper()} ({_counts(result['findings'])})"
            f" in {result['duration']:.2f}s" + (f", layout {result['layout']}" if result.get("layout") else ""))
    return head + "\n" + format_findings(result["findings"])


def format_heal(r):
    lines = [f"# {r.host}: {r.state}" + (f": {r.message}" if r.message else "")]
    for a in r.actions:
        mark = "ok" if a["ok"] else "FAILED"
        lines.append(f"  action {a['action']} (attempt {a['attempt']}, {a['duration']:.2f}s): {mark}")
        for l in textwrap.wrap("why: " + a["why"], WIDTH - 6):
            lines.append("    " + l)
        if a.get("error"):
            lines.append("    error: " + a["error"])
    if r.findings:
        lines.append(f"  checks after healing ({_counts(r.findings)}):")
        lines.append(format_findings(r.findings))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands

def health(host_spec, inventory=None, pipeline=None, as_json=False, reporter=None, parallel=None):
    """The health checks per host; 0 when no check fails, 1 otherwise, 2 on bad input."""
    reporter = reporter or Reporter()
    try:
        host_spec, inventory, pipeline = cliargs.parse_selection(host_spec, inventory, pipeline)
        hosts, pipe, layout = _load(host_spec, inventory, pipeline)
        inventory_mod.check_controller_files(hosts)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    fleet = fleet_mod.Fleet(hosts, pipe, planner.Operator.here(), lambda e: None,
                            parallel=parallel or fleet_mod.DEFAULT_PARALLEL)
    results = fleet.map(lambda h: check_host(h, pipe, layout=layout), hosts)
    code = EXIT_OK if all(not r["error"] and r["status"] != checks.FAIL for r in results) else EXIT_FAILED
    if as_json:
        reporter.message(json.dumps({"action": "health", "exit_code": code, "hosts": [
            {"host": r["host"], "status": None if r["error"] else r["status"], "error": r["error"],
             "layout": r.get("layout"), "duration": round(r["duration"], 3), "section_seconds": r.get("section_seconds", {}),
             "findings": [f.as_dict() for f in r["findings"]]}
            for r in results]}, indent=2, default=str))
    else:
        for r in results:
            reporter.message(format_host(r))
    return code


def heal(host_spec, inventory=None, pipeline=None, as_json=False, attempts=None, reporter=None, parallel=None):
    """Heal hosts outside a deploy (under the deploy lock); 0 when every host ends settled."""
    reporter = reporter or Reporter()
    try:
        host_spec, inventory, pipeline = cliargs.parse_selection(host_spec, inventory, pipeline)
        attempts = cliargs.parse_count("--attempts", attempts) or 2
        hosts, pipe, layout = _load(host_spec, inventory, pipeline)
        inventory_mod.check_controller_files(hosts)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    operator = planner.Operator.here()

    def emit(e):
        # Actions and messages live; a failed fix command shows its output; the rest is noise here.
        if as_json:
            return
        if e["type"] in ("action", "message") or (e["type"] == "step" and e["result"].status == "failed"):
            reporter(e)

    fleet = fleet_mod.Fleet(hosts, pipe, operator, emit, parallel=parallel or fleet_mod.DEFAULT_PARALLEL)
    results = fleet.map(lambda h: remediate.heal_host(h, pipe, operator, emit, attempts=attempts, layout=layout), hosts)
    code = EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
    if as_json:
        reporter.message(json.dumps({"action": "heal", "exit_code": code, "hosts": [r.as_dict() for r in results]},
                                    indent=2, default=str))
    else:
        for r in results:
            reporter.message(format_heal(r))
    return code

