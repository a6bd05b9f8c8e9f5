"""Real behaviour of deploy/lab/ and sample-app/: real sshd, php-fpm, nginx, Laravel.

Runs on its own root and ports (/srv/labtest, ssh 2300+i, http 8100+i) so it does not
clash with a lab started by `fab lab.up` (/srv/lab, 2200+i, 8000+i). Needs root.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from helpers import composer_install, slot_port, slot_root

REPO = Path(__file__).resolve().parents[1]
SAMPLE_APP = REPO / "sample-app"
ROOT = slot_root("/srv/labtest")
SSH_BASE = slot_port(2300)
HTTP_BASE = slot_port(8100)
N = 2

pytestmark = [pytest.mark.lab, pytest.mark.skipif(
    not all(Path(p).exists() for p in ("/usr/sbin/sshd", "/usr/sbin/php-fpm8.2", "/usr/sbin/nginx", "/usr/bin/php")),
    reason="sshd, php-fpm8.2, nginx or php missing: run deploy.lab.ensure_packages() first",
)]


# deploy/lab/ needs nothing from the rest of the deploy package (deploy/__init__.py is empty).
lab = importlib.import_module("deploy.lab")


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 30)
    return subprocess.run(cmd, **kw)


def curl(url: str) -> tuple[int, str]:
    r = run(["curl", "-s", "--max-time", "5", "-o", "-", "-w", "\n%{http_code}", url])
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def install_release(deploy_path: str, release: str) -> Path:
    """What a deploy does, by hand: copy the app, RELEASE id, ACLs, caches (not the switch)."""
    rel = Path(deploy_path) / "releases" / release
    rel.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(rel, ignore_errors=True)
    run(["cp", "-a", str(SAMPLE_APP), str(rel)]).check_returncode()
    composer_install(rel)
    (rel / "RELEASE").write_text(release + "\n")
    writable = [str(rel / "storage"), str(rel / "bootstrap" / "cache")]
    run(["setfacl", "-R", "-m", "u:www-data:rwX", *writable]).check_returncode()
    run(["setfacl", "-R", "-d", "-m", "u:www-data:rwX", *writable]).check_returncode()
    for cmd in ("config:cache", "route:cache"):
        r = run(["php", "artisan", cmd], cwd=rel)
        assert r.returncode == 0, f"artisan {cmd} in {rel}: {r.stdout}{r.stderr}"
    assert (rel / "bootstrap" / "cache" / "routes-v7.php").is_file()
    return rel


def switch(deploy_path: str, release: str) -> None:
    cur = Path(deploy_path) / "current"
    tmp = Path(deploy_path) / "current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/{release}", tmp)
    os.replace(tmp, cur)


def lab_processes(root: str) -> list[str]:
    """Every process whose command line mentions root (masters carry their config path)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if root + "/" in cmd:
                out.append(f"{p.name}: {cmd}")
    return out


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def inventory_path(tmp_path_factory):
    return tmp_path_factory.mktemp("lab") / "hosts" / "lab.yml"


@pytest.fixture(scope="module")
def hosts(inventory_path):
    if os.geteuid() != 0:
        pytest.skip("not root: the lab starts sshd, nginx (user www-data) and php-fpm pools as root")
    os.environ["LAB_QUIET"] = "1"
    lab.down(ROOT, purge=True)  # leftovers of an interrupted run
    t0 = time.monotonic()
    hs = lab.up(N, root=ROOT, inventory=str(inventory_path), ssh_base=SSH_BASE, http_base=HTTP_BASE)
    print(f"up({N}) took {time.monotonic() - t0:.2f}s")
    yield hs
    lab.down(ROOT, purge=True)


