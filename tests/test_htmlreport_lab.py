"""The HTML report of a real fleet deploy (3 sandbox hosts, two batches, one host failing verify),
loaded in a real headless Chromium: every host and its state, the batches, the rollbacks with
their reasons and the commands with their exit codes are in the rendered page; a screenshot."""

import json
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import app_copy, needs_root, start
from test_htmlreport import Page

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labhtml")
CHROMIUM = "/usr/bin/chromium"
SECRET = "Html-Secret-31337"

PIPELINE = """
remediate: false
source: {source}
steps:
  - sync
  - shared
  - composer
  - ownership
  - artisan: {{commands: [config:cache, route:cache]}}
  - activate
  - opcache_reset
  - fpm_reload
  - verify: {{timeout: 3, interval: 0.25}}
  - run:
      name: smoke <check> & "quote"
      commands: ['echo "token is $API_TOKEN <script>alert(1)</script>"']
      env: {{API_TOKEN: {{from_env: HTML_TEST_TOKEN}}}}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    the_lab = start(ROOT, 3, slot_port(3340), slot_port(9340), tmp_path_factory.mktemp("labhtml"))
    yield the_lab
    labmod.down(ROOT, purge=True)


@pytest.fixture
def fleet(lab, tmp_path):
    """lab1..lab3 freshly deployed with r1."""
    for name in lab.hosts:
        lab.wipe(name)
    r = fab("deploy", "--host", "lab", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path, "base.yml"),
            "--release", "r1", env={"HTML_TEST_TOKEN": SECRET})
    assert r.returncode == 0, r.stdout + r.stderr
    return lab


def pipe(tmp_path, name, source=None):
    return str(write(tmp_path / name, PIPELINE.format(source=source or PROJECT / "sample-app")))


def failing_verify_app(tmp_path):
    """The sample app, but /version answers 503 on a host whose shared storage has app/fail-verify
    (the release before it has no such check, so going back to it verifies)."""
    def edit(text):
        head = "    public function show()\n    {\n"
        assert head in text
        return text.replace(head, head + "        if (is_file(storage_path('app/fail-verify'))) {\n"
                            "            return response(\"maintenance: fail-verify is set\\n\", 503);\n        }\n")
    return app_copy(tmp_path, edit={"app/Http/Controllers/VersionController.php": edit})


def chromium(tmp_path, *args):
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def png_facts(path):
    """(width, height, distinct byte values of the pixel data) of a PNG file."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def test_html_report_of_a_fleet_deploy_renders_in_chromium(fleet, tmp_path):
    (fleet.deploy_path("lab2") / "shared" / "storage" / "app" / "fail-verify").write_text("1")
    report, html = tmp_path / "deploy.json", tmp_path / "deploy.html"
    try:
        r = fab("deploy", "--host", "lab", "--inventory", fleet.inventory, "--serial", "1,2",
                "--pipeline", pipe(tmp_path, "p2.yml", failing_verify_app(tmp_path)), "--release", "r2",
                "--report", str(report), "--html", str(html), env={"HTML_TEST_TOKEN": SECRET})
    finally:
        (fleet.deploy_path("lab2") / "shared" / "storage" / "app" / "fail-verify").unlink()
    assert r.returncode == 1, r.stdout + r.stderr
    data = json.loads(report.read_text())
    states = {h["host"]: h["state"] for h in data["hosts"]}
    # lab1 alone in batch 1; lab2 fails verify in batch 2 and goes back, which stops the
    # rollout (max_fail 0) and rolls back lab3 of the same batch.
    assert states == {"lab1": "deployed", "lab2": "rolled back", "lab3": "rolled back"}
    assert {h["host"]: h["batch"] for h in data["hosts"]} == {"lab1": 1, "lab2": 2, "lab3": 2}
    assert [(b["number"], b["hosts"], b["failed"], b["stopped_rollout"]) for b in data["batches"]] == [
        (1, ["lab1"], [], False), (2, ["lab2", "lab3"], ["lab2"], True)]
    assert data["started"] <= data["hosts"][0]["started"] < data["hosts"][0]["ended"] <= data["ended"]
    assert data["operator"] and data["playbook"].endswith("p2.yml")
    assert all(fleet.get(n) == (200, expected) for n, expected in (("lab1", "r2"), ("lab2", "r1"), ("lab3", "r1")))

    dom_text = chromium(tmp_path, "--dump-dom", html.as_uri())
    dom = Page(dom_text)
    assert "deploy r2" in dom.text and "exit 1: failed" in dom.text
    for name, state in states.items():
        assert dom.find("div", class_="tl-row", data_host=name, data_state=state), name
        assert dom.find("tr", data_host=name), name
        assert dom.find("details", data_host=name), name
    # The batches, each host in its own.
    assert [g["data-batch-group"] for g in dom.find("div", class_="batch")] == ["1", "2"]
    assert [row["data-host"] for row in dom.find("div", class_="tl-row", data_batch="2")] == ["lab2", "lab3"]
    assert "stopped the rollout" in dom.text
    # The timeline has bars for the steps, the failed verify of lab2 in red, its rollback after it.
    assert len(dom.find("div", class_="bar")) >= 3 * 10
    assert dom.find("div", class_="bar", data_step="verify", data_status="failed")
    assert dom.find("div", class_="k-rollback", data_step="activate (rollback)")
    # The rollbacks and their reasons.
    lab2_why = next(a for h in data["hosts"] if h["host"] == "lab2" for a in h["actions"])["why"]
    assert "step 'verify' failed (exit 1)" in lab2_why and "fail-verify" in lab2_why
    assert dom.find("li", data_host="lab2", data_action="rollback") and lab2_why in dom.text
    assert dom.find("li", data_host="lab3", data_action="rollback")
    assert "rollout stopped: batch over max_fail" in dom.text
    # Each command with its exit code and output; the failed verify command is shown as exit 1.
    assert dom.find("div", class_="cmd", data_exit_code="1")
    assert "verify failed after 3s: HTTP 503" in dom.text and "exit 1 · " in dom.text
    assert len(dom.find("div", class_="cmd", data_exit_code="0")) > 30
    # Output and step names are text, not markup; the secret is masked everywhere.
    assert 'smoke <check> & "quote"' in dom.text and "token is *** <script>alert(1)</script>" in dom.text
    assert not dom.find("script")
    for text in (dom_text, html.read_text(), report.read_text(), r.stdout, r.stderr):
        assert SECRET not in text

    shot = tmp_path / "deploy.png"
    chromium(tmp_path, "--hide-scrollbars", "--window-size=1400,2400", f"--screenshot={shot}", html.as_uri())
    width, height, distinct = png_facts(shot)
    assert (width, height) == (1400, 2400)
    assert shot.stat().st_size > 50_000 and distinct > 100  # a page of text and colours, not a blank
    print(f"screenshot: {shot}")


