"""Webhook notifications (the pipeline's `notify:` list, docs/pipeline.md#notify).

A run posts to each webhook when it starts and when it ends (success, failure, rollback), as
Slack-compatible JSON or as plain JSON. A webhook can never fail or hold up a deploy: posts go
out from a background thread per webhook, with a timeout; whatever happens is printed and
recorded in the JSON report (`notifications`). Secret URLs and header values print as ***.
"""

import copy
import json
import queue
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import envvars
from .commands import MASK, Secret, mask
from .errors import ConfigError
from .yamlfile import Section

EVENTS = ("start", "success", "failure", "rollback")
# At the end of a run a webhook gets one post: the first of these that applies and that it is on for.
END_PRIORITY = ("rollback", "failure", "success")
FORMATS = ("json", "slack")
DEFAULT_TIMEOUT = 5
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
SLACK_HOST_LIST = 15       # hosts named in a Slack message before "... and N more"
SLACK_SECTION = 3000       # the most characters Slack takes in a section's text


@dataclass(frozen=True)
class Webhook:
    """One `notify:` entry as written; `url` and header values are envvars-style specs."""

    name: str
    url: dict
    format: str
    events: tuple
    timeout: float
    headers: dict
    where: str


def _value_spec(section, key, what):
    """A string, or {value: ..., secret: bool}, or {from_env: NAME} (secret by default)."""
    value = section.data[key]
    where = {"file": str(section.file), "line": section.line_of(key), "key": section.key_path(key)}
    if isinstance(value, dict):
        spec = Section(value, section.file, section.key_path(key), section.line_of(key))
        literal = spec.string("value")
        from_env = spec.string("from_env")
        secret = spec.boolean("secret", from_env is not None)
        spec.done()
        if (literal is None) == (from_env is None):
            raise section.error(key, "give exactly one of value: or from_env:")
        return {"value": literal, "from_env": from_env, "secret": secret, **where}
    if isinstance(value, str):
        return {"value": value, "from_env": None, "secret": False, **where}
    raise section.error(key, f"expected {what} as a string or {{value|from_env, secret}}")


def _check_url(url, spec):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        source = f" (from ${spec['from_env']})" if spec.get("from_env") else ""
        shown = MASK if spec.get("secret") else repr(url)
        raise ConfigError(f"webhook url {shown}{source} is not an http:// or https:// URL",
                                  spec.get("file"), spec.get("line"), spec.get("key"),
                                  "e.g. url: {from_env: SLACK_WEBHOOK_URL}")


def parse(top):
    """The `notify:` list of the pipeline's top-level Section -> [Webhook]. Checks everything but
    the values of `from_env` variables, which are read only when a deploy or rollback starts
    (a plan sends nothing and needs no webhook secret)."""
    items = top.get("notify", list, [])
    lines = getattr(items, "item_lines", None) or []
    hooks = []
    for index, item in enumerate(items):
        line = lines[index] if index < len(lines) else top.line_of("notify")
        s = Section(item, top.file, f"notify[{index}]", line)
        name = s.string("name", f"webhook {index + 1}")
        url = s.data.get("url")
        if url is None:
            raise s.error(None, "missing required key 'url'", "e.g. url: {from_env: SLACK_WEBHOOK_URL}")
        s.seen.add("url")
        url = _value_spec(s, "url", "the webhook URL")
        if url["value"] is not None:
            _check_url(url["value"], url)
        fmt = s.string("format", "json")
        if fmt not in FORMATS:
            raise s.error("format", f"unknown format '{fmt}'", "use 'slack' (Slack-compatible) or 'json'")
        # `events`, not `on`: YAML 1.1 reads a bare `on` key as the boolean true.
        events = s.string_list("events", list(EVENTS))
        for event in events:
            if event not in EVENTS:
                raise s.error("events", f"unknown event '{event}'", "events: " + ", ".join(EVENTS))
        if not events or len(set(events)) != len(events):
            raise s.error("events", "list each event once, at least one", "events: " + ", ".join(EVENTS))
        timeout = s.get("timeout", (int, float), DEFAULT_TIMEOUT)
        if isinstance(timeout, bool) or not 0 < timeout <= 60:
            raise s.error("timeout", f"expected seconds between 0 and 60, got {timeout!r}")
        hs = s.section("headers")
        headers = {}
        for key in hs.data:
            hs.seen.add(key)
            if not HEADER_NAME.match(str(key)):
                raise hs.error(key, "invalid HTTP header name")
            headers[key] = _value_spec(hs, key, "a header value")
        s.done()
        if any(h.name == name for h in hooks):
            raise s.error("name", f"two webhooks are named '{name}'", "give each webhook its own name:")
        hooks.append(Webhook(name, url, fmt, tuple(events), float(timeout), headers, f"{top.file}:{line}"))
    return hooks


