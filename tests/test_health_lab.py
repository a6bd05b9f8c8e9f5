"""Health checks and healing on REAL lab hosts (sshd + PHP-FPM + nginx + Laravel, deploy/lab/).

Every scenario reproduces one cause of the incident for real (docs/why.md,
with what is true instead) and ends with the new code served, proven by GET /version,
or with a clear failure. Own roots and ports so it never touches the shared lab in /srv/lab:
/srv/labhealth (ssh 2500+i, http 8500+i) for the releases layout, /srv/labheal2 (ssh 2900+i,
http 8900+i) for the in-place strategy; HEALTH_LAB_ROOT / HEALTH_LAB_SSH_BASE /
HEALTH_LAB_HTTP_BASE and HEALTH_LAB_INPLACE_ROOT / ..._SSH_BASE / ..._HTTP_BASE move them.
Both are purged at the end. Needs root.

Set HEALTH_TIMINGS=/path/file.json to get the measured healing times written there.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import cli, cli_health, health, lab, remediate
from deploy import operations as ops
from deploy import plan as planner
from deploy.executor import Runner
from deploy.report import Reporter
from helpers import composer_install, slot_port, slot_root
from labfixture import patch_controller

REPO = Path(__file__).resolve().parents[1]
ROOT = os.environ.get("HEALTH_LAB_ROOT", slot_root("/srv/labhealth"))
SSH_BASE = int(os.environ.get("HEALTH_LAB_SSH_BASE", slot_port(2500)))
HTTP_BASE = int(os.environ.get("HEALTH_LAB_HTTP_BASE", slot_port(8500)))
IP_ROOT = os.environ.get("HEALTH_LAB_INPLACE_ROOT", slot_root("/srv/labheal2"))
IP_SSH_BASE = int(os.environ.get("HEALTH_LAB_INPLACE_SSH_BASE", slot_port(2900)))
IP_HTTP_BASE = int(os.environ.get("HEALTH_LAB_INPLACE_HTTP_BASE", slot_port(8900)))
TIMINGS = {}

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(
        os.geteuid() != 0 or not all(Path(p).exists() for p in (lab.SSHD, lab.PHP_FPM, lab.NGINX, "/usr/bin/php")),
        reason="needs root, sshd, php-fpm8.2, nginx and php-cli (real lab hosts)"),
]


def quiet():
    return Reporter(live=False, stream=io.StringIO())


@pytest.fixture(scope="session")
def labh(tmp_path_factory):
    os.environ["LAB_QUIET"] = "1"
    lab.down(ROOT, purge=True)  # leftovers of an interrupted run
    inv = tmp_path_factory.mktemp("labhealth") / "lab.yml"
    hosts = lab.up(2, root=ROOT, inventory=str(inv), ssh_base=SSH_BASE, http_base=HTTP_BASE)
    for h in hosts:
        place_env(Path(h.deploy_path) / "shared" / ".env")
    yield {"inventory": str(inv), "hosts": {h.name: h for h in hosts}}
    lab.down(ROOT, purge=True)
    if os.environ.get("HEALTH_TIMINGS"):
        Path(os.environ["HEALTH_TIMINGS"]).write_text(json.dumps(TIMINGS, indent=2) + "\n")


def place_env(path):
    """A host's first .env, as an operator places it (the lab without its stack writes none):
    the app's key, the rest at the sample app's defaults. The deploy's shared step keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("APP_NAME=sample-app\nAPP_ENV=production\nAPP_KEY=base64:"
                    + base64.b64encode(os.urandom(32)).decode() + "\n")
    os.chmod(path, 0o640)
    shutil.chown(path, "root", "www-data")


def load(labh, name):
    hosts, pipe = cli.load(name, labh["inventory"], None)
    return hosts[0], pipe