def test_html_into_a_missing_directory_exits_2_before_any_host(fleet, tmp_path):
    sshd_log = Path(fleet.hosts["lab1"].sshd_log)
    logins = sshd_log.read_text().count("Accepted publickey")
    before = sorted(p.name for p in (fleet.deploy_path("lab1") / "releases").iterdir())
    for flag in ("--html", "--report", "--junit"):
        r = fab("deploy", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", pipe(tmp_path, "p.yml"),
                "--release", "r9", flag, str(tmp_path / "no" / "such" / "dir" / "out"), env={"HTML_TEST_TOKEN": "x"})
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"error: {flag} {tmp_path}/no/such/dir/out: directory {tmp_path}/no/such/dir does not exist" in r.stderr
        assert "mkdir -p" in r.stderr and "Traceback" not in r.stderr
    r = fab("rollback", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", pipe(tmp_path, "p.yml"),
            "--html", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr, r.stderr
    assert sshd_log.read_text().count("Accepted publickey") == logins
    assert sorted(p.name for p in (fleet.deploy_path("lab1") / "releases").iterdir()) == before


def test_html_report_of_fab_rollback(fleet, tmp_path):
    p = pipe(tmp_path, "p.yml")
    assert fab("deploy", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", p, "--release", "r2",
               env={"HTML_TEST_TOKEN": SECRET}).returncode == 0
    html = tmp_path / "rollback.html"
    r = fab("rollback", "--host", "lab1", "--inventory", fleet.inventory, "--pipeline", p, "--html", str(html),
            env={"HTML_TEST_TOKEN": SECRET})
    assert r.returncode == 0, r.stdout + r.stderr
    text = html.read_text()
    page = Page(text)
    assert "<title>rollback: success</title>" in text and "exit 0: success" in page.text
    assert page.find("div", class_="tl-row", data_host="lab1", data_state="rolled back")
    assert page.find("div", class_="bar", data_step="activate (rollback)")
    assert "now serving r1 (was r2)" in page.text
    assert fleet.get("lab1") == (200, "r1")