def test_up_starts_hosts_and_writes_inventory(hosts, inventory_path):
    assert [h.name for h in hosts] == ["lab1", "lab2"]
    for i, h in enumerate(hosts, 1):
        assert h.ssh_port == SSH_BASE + i and h.http_port == HTTP_BASE + i
        assert h.pids.sshd and h.pids.fpm and h.pids.nginx
        assert Path(h.socket).is_socket()
        assert Path(h.deploy_path).is_dir()
        assert oct(Path(h.deploy_path).stat().st_mode & 0o777) == "0o755"
    assert oct(Path(ROOT).stat().st_mode & 0o777) == "0o755"

    text = inventory_path.read_text()
    assert text.startswith("#") and "fab lab.up" in text.splitlines()[0]
    inv = yaml.safe_load(text)
    assert inv["defaults"] == {
        "user": "root",
        "key": f"{ROOT}/ssh/id_ed25519",
        "known_hosts": f"{ROOT}/ssh/known_hosts",
        "web_user": "www-data",
    }
    assert inv["groups"] == {"lab": ["lab1", "lab2"]}
    assert inv["hosts"]["lab2"] == {
        "address": "127.0.0.1",
        "port": SSH_BASE + 2,
        "deploy_path": f"{ROOT}/lab2/app",
        "fpm": {
            "socket": f"{ROOT}/lab2/php-fpm.sock",
            "reload": f'kill -USR2 "$(cat {ROOT}/lab2/fpm.pid)"',
        },
        "health_url": f"http://127.0.0.1:{HTTP_BASE + 2}/version",
    }

    kh = Path(ROOT, "ssh", "known_hosts").read_text().splitlines()
    assert sorted(line.split()[0] for line in kh) == [f"[127.0.0.1]:{SSH_BASE + i}" for i in (1, 2)]
    assert all(line.split()[1] == "ssh-ed25519" for line in kh)


def test_ssh_key_login_with_strict_host_keys(hosts):
    for h in hosts:
        r = run(
            [
                "ssh", "-i", h.key,
                "-o", f"UserKnownHostsFile={h.known_hosts}",
                "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5",
                "-p", str(h.ssh_port),
                "root@127.0.0.1", "true",
            ]
        )
        assert r.returncode == 0, f"{h.name}: {r.stderr}"
    # and a wrong host key is refused: lab2's key presented for lab1's port
    kh = Path(hosts[0].known_hosts).read_text()
    bad = Path(ROOT, "ssh", "known_hosts.bad")
    k1, k2 = (line.split()[2] for line in sorted(kh.splitlines()))
    bad.write_text(kh.replace(k1, k2, 1) if k1 != k2 else kh)
    r = run(["ssh", "-i", hosts[0].key, "-o", f"UserKnownHostsFile={bad}", "-o", "StrictHostKeyChecking=yes",
             "-o", "BatchMode=yes", "-p", str(hosts[0].ssh_port), "root@127.0.0.1", "true"])
    assert r.returncode == 255 and "IDENTIFICATION HAS CHANGED" in r.stderr


def test_release_served_through_nginx_and_fpm(hosts):
    for h in hosts:
        install_release(h.deploy_path, "r1")
        switch(h.deploy_path, "r1")
        assert curl(f"http://127.0.0.1:{h.http_port}/version") == (200, "r1")
        assert curl(f"http://127.0.0.1:{h.http_port}/up") == (200, "ok")
        code, body = curl(f"http://127.0.0.1:{h.http_port}/")
        assert code == 200 and 'id="release">r1<' in body
    assert not Path(hosts[0].php_error_log).exists() or "Fatal" not in Path(hosts[0].php_error_log).read_text()


def test_symlink_fault_and_fpm_reload(hosts):
    """$document_root + validate_timestamps=0 keeps serving the old release after the
    switch (the incident); an FPM reload or $realpath_root serves the new one."""
    h = hosts[0]
    url = f"http://127.0.0.1:{h.http_port}/version"
    install_release(h.deploy_path, "r2")

    lab.nginx_reconfigure("lab1", realpath_root=False, root=ROOT)
    assert "$document_root$fastcgi_script_name" in Path(h.nginx_conf).read_text()
    switch(h.deploy_path, "r1")
    assert curl(url) == (200, "r1")
    switch(h.deploy_path, "r2")
    assert curl(url) == (200, "r1"), "stale release expected with $document_root and validate_timestamps=0"

    old_workers = set(lab.host_info("lab1", root=ROOT).pids.fpm_workers)
    info = lab.fpm_reload("lab1", root=ROOT)  # master pid may change: daemonize=yes re-forks
    assert info.pids.fpm and len(info.pids.fpm_workers) == 2
    assert not old_workers & set(info.pids.fpm_workers)
    assert curl(url) == (200, "r2")

    lab.nginx_reconfigure("lab1", realpath_root=True, root=ROOT)
    switch(h.deploy_path, "r1")
    assert curl(url) == (200, "r1")
    switch(h.deploy_path, "r2")
    assert curl(url) == (200, "r2")