def curl(url):
    r = subprocess.run(["curl", "-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", url],
                       capture_output=True, text=True, timeout=15)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def deploy(labh, name, release):
    code = cli.deploy(name, inventory=labh["inventory"], release=release, reporter=quiet())
    assert code == 0, f"deploy of {release} to {name} failed"
    assert curl(labh["hosts"][name].health_url) == (200, release)
    return Path(labh["hosts"][name].deploy_path, "current").resolve()


def checks(labh, name):
    h, pipe = load(labh, name)
    r = cli_health.check_host(h, pipe)
    assert r["error"] is None, r["error"]
    return {f.check: f for f in r["findings"]}


def as_web_user_can_write(path):
    return subprocess.run(["runuser", "-u", "www-data", "--", "test", "-w", str(path)]).returncode == 0


def run_on_host(labh, name, command):
    return subprocess.run(lab.ssh_command(name, ROOT) + [command], capture_output=True, text=True, timeout=30)


# ----------------------------------------------------------------------------------------------

def test_a_fresh_deploy_is_healthy_once_healed(labh):
    """The sample app deployed by the tool. (The ownership step's `setfacl -R` on the storage
    SYMLINK does not recurse into shared/storage: subdirs stay root 0755, so the first error page
    Laravel tries to log is a 500. Health catches it, heal fixes it.)"""
    rel = deploy(labh, "lab1", "r1")
    fs = checks(labh, "lab1")
    assert fs["running_code"].status == "pass", fs["running_code"].evidence
    assert fs["nginx"].status == "pass" and "$realpath_root" in fs["nginx"].evidence
    assert fs["fpm"].status == "pass" and fs["socket"].status == "pass"
    if fs["ownership"].status == "fail":
        assert "storage not writable by www-data" in fs["ownership"].evidence
        assert cli_health.heal("lab1", inventory=labh["inventory"], reporter=quiet()) == 0
        fs = checks(labh, "lab1")
    assert {c: f.status for c, f in fs.items()} == {c: "pass" for c in health.CHECKS}, \
        {c: f.evidence for c, f in fs.items() if f.status != "pass"}
    assert as_web_user_can_write(Path(rel, "storage", "logs"))
    assert curl(labh["hosts"]["lab1"].base_url + "/no-such-page")[0] == 404


def test_stale_opcache_after_an_in_place_edit_is_detected_and_healed_in_the_pool(labh):
    h = labh["hosts"]["lab1"]
    lab.fpm_restart("lab1", root=ROOT, validate_timestamps=0)
    rel = deploy(labh, "lab1", "r2")
    t_deployed = time.time()
    assert curl(h.health_url) == (200, "r2")          # VersionController is now cached in the pool
    time.sleep(max(0.0, t_deployed + 3.5 - time.time()))  # the edit's mtime must be after the deploy's reset
    patch_controller(rel, "-patched")
    assert curl(h.health_url) == (200, "r2"), "validate_timestamps=0: the pool must keep the old code"

    fs = checks(labh, "lab1")
    rc = fs["running_code"]
    assert rc.status == "fail" and rc.remedy == "opcache_reset"
    assert "the pool answers 'r2' but the code on disk answers 'r2-patched'" in rc.evidence
    assert fs["opcache"].status == "fail" and "VersionController.php" in fs["opcache"].evidence

    host, pipe = load(labh, "lab1")
    transport = ops.connect(host)
    events = []
    try:
        runner = Runner(transport, host, events.append)
        t0 = time.monotonic()
        ok, actions = remediate.heal(runner, host, pipe, "r2", events.append)
        TIMINGS.setdefault("stale_code_heal_seconds", []).append(round(time.monotonic() - t0, 3))
        TIMINGS.setdefault("stale_code_reset_action_seconds", []).append(actions[0]["duration"] if actions else None)
    finally:
        transport.close()
    assert ok, actions
    assert [(a["action"], a["ok"]) for a in actions] == [("opcache_reset", True)]
    assert "code on disk answers 'r2-patched'" in actions[0]["why"]
    assert any(e["type"] == "action" and e["action"] == "opcache_reset" for e in events)
    assert curl(h.health_url) == (200, "r2-patched")
    print(f"\nhealing the stale-code case took {TIMINGS['stale_code_heal_seconds'][-1]:.2f}s"
          f" (the reset itself {actions[0]['duration']:.2f}s)")


