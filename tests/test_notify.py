"""notify: the `notify:` key (file:line errors), the messages (plain and Slack-compatible JSON), and
posting to a real local HTTP server that answers, fails with 500 or hangs.
(Notifications of real deploys on sandbox hosts: test_notify_lab.py.)"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploy import notify, pipeline
from deploy.errors import ConfigError
from helpers import write


class Hooks:
    """A webhook receiver on 127.0.0.1: /ok/... answers 200, /fail answers 500 with a body,
    /hang never answers (until close). Every request is kept: path, headers, JSON body."""

    def __init__(self):
        self.requests = []
        self.release = threading.Event()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hooks.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body),
                                       "time": time.time()})
                if self.path.startswith("/hang"):
                    hooks.release.wait(60)
                    return
                code = 500 if self.path.startswith("/fail") else 200
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if code == 200 else b"invalid_payload: echo " + self.path.encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def to(self, path):
        return [r for r in self.requests if r["path"] == path]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    h = Hooks()
    yield h
    h.close()


def load(tmp_path, notify_yaml):
    (tmp_path / "app").mkdir(exist_ok=True)
    text = "source: app\nsteps:\n  - sync\n  - activate\n" + notify_yaml
    return pipeline.load(write(tmp_path / "playbooks" / "p.yml", text))


def error(tmp_path, notify_yaml):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, notify_yaml)
    return str(info.value)


def test_notify_key_parses_with_defaults(tmp_path):
    p = load(tmp_path, """notify:
  - url: {from_env: SLACK_WEBHOOK_URL}
    format: slack
    events: [failure, rollback]
  - name: audit
    url: https://audit.example/hooks/deploys
    timeout: 2.5
    headers:
      Authorization: {from_env: AUDIT_TOKEN}
      X-Team: web
