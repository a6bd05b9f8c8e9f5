"""The HTML report (`--html FILE`): one self-contained page rendered from the JSON report.

`render(report)` is a pure function of the report dict (docs/commands.md#json-report). The page
loads nothing (inline CSS, no scripts; its Content-Security-Policy forbids both), every value
is HTML-escaped (command output can hold anything), and it collapses with <details>.
"""

import html
from datetime import datetime, timezone

from . import steps

EXIT_MEANING = {
    0: "success",
    1: "failed: every host is on a complete live release",
    2: "bad input: nothing was run",
    3: "needs a human: a host may not serve what was intended",
    130: "interrupted: the fleet may be mixed",
}
STATE_CLASS = {"deployed": "good", "rolled back": "warn", "healed": "good", "untouched": "dim", "planned": "info",
               "failed before switch": "bad", "unreachable": "bad", "locked": "bad", "failed": "bad",
               "needs human": "alarm"}
OK_END = ("deployed", "untouched", "planned")
ROLLBACK_STEPS = ("mark bad", "discard", "record")

CSS = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#d9dee5;--bg:#fff;--soft:#f4f6f9;
--good:#1a7f37;--warn:#9a6700;--bad:#cf222e;--alarm:#82071e;--info:#0969da;--dim:#6e7781}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0;padding:24px 32px;max-width:1600px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:4px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
.meta dt{color:var(--muted)}.meta dd{margin:0;word-break:break-all}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff;white-space:nowrap}
.badge.good{background:var(--good)}.badge.warn{background:var(--warn)}.badge.bad{background:var(--bad)}
.badge.alarm{background:var(--alarm);outline:2px solid var(--bad)}.badge.info{background:var(--info)}
.badge.dim{background:var(--dim)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--soft);font-weight:600}
td.num{text-align:right;white-space:nowrap}
.empty{color:var(--muted);font-style:italic}
.tl{border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.tl-row{display:grid;grid-template-columns:220px 1fr;align-items:center;min-height:24px}
.tl-label{overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding-right:8px}
.tl-track{position:relative;height:20px;background:var(--soft);border-radius:3px}
.tl-axis .tl-track{background:none;height:18px}
.tick{position:absolute;top:0;font-size:11px;color:var(--muted);border-left:1px solid var(--line);padding-left:3px;height:18px}
.batch{margin-top:8px;padding-top:4px;border-top:1px dashed var(--line)}
.batch-head{font-weight:600;margin:2px 0}
.why{font-weight:400;color:var(--bad)}
.band{position:absolute;top:0;bottom:0;background:rgba(9,105,218,.10);border-left:2px solid rgba(9,105,218,.5)}
.bar{position:absolute;top:2px;height:16px;min-width:2px;border-radius:2px;font-size:10.5px;line-height:16px;color:#fff;
overflow:hidden;white-space:nowrap;padding:0 2px;background:#57606a}
.bar.k-build{background:#0969da}.bar.k-activate{background:#8250df}.bar.k-pool{background:#1b7c83}
.bar.k-verify{background:var(--good)}.bar.k-run{background:#6639ba}.bar.k-health{background:#bf8700}
.bar.k-rollback{background:#bc4c00}.bar.k-admin{background:#8c959f}.bar.k-live{background:#1a7f37}
.bar.s-failed{background:var(--bad);outline:1px solid #000}
.bar.s-interrupted{background:repeating-linear-gradient(45deg,#8c959f,#8c959f 4px,#d0d7de 4px,#d0d7de 8px)}
.legend{margin:8px 0 0;color:var(--muted);font-size:12px}
.legend .bar{position:static;display:inline-block;width:14px;vertical-align:middle;margin:0 4px 0 10px}
.note{color:var(--muted);font-size:12px}
details{margin:4px 0}
details.host{border:1px solid var(--line);border-radius:6px;padding:4px 10px}
details.host>summary{font-weight:600;cursor:pointer;padding:4px 0}
details.step{margin-left:14px;border-left:3px solid var(--line);padding-left:8px}
details.step.s-failed{border-left-color:var(--bad)}
details.step>summary{cursor:pointer}
.cmd{margin:6px 0 10px 14px}
.cmd .line{background:var(--soft);padding:4px 6px;border-radius:3px;white-space:pre-wrap;word-break:break-all;margin:0}
.cmd .exit{font-size:12px;color:var(--muted);margin:2px 0}
.cmd .exit.bad{color:var(--bad);font-weight:600}
.cmd pre.out{background:#0d1117;color:#e6edf3;padding:6px 8px;border-radius:3px;max-height:360px;overflow:auto;
white-space:pre-wrap;word-break:break-all;margin:2px 0}
ul.actions{margin:4px 0;padding-left:20px}
ul.actions pre.line{background:var(--soft);padding:2px 6px;margin:2px 0;white-space:pre-wrap;word-break:break-all}
footer{margin-top:32px;color:var(--muted);font-size:12px}
"""


def e(value):
    """HTML-escape anything (None prints as a dash)."""
    return html.escape("-" if value is None else str(value), quote=True)


def _utc(epoch, ms=False):
    if epoch is None:
        return "-"
    text = datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f" if ms else "%Y-%m-%d %H:%M:%S")
    return (text[:-3] if ms else text) + "Z"


def _secs(value):
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s"
    minutes, seconds = divmod(value, 60)
    return f"{int(minutes)}m{seconds:04.1f}s"


def _badge(state):
    return f'<span class="badge {STATE_CLASS.get(state, "dim")}">{e(state)}</span>'


def _link(url):
    url = str(url or "")
    if url.startswith(("https://", "http://")):
        return f'<a href="{e(url)}">{e(url)}</a>'
    return e(url or None)


def _kind_class(step):
    name, kind = step.get("name", ""), step.get("kind", "")
    if name.endswith("(rollback)") or name in ROLLBACK_STEPS:
        return "k-rollback"
    spec = steps.spec(kind)
    if kind in ("health", "heal"):
        return "k-health"
    if spec is None:
        return "k-admin"
    if spec.phase == steps.BUILD:
        return "k-build"
    if spec.phase == steps.SWITCH:
        return "k-activate"
    if spec.resets_pool:
        return "k-pool"
    if kind in ("verify", "run"):
        return f"k-{kind}"
    return "k-live"


def _window(report):
    """The timeline's start and length in seconds: the run's, or its steps' when missing."""
    times = [t for h in report.get("hosts", []) for s in h.get("steps", []) for t in (s.get("started"), s.get("ended"))
             if t is not None]
    times += [t for b in report.get("batches", []) for t in (b.get("started"), b.get("ended")) if t is not None]
    start = report.get("started")
    start = min([start] + times) if start is not None else min(times, default=None)
    end = report.get("ended")
    end = max([end] + times) if end is not None else max(times, default=None)
    if start is None or end is None:
        return None, None
    return start, max(end - start, 0.001)


def _pos(t, start, span):
    return max(0.0, min(100.0, (t - start) / span * 100))


def _ticks(span):
    step = next((s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
                 if span / s <= 10), 7200)
    out, t = [], 0.0
    while t <= span + 1e-9:
        out.append(t)
        t += step
    return out


def _bars(host, start, span):
    out = []
    for s in host.get("steps", []):
        if s.get("started") is None:
            continue
        ended = s.get("ended") if s.get("ended") is not None else s["started"] + (s.get("duration") or 0)
        left = _pos(s["started"], start, span)
        width = max(_pos(ended, start, span) - left, 0.15)
        title = f"{s.get('name')} ({s.get('kind')}): {s.get('status')}, {_secs(s.get('duration'))}, " \
                f"{_utc(s['started'], ms=True)}"
        out.append(f'<div class="bar {_kind_class(s)} s-{e(s.get("status"))}" style="left:{left:.3f}%;width:{width:.3f}%"'
                   f' title="{e(title)}" data-step="{e(s.get("name"))}" data-status="{e(s.get("status"))}">'
                   f'{e(s.get("name"))}</div>')
    return "".join(out)


def _host_row(host, start, span, bands=""):
    label = f'<span class="mono">{e(host.get("host"))}</span> {_badge(host.get("state"))}'
    bars = _bars(host, start, span)
    if not bars:
        bars = f'<span class="note" style="padding-left:6px">no steps ran: {e(host.get("message") or host.get("state"))}</span>'
    return (f'<div class="tl-row" data-host="{e(host.get("host"))}" data-state="{e(host.get("state"))}"'
            f' data-batch="{e(host.get("batch"))}"><div class="tl-label" title="{e(host.get("host"))}">{label}</div>'
            f'<div class="tl-track">{bands}{bars}</div></div>')


def _timeline(report):
    hosts = report.get("hosts", [])
    if not hosts:
        return '<p class="empty">no hosts</p>'
    start, span = _window(report)
    if start is None:
        return '<p class="empty">nothing ran: no step has a start time</p>'
    axis = "".join(f'<span class="tick" style="left:{_pos(start + t, start, span):.3f}%">+{_secs(t) if t else "0s"}</span>'
                   for t in _ticks(span))
    parts = ['<div class="tl">',
             f'<div class="tl-row tl-axis"><div class="tl-label note">UTC {e(_utc(start))}</div>'
             f'<div class="tl-track">{axis}</div></div>']
    batches = {b.get("number"): b for b in report.get("batches", [])}
    numbers = sorted({h.get("batch") for h in hosts if h.get("batch") is not None})
    for number in numbers:
        b = batches.get(number, {})
        members = [h for h in hosts if h.get("batch") == number]
        band = ""
        if b.get("started") is not None and b.get("ended") is not None:
            left = _pos(b["started"], start, span)
            band = f'<div class="band" style="left:{left:.3f}%;width:{max(_pos(b["ended"], start, span) - left, 0.15):.3f}%"></div>'
        head = f"batch {e(number)}: {len(members)} host(s)"
        if b.get("started") is not None and b.get("ended") is not None:
            head += f", {e(_secs(b['ended'] - b['started']))}"
        if b.get("failed"):
            head += f", {len(b['failed'])} failed (tolerated: {e(b.get('max_fail'))})"
        why = ""
        if b.get("stopped_rollout"):
            why = ' <span class="why">stopped the rollout: its deployed hosts were rolled back</span>'
        parts.append(f'<div class="batch" data-batch-group="{e(number)}"><div class="batch-head">{head}{why}</div>')
        parts += [_host_row(h, start, span, band) for h in members]
        parts.append("</div>")
    rest = [h for h in hosts if h.get("batch") is None]
    if rest:
        title = "hosts" if not numbers else "not in a batch (never started, or unreachable before the rollout)"
        parts.append(f'<div class="batch" data-batch-group="none"><div class="batch-head">{e(title)}</div>')
        parts += [_host_row(h, start, span) for h in rest]
        parts.append("</div>")
    parts.append("</div>")
    legend = "".join(f'<span class="bar {cls}"></span>{e(name)}' for cls, name in (
        ("k-admin", "lock / prepare / finalize"), ("k-build", "build"), ("k-activate", "activate"),
        ("k-pool", "OPCache reset / FPM reload"), ("k-live", "after the switch"), ("k-verify", "verify"), ("k-run", "run"),
        ("k-health", "health (healing)"), ("k-rollback", "rollback"), ("s-failed", "failed")))
    parts.append(f'<div class="legend">{legend}<br>Shaded: the time each batch ran. Hover over a bar for its'
                 ' times; the commands are below.</div>')
    return "".join(parts)


def _hosts_table(report):
    hosts = report.get("hosts", [])
    if not hosts:
        return '<p class="empty">no hosts</p>'
    rows = []
    for h in hosts:
        rows.append(f'<tr data-host="{e(h.get("host"))}"><td class="mono">{e(h.get("host"))}</td>'
                    f'<td>{e(h.get("batch"))}</td><td>{_badge(h.get("state"))}</td>'
                    f'<td class="mono">{e(h.get("release"))}</td><td class="mono">{e(h.get("previous"))}</td>'
                    f'<td class="num">{e(_secs(h.get("duration")))}</td>'
                    f'<td class="num">{e(_secs(h.get("activated_to_verified")))}</td>'
                    f'<td>{e(h.get("message") or "")}</td></tr>')
    return ('<table><thead><tr><th>host</th><th>batch</th><th>state</th><th>release</th><th>previous</th>'
            '<th>time</th><th>activation→verified</th><th>message</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _action(a):
    """One action: a rollback (to, why) or a fix of a heal (why, ok, attempt, commands, error)."""
    facts = []
    if a.get("to"):
        facts.append(f"to {a['to']}")
    if "ok" in a:
        facts.append("done" if a["ok"] else "FAILED")
    if a.get("attempt"):
        facts.append(f"round {a['attempt']}")
    if a.get("duration"):
        facts.append(_secs(a["duration"]))
    known = ("action", "why", "to", "ok", "attempt", "duration", "commands", "error")
    facts += [f"{k}: {v}" for k, v in a.items() if k not in known]
    text = f"<strong>{e(a.get('action'))}</strong>" + (f" ({e(', '.join(facts))})" if facts else "")
    if a.get("why"):
        text += f" — why: {e(a['why'])}"
    if a.get("error"):
        text += f' <span class="why">error: {e(a["error"])}</span>'
    if a.get("commands"):
        text += ("<details><summary>commands</summary>"
                 + "".join(f'<pre class="line">{e(c)}</pre>' for c in a["commands"]) + "</details>")
    return text


def _actions(report):
    items = []
    for h in report.get("hosts", []):
        for a in h.get("actions", []) or []:
            items.append(f'<li data-host="{e(h.get("host"))}" data-action="{e(a.get("action"))}">'
                         f'<span class="mono">{e(h.get("host"))}</span>: {_action(a)}</li>')
    if not items:
        return '<p class="empty">none: no host was healed or rolled back</p>'
    return '<ul class="actions">' + "".join(items) + "</ul>"


def _notifications(report):
    notes = report.get("notifications") or []
    if not notes:
        return ""
    rows = []
    for n in notes:
        result = '<span class="badge good">sent</span>' if n.get("ok") else '<span class="badge bad">not sent</span>'
        detail = n.get("error") or f"HTTP {n.get('status')}"
        rows.append(f'<tr><td>{e(n.get("webhook"))}</td><td class="mono">{e(n.get("url"))}</td>'
                    f'<td>{e(n.get("event"))}</td><td>{result}</td><td>{e(detail)}</td></tr>')
    return ('<h2 id="notifications">Notifications</h2><table><thead><tr><th>webhook</th><th>url</th><th>event</th>'
            '<th>result</th><th>detail</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>")


def _command(c):
    code = c.get("exit_code")
    where = "local$ " if c.get("local") else "$ "
    exit_text = "did not finish" if code is None else f"exit {code}"
    bad = " bad" if code is None or code != 0 else ""
    out = c.get("output") or ""
    return (f'<div class="cmd" data-exit-code="{e(code)}"><pre class="line">{e(where + str(c.get("command", "")))}</pre>'
            f'<div class="exit{bad}">{e(exit_text)} · {e(_secs(c.get("duration")))}'
            f' · started {e(_utc(c.get("started"), ms=True))}</div>'
            + (f'<pre class="out">{e(out)}</pre>' if out else '<div class="note">no output</div>') + "</div>")


def _details(report):
    hosts = report.get("hosts", [])
    if not hosts:
        return '<p class="empty">no hosts</p>'
    parts = []
    for h in hosts:
        is_open = " open" if h.get("state") not in OK_END else ""
        steps = []
        for s in h.get("steps", []):
            step_open = " open" if s.get("status") == "failed" else ""
            cmds = "".join(_command(c) for c in s.get("commands", [])) or '<div class="note cmd">no commands ran</div>'
            steps.append(f'<details class="step s-{e(s.get("status"))}"{step_open} data-step="{e(s.get("name"))}">'
                         f'<summary>{e(s.get("name"))} <span class="note">({e(s.get("kind"))})</span> · '
                         f'{e(s.get("status"))} · {e(_secs(s.get("duration")))}</summary>{cmds}</details>')
        body = "".join(steps) or f'<p class="empty">no steps ran: {e(h.get("message") or h.get("state"))}</p>'
        parts.append(f'<details class="host"{is_open} data-host="{e(h.get("host"))}"><summary>'
                     f'<span class="mono">{e(h.get("host"))}</span> {_badge(h.get("state"))} '
                     f'<span class="note">{len(h.get("steps", []))} step(s)</span></summary>{body}</details>')
    return "".join(parts)


def render(report):
    """The whole page for one report dict (the JSON report's content)."""
    action = report.get("action") or "deploy"
    code = report.get("exit_code")
    outcome = EXIT_MEANING.get(code, "unknown")
    cls = "good" if code == 0 else "alarm" if code == 3 else "dim" if code is None else "bad"
    title = f"{action} {report.get('release') or ''}".strip()
    started, ended = report.get("started"), report.get("ended")
    duration = _secs(ended - started) if started is not None and ended is not None else "-"
    meta = [("release", f'<code>{e(report.get("release"))}</code>'), ("commit", f'<code>{e(report.get("commit"))}</code>'),
            ("playbook", e(report.get("playbook"))), ("operator", e(report.get("operator")))]
    if report.get("actor"):
        meta.append(("started by", e(report.get("actor"))))
    if report.get("run_url"):
        meta.append(("CI run", _link(report.get("run_url"))))
    meta += [("started", e(_utc(started))), ("ended", e(_utc(ended))), ("duration", e(duration)),
             ("exit code", f"{e(code)}: {e(outcome)}")]
    states = {}
    for h in report.get("hosts", []):
        states[h.get("state")] = states.get(h.get("state"), 0) + 1
    tally = " ".join(f"{_badge(s)} ×{n}" for s, n in states.items()) or '<span class="empty">no hosts</span>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}: {e(outcome)}</title>
<style>{CSS}</style></head>
<body data-exit-code="{e(code)}">
<header><h1>{e(title)} <span class="badge {cls}" id="outcome">exit {e(code)}: {e(outcome)}</span></h1>
<div>{tally}</div>
<dl class="meta">{"".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in meta)}</dl></header>
<h2 id="hosts">Hosts</h2>{_hosts_table(report)}
<h2 id="timeline">Timeline</h2>{_timeline(report)}
<h2 id="actions">Remediation and rollbacks</h2>{_actions(report)}
{_notifications(report)}
<h2 id="commands">Commands</h2>
<p class="note">Every command as it ran (secrets as ***), its exit code and the end of its output.
Hosts that did not end deployed, and failed steps, are open.</p>
{_details(report)}
<footer>Rendered from the JSON report of this run (fab {e(action)} --report).</footer>
</body></html>
"""
