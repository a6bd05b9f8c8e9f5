"""render(report) -> HTML on handcrafted reports: escaping, no external assets, empty and odd reports.
(The page rendered from a real fleet deploy, in a real Chromium: test_htmlreport_lab.py.)"""

from html.parser import HTMLParser

from deploy import htmlreport

T0 = 1796000000.0


class Page(HTMLParser):
    """Every start tag with its attributes, and the text, of a page."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.tags, self.chunks = [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.chunks.append(data)

    @property
    def text(self):
        return "".join(self.chunks)

    def find(self, tag=None, **attrs):
        """Tags by attribute (class_: one of its classes; data_host: data-host)."""
        def match(a, key, value):
            key = key.rstrip("_").replace("_", "-")
            return value in (a.get(key) or "").split() if key == "class" else a.get(key) == value
        return [a for t, a in self.tags if (tag is None or t == tag) and all(match(a, k, v) for k, v in attrs.items())]


def command(cmd, code, output, start, duration=0.5, local=False):
    return {"command": cmd, "exit_code": code, "duration": duration, "started": start, "ended": start + duration,
            "local": local, "output": output}


def step(name, kind, status, start, duration, commands=()):
    return {"name": name, "kind": kind, "status": status, "duration": duration, "started": start,
            "ended": start + duration, "commands": list(commands)}


def host(name, state, steps=(), batch=1, message="", actions=()):
    return {"host": name, "release": "r2", "state": state, "previous": "r1", "message": message, "switched": True,
            "duration": 10.0, "activated_to_verified": None, "rsync_files_transferred": None,
            "actions": list(actions), "batch": batch, "started": None, "ended": None, "steps": list(steps)}


def report(hosts, **extra):
    return {"action": "deploy", "release": "r2", "exit_code": 1, "started": T0, "ended": T0 + 10,
            "playbook": "playbooks/laravel.yml", "commit": "0123456789abcdef0123456789abcdef01234567",
            "operator": "alice@laptop:42", "actor": None, "run_url": None, "batches": [],
            "notifications": [], "hosts": hosts, **extra}


EVIL = '</pre><script>alert("x")</script><img src=x onerror=alert(1)>&amp; "quoted" \'single\''


def test_every_value_is_escaped_and_the_page_loads_nothing():
    evil_host = host('web<b onmouseover="x">1', "rolled back", message=EVIL, actions=[
        {"action": "rollback", "to": "r1<i>", "why": EVIL}], steps=[
        step('smoke "<test>"', "run", "failed", T0 + 1, 2, [command("echo " + EVIL, 3, EVIL + "\nline 2", T0 + 1)])])
    page_text = htmlreport.render(report([evil_host], release='r2<script>', playbook=EVIL,
                                         run_url='javascript:alert(1)',
                                         notifications=[{"webhook": EVIL, "url": EVIL, "event": "start", "ok": False,
                                                         "status": None, "error": EVIL}]))
    page = Page(page_text)
    # Only the page's own tags: nothing from the values became markup.
    assert {t for t, _ in page.tags} <= {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "span",
                                         "div", "dl", "dt", "dd", "code", "table", "thead", "tbody", "tr", "th", "td",
                                         "ul", "li", "strong", "details", "summary", "pre", "p", "footer", "br"}
    assert not page.find("script") and not page.find("img") and not page.find("a")
    assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs)
    # ... and they are all there, as text.
    for value in (EVIL, 'web<b onmouseover="x">1', 'smoke "<test>"', "r2<script>", "javascript:alert(1)", "r1<i>"):
        assert value in page.text, value
    assert "<script>" not in page_text and "<img" not in page_text
    # Self-contained: no external reference of any kind, and a policy that would block one.
    assert not page.find("link") and not page.find("iframe") and not page.find("object")
    assert not any(k in ("src", "href", "srcset", "action", "data") for _, attrs in page.tags for k in attrs)
    styles = page_text.split("<style>", 1)[1].split("</style>", 1)[0]
    assert page_text.count("<style>") == 1
    for needle in ("@import", "url(", "http:", "https:", "@font-face"):
        assert needle not in styles, needle
    csp = page.find("meta", http_equiv="Content-Security-Policy")
    assert csp and "default-src 'none'" in csp[0]["content"]


def test_a_run_url_is_a_link_only_when_it_is_http():
    page = Page(htmlreport.render(report([], run_url="https://github.com/acme/shop/actions/runs/42")))
    assert [a["href"] for a in page.find("a")] == ["https://github.com/acme/shop/actions/runs/42"]


def test_no_hosts_renders_a_page_that_says_so():
    page = Page(htmlreport.render(report([], exit_code=0)))
    assert page.text.count("no hosts") == 4  # tally, hosts table, timeline, commands
    assert "exit 0: success" in page.text
    assert page.find("body", data_exit_code="0")


def test_unreachable_host_without_steps_is_shown_with_its_state_and_reason():
    hosts = [host("db1", "unreachable", batch=None, message="cannot connect to 10.0.0.9:22: Connection refused"),
             host("web1", "deployed", steps=[step("lock", "lock", "ok", T0 + 0.5, 0.1),
                                             step("verify", "verify", "ok", T0 + 5, 1)])]
    page = Page(htmlreport.render(report(hosts)))
    row = page.find("div", class_="tl-row", data_host="db1")
    assert row and row[0]["data-state"] == "unreachable"
    assert page.text.count("no steps ran: cannot connect to 10.0.0.9:22: Connection refused") == 2
    assert page.find("details", data_host="db1")
    # A host that did not end deployed is open in the command list; a deployed one is closed.
    assert "open" in page.find("details", data_host="db1")[0] and "open" not in page.find("details", data_host="web1")[0]


def test_timeline_positions_bars_by_wall_clock_and_groups_batches():
    hosts = [host("web1", "deployed", batch=1, steps=[step("sync", "sync", "ok", T0 + 1, 1)]),
             host("web2", "rolled back", batch=2, steps=[step("verify", "verify", "failed", T0 + 5, 2.5),
                                                         step("activate (rollback)", "activate", "ok", T0 + 8, 0.1)]),
             host("web3", "untouched", batch=None, message="not started: rollout stopped")]
    batches = [{"number": 1, "hosts": ["web1"], "started": T0, "ended": T0 + 4, "failed": [], "max_fail": 0,
                "stopped_rollout": False},
               {"number": 2, "hosts": ["web2"], "started": T0 + 4, "ended": T0 + 9, "failed": ["web2"], "max_fail": 0,
                "stopped_rollout": True}]
    text = htmlreport.render(report(hosts, batches=batches))
    page = Page(text)
    bar = page.find("div", data_step="verify")[0]
    assert "left:50.000%" in bar["style"] and "width:25.000%" in bar["style"]  # 5 s into 10 s, 2.5 s long
    assert "s-failed" in bar["class"]
    assert "k-rollback" in page.find("div", data_step="activate (rollback)")[0]["class"]
    assert [a["data-batch-group"] for a in page.find("div", class_="batch")] == ["1", "2", "none"]
    assert "stopped the rollout" in page.text and "1 failed (tolerated: 0)" in page.text
    assert "no steps ran: not started: rollout stopped" in page.text


def test_a_report_without_times_still_renders():
    # Reports of older runs have no started/ended: no timeline, everything else is there.
    old = host("web1", "deployed", steps=[{"name": "sync", "kind": "sync", "status": "ok", "duration": 1.0,
                                           "commands": [{"command": "rsync ...", "exit_code": 0, "duration": 1.0,
                                                         "local": True, "output": ""}]}])
    text = htmlreport.render({"action": "deploy", "release": "r1", "exit_code": 0, "hosts": [old]})
    page = Page(text)
    assert "nothing ran: no step has a start time" in page.text
    assert page.find("div", class_="cmd", data_exit_code="0") and "local$ rsync ..." in page.text


def test_heal_fixes_and_rollbacks_are_listed_with_their_reasons():
    actions = [{"action": "opcache_reset", "why": "the pool runs stale scripts", "ok": True, "attempt": 1,
                "commands": ["php /app/.deploy/bin/fpmctl.php reset --socket=/run/php.sock"], "duration": 0.05},
               {"action": "fix_acl", "why": "storage/ is not writable", "ok": False, "attempt": 2, "commands": [],
                "duration": 0.01, "error": "setfacl: exit 1"},
               {"action": "rollback", "to": "r1", "why": "step 'verify' failed (exit 1): maintenance"}]
    page = Page(htmlreport.render(report([host("web1", "rolled back", actions=actions)])))
    assert [a["data-action"] for a in page.find("li", data_host="web1")] == ["opcache_reset", "fix_acl", "rollback"]
    assert "opcache_reset (done, round 1, 0.05s) — why: the pool runs stale scripts" in page.text
    assert "fix_acl (FAILED, round 2, 0.01s) — why: storage/ is not writable error: setfacl: exit 1" in page.text
    assert "rollback (to r1) — why: step 'verify' failed (exit 1): maintenance" in page.text
    assert "php /app/.deploy/bin/fpmctl.php reset --socket=/run/php.sock" in page.text