def test_php_cli_opcache_reset_never_reaches_the_pool(labh):
    h = labh["hosts"]["lab1"]
    rel = deploy(labh, "lab1", "r3")
    time.sleep(3)
    patch_controller(rel, "-cli")
    assert curl(h.health_url) == (200, "r3")
    # The incident's "fix", run on the host: the CLI has no OPCache (enable_cli=0) ...
    out = run_on_host(labh, "lab1", "php -r 'var_dump(opcache_reset());'")
    assert out.returncode == 0 and "bool(false)" in out.stdout
    # ... and when it has one, it resets its OWN cache: the pool is untouched either way.
    out = run_on_host(labh, "lab1", "php -d opcache.enable_cli=1 -r 'var_dump(opcache_reset());'")
    assert "bool(true)" in out.stdout
    for _ in range(3):
        assert curl(h.health_url) == (200, "r3"), "php -r opcache_reset() must not have reached the pool"
    assert checks(labh, "lab1")["running_code"].status == "fail"
    # The tool's reset goes through the pool's own socket.
    assert cli_health.heal("lab1", inventory=labh["inventory"], reporter=quiet()) == 0
    assert curl(h.health_url) == (200, "r3-cli")


def test_root_owned_bootstrap_cache_and_storage_are_repaired_with_acls_only(labh):
    h = labh["hosts"]["lab1"]
    rel = deploy(labh, "lab1", "r4")
    storage = (rel / "storage").resolve()
    cache = rel / "bootstrap" / "cache"
    # The incident: caches cleared and files left by root, no ACLs, 0755.
    for name in ("packages.php", "services.php"):
        (cache / name).unlink()
    for d in (cache, storage):
        subprocess.run(["setfacl", "-bR", str(d)], check=True)
        subprocess.run(["chown", "-R", "root:root", str(d)], check=True)
        subprocess.run(["chmod", "-R", "u=rwX,go=rX", str(d)], check=True)
    code, body = curl(h.health_url)
    assert code == 500
    out = subprocess.run(["runuser", "-u", "www-data", "--", "env", "-i", "PATH=/usr/bin:/bin", "php",
                          "-d", "opcache.enable_cli=0", "public/index.php"], cwd=rel, capture_output=True, text=True)
    # (the console renderer wraps lines mid-word: compare without any whitespace)
    assert "mustbepresentandwritable" in "".join((out.stdout + out.stderr).split())

    fs = checks(labh, "lab1")
    assert fs["ownership"].status == "fail" and "acl" in fs["ownership"].remedies
    assert "not writable by www-data" in fs["ownership"].evidence
    assert fs["bootstrap_cache"].status == "fail"
    assert "must be present and writable" in fs["bootstrap_cache"].evidence
    assert fs["running_code"].status == "fail" and "HTTP 500" in fs["running_code"].evidence

    stream = io.StringIO()
    t0 = time.monotonic()
    assert cli_health.heal("lab1", inventory=labh["inventory"], reporter=Reporter(live=False, stream=stream)) == 0
    TIMINGS["root_owned_heal_seconds"] = round(time.monotonic() - t0, 3)
    text = stream.getvalue()
    assert "action: acl" in text and "action: artisan" in text
    assert curl(h.health_url) == (200, "r4")
    assert as_web_user_can_write(cache) and as_web_user_can_write(storage / "logs")
    acl = subprocess.run(["getfacl", "-p", str(cache)], capture_output=True, text=True).stdout
    assert "user:www-data:rwx" in acl and "default:user:www-data:rwx" in acl
    # Ownership of the code was never handed to the web user.
    code_files = [rel / "app" / "Http" / "Controllers" / "VersionController.php", rel / "routes" / "web.php",
                  rel / "public" / "index.php", rel / "config" / "app.php", rel]
    assert not [p for p in code_files if as_web_user_can_write(p)]
    writable_code = subprocess.run(
        ["runuser", "-u", "www-data", "--", "find", str(rel), "(", "-path", str(rel / "storage"), "-o", "-path",
         str(cache), ")", "-prune", "-o", "-writable", "-print"], capture_output=True, text=True).stdout.split()
    assert writable_code == []
    assert (rel / "app").stat().st_uid == 0 and Path(rel, "app").owner() == "root"