def describe(hooks):
    """For plans: where each webhook posts (a from_env URL by its variable) and on which events."""
    lines = []
    for h in hooks:
        url = f"${h.url['from_env']}" if h.url["from_env"] else (MASK if h.url["secret"] else h.url["value"])
        lines.append(f"## notify {h.name}: {h.format} to {url} on {', '.join(h.events)}  ({h.where})")
    return lines


@dataclass(frozen=True)
class Target:
    """A webhook with its URL and headers read from the environment: ready to post to."""

    hook: Webhook
    url: object        # str, or Secret
    headers: dict      # name -> str or Secret

    @property
    def shown(self):
        """The URL as printed: a secret one keeps only its scheme, host and port."""
        if not isinstance(self.url, Secret):
            return self.url
        parts = urllib.parse.urlsplit(self.url.value)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}/{MASK}"

    @property
    def secrets(self):
        values = [v.value for v in (self.url, *self.headers.values()) if isinstance(v, Secret)]
        if isinstance(self.url, Secret):
            # The token of a Slack-style URL is its path: an error page may echo just that.
            parts = urllib.parse.urlsplit(self.url.value)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            values += [v for v in (path, parts.password) if v and len(v) >= 8]
        return values


def resolve(hooks):
    """Read the webhooks' `from_env` values: ConfigError (exit 2, before any host) when one is
    missing or is not an http(s) URL."""
    targets = []
    for hook in hooks:
        url = envvars.resolve("url", hook.url)
        _check_url(url.value if isinstance(url, Secret) else url, hook.url)
        headers = {k: envvars.resolve(k, spec) for k, spec in hook.headers.items()}
        targets.append(Target(hook, url, headers))
    return targets


# ---------------------------------------------------------------- messages

OUTCOME = {0: "succeeded", 1: "FAILED", 2: "bad input", 3: "NEEDS A HUMAN", 130: "was interrupted"}


def end_events(report):
    """The events a finished run's report stands for."""
    events = ["success" if report.get("exit_code") == 0 else "failure"]
    if report.get("action") == "rollback" or any(h.get("state") == "rolled back" for h in report.get("hosts", [])):
        events.append("rollback")
    return events


def _what(report):
    if report.get("action") == "rollback":
        return "rollback" + (f" to {report['release']}" if report.get("release") else "")
    return f"deploy {report.get('release')}"


def _counts(hosts):
    counts = {}
    for h in hosts:
        counts[h.get("state")] = counts.get(h.get("state"), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())


def text(report, event):
    """One line: what ran, how it ended, the hosts' states."""
    hosts = report.get("hosts", [])
    if event == "start":
        names = ", ".join(h["host"] for h in hosts[:SLACK_HOST_LIST])
        more = f" and {len(hosts) - SLACK_HOST_LIST} more" if len(hosts) > SLACK_HOST_LIST else ""
        return f"{_what(report)} started on {len(hosts)} host(s): {names}{more}"
    code = report.get("exit_code")
    return f"{_what(report)} {OUTCOME.get(code, 'ended')} (exit {code}): {_counts(hosts) or 'no hosts'}"


def payload(report, event, fmt):
    """The body of one post: plain JSON, or Slack-compatible {"text", "blocks"}."""
    line = text(report, event)
    hosts = [{k: h.get(k) for k in ("host", "state", "release", "previous", "batch", "message")}
             for h in report.get("hosts", [])]
    if fmt == "json":
        return {"event": event, "events": [event] if event == "start" else end_events(report), "text": line,
                **{k: report.get(k) for k in ("action", "release", "commit", "playbook", "exit_code", "operator",
                                              "actor", "run_url", "started", "ended")},
                "hosts": hosts}
    return _slack(report, event, line, hosts)


def _slack_escape(value):
    # Slack's mrkdwn treats these three as control characters; everything else is literal.
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(report, event, line, hosts):
    icon = {"start": ":rocket:", "success": ":white_check_mark:", "failure": ":x:", "rollback": ":rewind:"}[event]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{_slack_escape(line)}*"}}]
    if event != "start":
        notable = [h for h in hosts if h["state"] != "deployed"]
        rows, size = [], 0
        for h in notable[:SLACK_HOST_LIST]:
            row = f"• `{_slack_escape(h['host'])}` {_slack_escape(h['state'])}" + (
                f": {_slack_escape((h['message'] or '').splitlines()[0][:160])}" if h.get("message") else "")
            if size + len(row) > SLACK_SECTION - 40:   # Slack refuses a section text over 3000 characters
                break
            rows.append(row)
            size += len(row) + 1
        if len(notable) > len(rows):
            rows.append(f"… and {len(notable) - len(rows)} more")
        if rows:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(rows)}})
    facts = [f"release `{_slack_escape(report.get('release') or '-')}`"]
    if report.get("commit"):
        facts.append(f"commit `{report['commit'][:12]}`")
    facts.append(f"by {_slack_escape(report.get('actor') or report.get('operator') or '?')}")
    if report.get("run_url"):
        facts.append(f"<{_slack_escape(report['run_url'])}|CI run>")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts)}]})
    return {"text": _slack_escape(line), "blocks": blocks}