def test_stop_and_start_sshd(hosts):
    h = hosts[1]
    assert lab.stop_sshd("lab2", root=ROOT) is True
    assert not port_open(h.ssh_port)
    info = lab.start_sshd("lab2", root=ROOT)
    assert info.pids.sshd and port_open(h.ssh_port)


def test_up_again_is_idempotent(hosts, inventory_path):
    before = {i.name: (i.pids.sshd, i.pids.fpm, i.pids.nginx) for i in lab.hosts(ROOT)}
    again = lab.up(N, root=ROOT, inventory=str(inventory_path), ssh_base=SSH_BASE, http_base=HTTP_BASE)
    after = {i.name: (i.pids.sshd, i.pids.fpm, i.pids.nginx) for i in again}
    assert before == after
    # running hosts keep their settings (lab1's nginx was reconfigured above)
    assert "$realpath_root$fastcgi_script_name" in Path(hosts[0].nginx_conf).read_text()
    # still serving
    assert curl(hosts[1].health_url) == (200, "r1")


def test_down_purge_leaves_nothing(hosts):
    lab.down(ROOT, purge=True)
    assert lab_processes(ROOT) == []
    assert not Path(ROOT).exists()
    for h in hosts:
        assert not port_open(h.ssh_port) and not port_open(h.http_port)
    lab.down(ROOT, purge=True)  # again: nothing to do, no error


def test_sample_app_artisan_with_symlinked_storage_and_env(tmp_path):
    """config/route/view/event cache and optimize:clear exit 0 in a copy whose storage
    and .env are symlinks into a shared dir; /version is 500 without RELEASE."""
    app = tmp_path / "releases" / "r9"
    shared = tmp_path / "shared"
    app.parent.mkdir()
    run(["cp", "-a", str(SAMPLE_APP), str(app)]).check_returncode()
    composer_install(app)
    shared.mkdir()
    shutil.move(str(app / "storage"), str(shared / "storage"))
    (app / "storage").symlink_to(shared / "storage")
    (shared / ".env").write_text((SAMPLE_APP / ".env.example").read_text().replace("APP_NAME=sample-app", "APP_NAME=from-dotenv"))
    (app / ".env").symlink_to(shared / ".env")

    r = run(["php", "artisan", "key:generate", "--force"], cwd=app)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "APP_KEY=base64:" in (shared / ".env").read_text()
    for cmd in ("config:cache", "route:cache", "view:cache", "event:cache"):
        r = run(["php", "artisan", cmd], cwd=app)
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    cache = app / "bootstrap" / "cache"
    for f in ("config.php", "routes-v7.php", "events.php", "services.php", "packages.php"):
        assert (cache / f).is_file(), f
    assert any((shared / "storage" / "framework" / "views").glob("*.php"))

    probe = (
        "require 'bootstrap/autoload.php'; $app = require 'bootstrap/app.php';"
        "$k = $app->make(Illuminate\\Contracts\\Http\\Kernel::class);"
        "$r = $k->handle(Illuminate\\Http\\Request::create('/version'));"
        "echo $r->getStatusCode(), ' ', trim($r->getContent()), ' ', config('app.name'), ' ', var_export(config('app.debug'), true);"
    )
    r = run(["php", "-r", probe], cwd=app)
    assert r.stdout == "500 RELEASE file missing from-dotenv false", r.stdout + r.stderr
    (app / "RELEASE").write_text("r9\n")
    r = run(["php", "-r", probe], cwd=app)
    assert r.stdout == "200 r9 from-dotenv false", r.stdout + r.stderr

    r = run(["php", "artisan", "optimize:clear"], cwd=app)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (cache / "config.php").exists() and not (cache / "routes-v7.php").exists()