def test_nginx_with_document_root_is_reported_with_the_exact_fix(labh):
    inv = labh["inventory"]
    lab.nginx_reconfigure("lab1", realpath_root=False, root=ROOT)
    try:
        stream = io.StringIO()
        code = cli_health.health("lab1", inventory=inv, as_json=True, reporter=Reporter(live=False, stream=stream))
        assert code == 1
        data = json.loads(stream.getvalue())
        assert data["hosts"][0]["section_seconds"].get("nginx") is not None
        f = next(x for x in data["hosts"][0]["findings"] if x["check"] == "nginx")
        assert f["status"] == "fail"
        conf = labh["hosts"]["lab1"].nginx_conf
        assert f"{conf}:" in f["evidence"] and "location ~ \\.php$" in f["evidence"]
        assert "SCRIPT_FILENAME $document_root$fastcgi_script_name" in f["evidence"]
        assert "DOCUMENT_ROOT $document_root" in f["evidence"]
        assert "fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;" in f["fix"]
        assert "fastcgi_param DOCUMENT_ROOT $realpath_root;" in f["fix"]
        assert f["remedy"] is None                    # the tool never edits web server config
        text = io.StringIO()
        assert cli_health.health("lab1", inventory=inv, reporter=Reporter(live=False, stream=text)) == 1
        assert "nginx           " in text.getvalue() and "FAIL" in text.getvalue()
        # heal leaves it to a human and says so, without failing the host for it
        events = []
        h, pipe = load(labh, "lab1")
        r = remediate.heal_host(h, pipe, planner.Operator.here(), events.append)
        assert r.ok and r.actions == []
        assert any(e["type"] == "message" and "needs a human: nginx" in e["text"] for e in events)
    finally:
        lab.nginx_reconfigure("lab1", realpath_root=True, root=ROOT)
    assert checks(labh, "lab1")["nginx"].status == "pass"


def test_heal_a_host_no_deploy_touched(labh):
    """lab2 was set up by hand (no deploy tool), then broken the incident's way: code edited in
    place under validate_timestamps=0 and storage left without the web user's ACLs."""
    h = labh["hosts"]["lab2"]
    app = Path(h.deploy_path)
    rel = app / "releases" / "hand1"
    shutil.rmtree(app / "releases", ignore_errors=True)
    (app / "current").unlink(missing_ok=True)
    shutil.rmtree(app / ".deploy", ignore_errors=True)
    rel.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(REPO / "sample-app"), str(rel)], check=True)
    composer_install(rel)
    (rel / "RELEASE").write_text("hand1\n")
    writable = [str(rel / "storage"), str(rel / "bootstrap" / "cache")]
    subprocess.run(["setfacl", "-R", "-m", "u:www-data:rwX,d:u:www-data:rwX", *writable], check=True)
    for c in ("config:cache", "route:cache"):
        subprocess.run(["php", "artisan", c], cwd=rel, check=True, capture_output=True)
    os.symlink("releases/hand1", app / "current")
    assert curl(h.health_url) == (200, "hand1")
    time.sleep(2.5)
    patch_controller(rel, "-hotfix", past=2.5)
    subprocess.run(["setfacl", "-bR", str(rel / "storage")], check=True)
    assert curl(h.health_url) == (200, "hand1")    # the hotfix "does not execute"

    stream = io.StringIO()
    t0 = time.monotonic()
    code = cli_health.heal("lab2", inventory=labh["inventory"], reporter=Reporter(live=False, stream=stream))
    TIMINGS["untouched_host_heal_seconds"] = round(time.monotonic() - t0, 3)
    out = stream.getvalue()
    assert code == 0, out
    assert "action: acl" in out and "action: opcache_reset" in out
    assert curl(h.health_url) == (200, "hand1-hotfix")
    assert as_web_user_can_write(rel / "storage" / "logs")
    hist = (app / ".deploy" / "history.jsonl").read_text().splitlines()
    assert json.loads(hist[-1])["action"] == "heal" and json.loads(hist[-1])["state"] == "healed"
    assert not (app / ".deploy" / "lock").exists()