def _masked(value, secrets):
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {k: _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    return value


# ---------------------------------------------------------------- sending

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would re-send the headers (tokens) somewhere else: report it instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url, body, headers, timeout):
    """POST a JSON body. Returns (HTTP status or None, error text or None)."""
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "deploy-notify",
                                          **headers})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return resp.status, None
    except urllib.error.HTTPError as exc:
        said = exc.read(300).decode(errors="replace").strip() if exc.fp else ""
        return exc.code, f"HTTP {exc.code}" + (f": {said}" if said else "")
    except (TimeoutError, OSError) as exc:   # urllib.error.URLError is an OSError
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return None, f"no answer within {timeout:g}s"
        return None, f"{type(reason).__name__}: {reason}"
    except Exception as exc:  # a webhook must never take the deploy down
        return None, f"{type(exc).__name__}: {exc}"


class Notifier:
    """Posts events to every target that is on for them, one background thread per target (so a
    target's posts arrive in order), and records each outcome. `finish` waits a bounded time."""

    def __init__(self, targets, emit, secrets=()):
        self.emit = emit
        self.secrets = set(secrets)
        for t in targets:
            self.secrets.update(t.secrets)
        self.records = []          # one per post, in the order they were queued
        self.lock = threading.Lock()
        self.workers = []
        for t in targets:
            q = queue.Queue()
            worker = threading.Thread(target=self._work, args=(t, q), daemon=True, name=f"notify-{t.hook.name}")
            worker.start()
            self.workers.append((t, q, worker))

    def send(self, event, report):
        """Queue `event` for every target that is on for it; returns at once."""
        for target, q, _ in self.workers:
            if event in target.hook.events:
                self._queue(target, q, event, report)

    def finish(self, report):
        """Queue the end event (the first of rollback/failure/success that applies and that the
        target is on for), wait for every post at most twice the longest timeout plus a second,
        and return the outcomes (also in the JSON report as `notifications`)."""
        events = end_events(report)
        for target, q, _ in self.workers:
            event = next((e for e in END_PRIORITY if e in events and e in target.hook.events), None)
            if event:
                self._queue(target, q, event, report)
            q.put(None)
        if self.workers:
            deadline = time.monotonic() + 2 * max(t.hook.timeout for t, _, _ in self.workers) + 1
            for _, _, worker in self.workers:
                worker.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            for rec in self.records:
                if rec["ok"] is None:
                    rec.update(ok=False, error="still not sent when the run ended; not waited for")
                    self._say(rec)
            return copy.deepcopy(self.records)

    def _queue(self, target, q, event, report):
        try:
            body = _masked(payload(report, event, target.hook.format), self.secrets)
        except Exception as exc:  # a bug in a message must not stop the deploy either
            body, error = None, f"could not build the message: {type(exc).__name__}: {exc}"
        else:
            error = None
        rec = {"webhook": target.hook.name, "url": target.shown, "format": target.hook.format, "event": event,
               "ok": None if body is not None else False, "status": None, "error": error, "duration": None}
        with self.lock:
            self.records.append(rec)
        if body is None:
            self._say(rec)
            return
        q.put((rec, json.dumps(body).encode()))

    def _work(self, target, q):
        headers = {k: (v.value if isinstance(v, Secret) else v) for k, v in target.headers.items()}
        url = target.url.value if isinstance(target.url, Secret) else target.url
        while True:
            item = q.get()
            if item is None:
                return
            rec, body = item
            t0 = time.monotonic()
            status, error = post(url, body, headers, target.hook.timeout)
            with self.lock:
                if rec["ok"] is not None:   # given up on by finish(): keep what was reported
                    continue
                rec.update(status=status, ok=error is None and status is not None and 200 <= status < 300,
                           error=None if error is None else mask(error, self.secrets),
                           duration=round(time.monotonic() - t0, 3))
                if not rec["ok"] and rec["error"] is None:
                    rec["error"] = f"HTTP {status}"
                self._say(rec)

    def _say(self, rec):
        where = f"notify {rec['webhook']} ({rec['url']})"
        if rec["ok"]:
            text = f"{where}: {rec['event']} sent (HTTP {rec['status']})"
        else:
            text = f"{where}: {rec['event']} NOT delivered: {rec['error']} (the run goes on; see the report)"
        try:
            self.emit({"type": "message", "text": text})
        except Exception:
            pass