""")
    slack, audit = p.notify
    assert (slack.name, slack.format, slack.events, slack.timeout) == ("webhook 1", "slack", ("failure", "rollback"), 5.0)
    assert slack.url["from_env"] == "SLACK_WEBHOOK_URL" and slack.url["secret"] is True
    assert slack.where.endswith("p.yml:6")
    assert (audit.name, audit.format, audit.events, audit.timeout) == ("audit", "json", notify.EVENTS, 2.5)
    assert audit.url == {"value": "https://audit.example/hooks/deploys", "from_env": None, "secret": False,
                         "file": str(tmp_path / "playbooks" / "p.yml"), "line": 10, "key": "notify[1].url"}
    assert audit.headers["Authorization"]["secret"] and not audit.headers["X-Team"]["secret"]
    assert load(tmp_path, "").notify == []
    assert notify.describe(p.notify) == [
        f"## notify webhook 1: slack to $SLACK_WEBHOOK_URL on failure, rollback  ({slack.where})",
        f"## notify audit: json to https://audit.example/hooks/deploys on start, success, failure, rollback  ({audit.where})"]


@pytest.mark.parametrize("yaml_text, words", [
    ("notify: {url: x}\n", ["p.yml:5", "key 'notify'", "expected a list"]),
    ("notify:\n  - https://x.example/\n", ["p.yml:6", "notify[0]", "expected a mapping"]),
    ("notify:\n  - format: slack\n", ["p.yml:6", "notify[0]", "missing required key 'url'", "from_env"]),
    ("notify:\n  - url: ftp://x.example/\n", ["p.yml:6", "notify[0].url", "not an http:// or https:// URL"]),
    ("notify:\n  - url: file:///etc/passwd\n", ["p.yml:6", "not an http:// or https:// URL"]),
    ("notify:\n  - url: {from_env: A, value: b}\n", ["p.yml:6", "notify[0].url", "exactly one of value: or from_env:"]),
    ("notify:\n  - url: {env: A}\n", ["p.yml:6", "notify[0].url.env", "unknown key"]),
    ("notify:\n  - url: https://x.example/\n    format: teams\n", ["p.yml:7", "notify[0].format", "unknown format 'teams'",
                                                                  "slack"]),
    ("notify:\n  - url: https://x.example/\n    events: [deploy]\n", ["p.yml:7", "notify[0].events", "unknown event 'deploy'",
                                                                 "start, success, failure, rollback"]),
    ("notify:\n  - url: https://x.example/\n    events: []\n", ["p.yml:7", "at least one"]),
    ("notify:\n  - url: https://x.example/\n    timeout: 0\n", ["p.yml:7", "notify[0].timeout", "between 0 and 60"]),
    ("notify:\n  - url: https://x.example/\n    retries: 3\n", ["p.yml:7", "notify[0].retries", "unknown key",
                                                               "events, format, headers, name, timeout, url"]),
    ("notify:\n  - url: https://x.example/\n    headers: {'Bad Name': x}\n", ["p.yml:7", "invalid HTTP header name"]),
    ("notify:\n  - url: https://x.example/\n  - url: https://y.example/\n    name: webhook 1\n",
     ["p.yml:8", "two webhooks are named 'webhook 1'"]),
])
def test_bad_notify_entries_name_file_line_and_key(tmp_path, yaml_text, words):
    message = error(tmp_path, yaml_text)
    for w in words:
        assert w in message, message


def test_from_env_is_read_only_when_a_run_starts(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_TEST_URL", raising=False)
    p = load(tmp_path, "notify:\n  - url: {from_env: NOTIFY_TEST_URL}\n")  # loading (a plan) needs no value
    with pytest.raises(ConfigError) as info:
        notify.resolve(p.notify)
    assert "environment variable NOTIFY_TEST_URL is not set" in str(info.value) and "p.yml:6" in str(info.value)
    monkeypatch.setenv("NOTIFY_TEST_URL", "javascript:alert(1)//tok")
    with pytest.raises(ConfigError) as info:
        notify.resolve(p.notify)
    assert "webhook url *** (from $NOTIFY_TEST_URL) is not an http" in str(info.value)
    assert "tok" not in str(info.value)
    monkeypatch.setenv("NOTIFY_TEST_URL", "https://hooks.slack.example:8443/services/T000/B000/XXXXSECRET")
    target, = notify.resolve(p.notify)
    assert target.shown == "https://hooks.slack.example:8443/***"
    assert "/services/T000/B000/XXXXSECRET" in target.secrets


REPORT = {"action": "deploy", "release": "r2", "exit_code": 1, "started": 1796000000.0, "ended": 1796000012.5,
          "playbook": "playbooks/laravel.yml", "commit": "0123456789abcdef0123456789abcdef01234567",
          "operator": "ci@runner:77", "actor": "alice", "run_url": "https://github.com/acme/shop/actions/runs/9",
          "hosts": [{"host": "web1", "state": "deployed", "release": "r2", "previous": "r1", "batch": 1, "message": ""},
                    {"host": "web2", "state": "rolled back", "release": "r2", "previous": "r1", "batch": 2,
                     "message": "step 'verify' failed (exit 1): <b>502</b> & more; rolled back to r1"}]}


def test_json_and_slack_messages():
    assert notify.end_events(REPORT) == ["failure", "rollback"]
    assert notify.end_events({**REPORT, "exit_code": 0, "hosts": REPORT["hosts"][:1]}) == ["success"]
    assert notify.end_events({"action": "rollback", "exit_code": 0, "hosts": []}) == ["success", "rollback"]

    body = notify.payload(REPORT, "rollback", "json")
    assert body["event"] == "rollback" and body["events"] == ["failure", "rollback"]
    assert body["text"] == "deploy r2 FAILED (exit 1): 1 deployed, 1 rolled back"
    assert {k: body[k] for k in ("release", "commit", "exit_code", "run_url", "actor")} == {
        "release": "r2", "commit": REPORT["commit"], "exit_code": 1, "run_url": REPORT["run_url"], "actor": "alice"}
    assert body["hosts"][1] == {k: REPORT["hosts"][1][k] for k in ("host", "state", "release", "previous", "batch",
                                                                  "message")}

    slack = notify.payload(REPORT, "rollback", "slack")
    assert set(slack) == {"text", "blocks"} and slack["text"] == body["text"]
    assert [b["type"] for b in slack["blocks"]] == ["section", "section", "context"]
    hosts_block = slack["blocks"][1]["text"]["text"]
    # Only the hosts that need a look are listed; Slack's control characters are escaped.
    assert "web1" not in hosts_block and "`web2` rolled back" in hosts_block
    assert "&lt;b&gt;502&lt;/b&gt; &amp; more" in hosts_block and "<b>" not in json.dumps(slack)
    context = slack["blocks"][2]["elements"][0]["text"]
    assert "commit `0123456789ab`" in context and "by alice" in context
    assert "<https://github.com/acme/shop/actions/runs/9|CI run>" in context

    start = notify.payload({**REPORT, "exit_code": None, "hosts": [{"host": f"web{i}", "state": None}
                                                                   for i in range(1, 21)]}, "start", "slack")
    assert start["text"].startswith("deploy r2 started on 20 host(s): web1, web2,") and "and 5 more" in start["text"]


def test_many_hosts_keep_the_slack_message_small():
    hosts = [{"host": f"web{i:03}", "state": "rolled back", "message": "x" * 500} for i in range(300)]
    slack = notify.payload({**REPORT, "hosts": hosts}, "failure", "slack")
    assert all(len(b["text"]["text"]) <= 3000 for b in slack["blocks"] if b["type"] == "section")
    listed = slack["blocks"][1]["text"]["text"]
    assert listed.count("• `web") == 15 and listed.endswith("… and 285 more")


def targets(tmp_path, monkeypatch, hooks, yaml_text, **env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return notify.resolve(load(tmp_path, yaml_text.replace("BASE", hooks.base)).notify)


def test_posts_arrive_in_order_with_headers_and_masked_secrets(tmp_path, monkeypatch, hooks):
    ts = targets(tmp_path, monkeypatch, hooks, """notify:
  - name: team
    url: {from_env: TEAM_HOOK}
    format: slack
    headers: {Authorization: {from_env: TEAM_TOKEN}}
  - name: audit
    url: BASE/ok/audit
    events: [start]