def test_heal_gives_up_within_its_bound_on_code_that_always_throws(labh):
    h = labh["hosts"]["lab1"]
    rel = deploy(labh, "lab1", "r5")
    f = rel / "app" / "Http" / "Controllers" / "VersionController.php"
    original = f.read_text()
    tmp = f.with_name("x.new")
    tmp.write_text(original.replace("$file = base_path('RELEASE');\n\n        if (! is_file",
                                    "throw new \\RuntimeException('always broken');\n        if (! is_file", 1))
    os.replace(tmp, f)
    try:
        lab.fpm_reload("lab1", root=ROOT)
        assert curl(h.health_url)[0] == 500
        host, pipe = load(labh, "lab1")
        t0 = time.monotonic()
        r = remediate.heal_host(host, pipe, planner.Operator.here(), lambda e: None, attempts=2)
        assert not r.ok and r.state == "not healed"
        assert [a["action"] for a in r.actions] == ["fpm_reload"]        # then nothing new to try
        assert time.monotonic() - t0 < 30
        assert "HTTP 500" in r.message
        assert cli_health.heal("lab1", inventory=labh["inventory"], reporter=quiet()) == 1
    finally:
        tmp.write_text(original)
        os.replace(tmp, f)
    assert cli_health.heal("lab1", inventory=labh["inventory"], reporter=quiet()) == 0
    assert curl(h.health_url) == (200, "r5")


def test_heal_refuses_while_a_deploy_holds_the_lock(labh):
    lock = Path(labh["hosts"]["lab1"].deploy_path) / ".deploy" / "lock"
    lock.mkdir()
    (lock / "info").write_text(json.dumps({"user": "alice", "machine": "ci7", "pid": 4711, "release": "r9",
                                           "action": "deploy", "token": "alice@ci7:4711"}) + "\n2026-01-01T00:00:00Z\n")
    try:
        stream = io.StringIO()
        assert cli_health.heal("lab1", inventory=labh["inventory"], reporter=Reporter(live=False, stream=stream)) == 1
        out = stream.getvalue()
        assert "lab1: locked" in out and "alice@ci7 pid 4711" in out
        assert (lock / "info").read_text().startswith('{"user": "alice"')   # someone else's lock is left alone
        assert cli_health.health("lab1", inventory=labh["inventory"], reporter=quiet()) == 0   # read-only: no lock
    finally:
        shutil.rmtree(lock)


# ---------------------------------------------------------------------------------------------- in place
# strategy: in-place (issue 3): code directly under the deploy path, RELEASE at <deploy_path>/RELEASE,
# storage/ and .env inside it, no current symlink, hard-link snapshots in .deploy/snapshots/<id>.
# Lab nginx serves {lab deploy_path}/current/public, so an inventory whose deploy_path is that
# `current` as a REAL directory makes nginx serve the in-place tree.

INPLACE_PIPELINE = """\
source: {source}
strategy: in-place
keep_releases: 3
steps:
  - sync
  - ownership
  - composer
  - artisan: {{commands: [config:cache, route:cache, view:cache]}}
  - activate
  - verify: {{timeout: 3}}
"""
SHOW_RELEASE = "return response($release, 200)"


@dataclass(frozen=True)
class InPlaceHost:
    """A lab host as the in-place inventory names it: its app lives in the lab's current/ directory."""

    health_url: str
    deploy_path: str


@pytest.fixture(scope="module")
def labip(tmp_path_factory):
    os.environ["LAB_QUIET"] = "1"
    lab.down(IP_ROOT, purge=True)
    d = tmp_path_factory.mktemp("labinplace")
    inv = d / "lab.yml"
    hosts = lab.up(2, root=IP_ROOT, inventory=str(inv), ssh_base=IP_SSH_BASE, http_base=IP_HTTP_BASE)
    text = inv.read_text()
    for h in hosts:
        Path(h.deploy_path, "current").mkdir(parents=True, exist_ok=True)   # a real dir, not a symlink
        text = text.replace(f"deploy_path: {h.deploy_path}\n", f"deploy_path: {h.deploy_path}/current\n")
    inv.write_text(text)
    # Three versions of the app: i1; v2, whose /version appends "-v2" (what a stale pool would not
    # show); broken, whose /version always throws.
    src = {"i1": d / "src-i1", "v2": d / "src-v2", "broken": d / "src-broken"}
    for path in src.values():
        shutil.copytree(REPO / "sample-app", path, symlinks=True)
    for name, new in (("v2", "return response($release . '-v2', 200)"),
                      ("broken", "throw new \\RuntimeException('always broken');")):
        f = src[name] / "app" / "Http" / "Controllers" / "VersionController.php"
        assert SHOW_RELEASE in f.read_text()
        f.write_text(f.read_text().replace(SHOW_RELEASE, new))
    play = d / "inplace.yml"
    play.write_text(INPLACE_PIPELINE.format(source=src["i1"]))
    yield {"inventory": str(inv), "pipeline": str(play), "src": src, "dir": d,
           "hosts": {h.name: InPlaceHost(h.health_url, h.current) for h in hosts}}
    lab.down(IP_ROOT, purge=True)
    if os.environ.get("HEALTH_TIMINGS"):
        Path(os.environ["HEALTH_TIMINGS"]).write_text(json.dumps(TIMINGS, indent=2) + "\n")


def ip_deploy(labip, name, source, release, stream=None):
    """fab deploy, in process. Returns (exit code, the host's JSON report)."""
    report = labip["dir"] / f"report-{name}-{release}.json"
    code = cli.deploy(name, inventory=labip["inventory"], pipeline=labip["pipeline"], source=str(labip["src"][source]),
                      release=release, report=str(report),
                      reporter=Reporter(live=False, stream=stream if stream is not None else io.StringIO()))
    return code, json.loads(report.read_text())["hosts"][0]


def app_files(root):
    """sha256 of every file of the live tree (not .deploy/, not storage/), by relative path."""
    import hashlib
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in (".deploy", "storage") or not p.is_file() or p.is_symlink():
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cache_in_pool(url):
    """Request the URL (a few times, after opcache.file_update_protection=2 s) so the pool caches
    what it executes: with validate_timestamps=0 it never looks at those files again."""
    time.sleep(2.5)
    for _ in range(3):
        curl(url)