""", TEAM_HOOK=hooks.base + "/ok/T0/B0/sEcReTpAtH", TEAM_TOKEN="Bearer tok-999")
    said = []
    notifier = notify.Notifier(ts, said.append, secrets={"DbPass-1"})
    start = {**REPORT, "exit_code": None, "hosts": [{"host": "web1", "state": None}], "release": "DbPass-1"}
    notifier.send("start", start)
    records = notifier.finish(REPORT)
    assert [(r["webhook"], r["event"], r["ok"], r["status"]) for r in records] == [
        ("team", "start", True, 200), ("audit", "start", True, 200), ("team", "rollback", True, 200)]
    team = hooks.to("/ok/T0/B0/sEcReTpAtH")
    assert [r["body"]["text"].split()[2] for r in team] == ["started", "FAILED"]
    assert team[0]["headers"]["Authorization"] == "Bearer tok-999"
    assert team[0]["headers"]["Content-Type"] == "application/json"
    assert "DbPass-1" not in json.dumps(team[0]["body"]) and "deploy *** started" in team[0]["body"]["text"]
    assert hooks.to("/ok/audit")[0]["body"]["event"] == "start"
    printed = "\n".join(e["text"] for e in said) + json.dumps(records)
    assert "notify team (http://127.0.0.1:" in printed and "/***): start sent (HTTP 200)" in printed
    assert "sEcReTpAtH" not in printed and "tok-999" not in printed


def test_failing_and_hanging_webhooks_are_reported_and_bounded(tmp_path, monkeypatch, hooks):
    ts = targets(tmp_path, monkeypatch, hooks, """notify:
  - {name: broken, url: {from_env: BROKEN_HOOK}}
  - {name: slow, url: BASE/hang, timeout: 2}
  - {name: gone, url: 'http://127.0.0.1:9/nothing-listens-here', timeout: 1}
""", BROKEN_HOOK=hooks.base + "/fail/T1/sEcReT")
    said = []
    notifier = notify.Notifier(ts, said.append)
    t0 = time.monotonic()
    notifier.send("start", {**REPORT, "exit_code": None})
    assert time.monotonic() - t0 < 1.5, "send() must not wait for the webhook (it hangs for 2 s)"
    records = notifier.finish(REPORT)
    by = {(r["webhook"], r["event"]): r for r in records}
    assert by["broken", "start"]["status"] == 500 and not by["broken", "start"]["ok"]
    # The 500 page echoed the secret path: it is masked in what is recorded.
    assert by["broken", "start"]["error"] == "HTTP 500: invalid_payload: echo ***"
    assert by["slow", "start"]["error"] == "no answer within 2s"
    assert by["slow", "rollback"]["error"] == "no answer within 2s"
    assert by["gone", "start"]["error"].startswith("ConnectionRefusedError")
    assert not any(r["ok"] for r in records) and len(records) == 6
    printed = "\n".join(e["text"] for e in said)
    assert printed.count("NOT delivered") == 6 and "sEcReT" not in printed + json.dumps(records)