def test_in_place_stale_code_detected_by_verify_and_healed(labip, monkeypatch):
    """The issue's scenario: FPM pool with opcache.validate_timestamps=0, an in-place deploy whose
    pipeline has no reload or reset: stale code detected by verify and healed."""
    h = labip["hosts"]["lab1"]
    lab.fpm_restart("lab1", root=IP_ROOT, validate_timestamps=0)
    code, rep = ip_deploy(labip, "lab1", "i1", "i1")
    assert code == 0, rep["message"]
    assert curl(h.health_url) == (200, "i1")
    assert not Path(h.deploy_path).is_symlink() and not Path(h.deploy_path, "current").exists()   # in place
    cache_in_pool(h.health_url)
    assert curl(h.health_url) == (200, "i1")

    heals = []
    real_heal = remediate.heal_detailed

    def timed(*a, **kw):
        r = real_heal(*a, **kw)
        heals.append(r)
        return r
    monkeypatch.setattr(remediate, "heal_detailed", timed)
    stream = io.StringIO()
    code, rep = ip_deploy(labip, "lab1", "v2", "i2", stream)
    out = stream.getvalue()
    assert code == 0, out
    assert rep["state"] == "deployed" and rep["message"] == "healed: opcache_reset"
    # verify's pool probe caught the stale code (HTTP alone passes: the old code also answers "i2")
    verifies = [s for s in rep["steps"] if s["kind"] == "verify"]
    assert [s["status"] for s in verifies] == ["failed", "ok"]
    assert "the pool runs stale code" in verifies[0]["commands"][-1]["output"]
    # the heal: one reset inside the pool, with its reason (the old code still served)
    assert [(a["action"], a["ok"]) for a in rep["actions"]] == [("opcache_reset", True)]
    why = rep["actions"][0]["why"]
    assert "the pool answers 'i2' but the code on disk answers 'i2-v2'" in why
    assert "cached script(s) changed on disk" in why and "VersionController.php" in why
    assert "action: opcache_reset — why: " in out and "healed: opcache_reset" in out
    assert "no live release" not in out and "current is missing" not in out
    assert curl(h.health_url) == (200, "i2-v2")
    # activation -> verified, the heal included: seconds
    assert rep["activated_to_verified"] is not None and rep["activated_to_verified"] < 20, rep["activated_to_verified"]
    assert len(heals) == 1 and heals[0].ok and heals[0].state == "healed"
    TIMINGS.setdefault("in_place_stale_code_heal_seconds", []).append(round(heals[0].duration, 3))
    TIMINGS.setdefault("in_place_stale_code_reset_action_seconds", []).append(rep["actions"][0]["duration"])
    TIMINGS.setdefault("in_place_activated_to_verified_seconds", []).append(rep["activated_to_verified"])
    print(f"\nin place, stale code: heal {heals[0].duration:.2f}s ({', '.join(f'{n} {t:.2f}s' for n, t in heals[0].phases)}),"
          f" activation -> verified {rep['activated_to_verified']:.2f}s")
    # the deploy kept a hard-link snapshot of i1 for rollback
    snap = Path(h.deploy_path, ".deploy", "snapshots", "i1")
    assert (snap / "RELEASE").read_text().strip() == "i1"
    assert "-v2" not in (snap / "app" / "Http" / "Controllers" / "VersionController.php").read_text()


def test_fab_health_passes_on_a_healthy_in_place_host(labip):
    h = labip["hosts"]["lab1"]
    if curl(h.health_url) != (200, "i2-v2"):
        code, _ = ip_deploy(labip, "lab1", "v2", "i2h")
        assert code == 0
    # A snapshot holds an earlier tree, with whatever owners and modes it had: not the live code.
    snaps = sorted(Path(h.deploy_path, ".deploy", "snapshots").iterdir())
    assert snaps, "the previous test's deploy leaves a snapshot"
    planted = snaps[0] / "app" / "Planted.php"
    planted.write_text("<?php // edited on the server by hand, long ago\n")
    shutil.chown(planted, "www-data", "www-data")
    os.chmod(planted, 0o666)
    try:
        for pipeline in (labip["pipeline"], None):   # the pipeline decides the layout; without one, the host
            stream = io.StringIO()
            code = cli_health.health("lab1", inventory=labip["inventory"], pipeline=pipeline, as_json=True,
                                     reporter=Reporter(live=False, stream=stream))
            data = json.loads(stream.getvalue())["hosts"][0]
            fs = {f["check"]: f for f in data["findings"]}
            assert code == 0, {c: f["evidence"] for c, f in fs.items() if f["status"] != "pass"}
            assert data["layout"] == "in-place"
            assert not [c for c, f in fs.items() if f["status"] == "fail"]
            for check in ("ownership", "fpm", "socket", "nginx", "running_code"):
                assert fs[check]["status"] == "pass", (check, fs[check]["evidence"])
            assert "the pool executes i2" in fs["running_code"]["evidence"] and "in place" in fs["running_code"]["evidence"]
            assert "'i2-v2'" in fs["running_code"]["evidence"]
            assert "$realpath_root not required" in fs["nginx"]["evidence"]
            assert "Planted.php" not in json.dumps(fs["ownership"])
            if pipeline:
                assert fs["bootstrap_cache"]["status"] == "pass"
                assert f"built for {h.deploy_path} (in place)" in fs["bootstrap_cache"]["evidence"]
        text = io.StringIO()
        assert cli_health.health("lab1", inventory=labip["inventory"], pipeline=labip["pipeline"],
                                 reporter=Reporter(live=False, stream=text)) == 0
        assert "layout in-place" in text.getvalue()
    finally:
        planted.unlink()


def test_in_place_code_that_always_throws_is_rolled_back_to_its_snapshot(labip):
    h = labip["hosts"]["lab2"]
    code, rep = ip_deploy(labip, "lab2", "i1", "i1")
    assert code == 0, rep["message"]
    assert curl(h.health_url) == (200, "i1")
    before = app_files(h.deploy_path)
    assert "app/Http/Controllers/VersionController.php" in before and "bootstrap/cache/config.php" in before
    # i1's code cached in the pool (validate_timestamps=0): the broken release first looks like
    # stale code (the old controller answers the new RELEASE id), so healing runs its full bound.
    cache_in_pool(h.health_url)

    stream = io.StringIO()
    t0 = time.monotonic()
    code, rep = ip_deploy(labip, "lab2", "broken", "bad1", stream)
    elapsed = time.monotonic() - t0
    out = stream.getvalue()
    assert code == 1, out
    assert rep["state"] == "rolled back" and rep["previous"] == "i1"
    assert "healing did not help (opcache_reset, fpm_reload)" in rep["message"]
    assert "rolled back to i1" in rep["message"]
    # remediation gave up within its bound (2 rounds): the reset of the stale pool, then, the new
    # code answering HTTP 500, a reload; nothing new to try after that
    heal_actions = [(a["action"], a["attempt"]) for a in rep["actions"] if a["action"] != "rollback"]
    assert heal_actions == [("opcache_reset", 1), ("fpm_reload", 2)]
    assert "cached script(s) changed on disk" in rep["actions"][0]["why"]
    assert "HTTP 500" in rep["actions"][1]["why"]
    assert [a["action"] for a in rep["actions"]][-1] == "rollback" and rep["actions"][-1]["to"] == "i1"
    assert "still failing: running code: HTTP 500" in out
    assert elapsed < 120, elapsed
    TIMINGS["in_place_broken_release_to_rolled_back_seconds"] = round(rep["duration"], 3)
    # the snapshot is back: i1 served, the same bytes as before the failed deploy
    assert curl(h.health_url) == (200, "i1")
    assert app_files(h.deploy_path) == before
    assert Path(h.deploy_path, "RELEASE").read_text().strip() == "i1"
    bad = Path(h.deploy_path, ".deploy", "bad", "bad1")
    assert bad.is_file() and "healing did not help" in bad.read_text()
    hist = [json.loads(l) for l in Path(h.deploy_path, ".deploy", "history.jsonl").read_text().splitlines()]
    assert hist[-1]["action"] == "auto-rollback" and hist[-1]["release"] == "i1" and hist[-1]["from"] == "bad1"
    # and the rolled-back host is healthy as far as the running code goes
    hst, pipe = cli.load("lab2", labip["inventory"], labip["pipeline"])
    r = cli_health.check_host(hst[0], pipe)
    fs = {f.check: f for f in r["findings"]}
    assert fs["running_code"].status == "pass", fs["running_code"].evidence
