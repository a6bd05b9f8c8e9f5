"""A deploy user that is not root, as on most production servers: code owned by `deploy`,
privileged commands through `sudo -n` limited to single programs in sudoers."""

import json
import re
import pwd
import subprocess
from pathlib import Path

import pytest

from deploy import lab as labmod
from helpers import PROJECT, fab, slot_port, slot_root, write
from labfixture import app_copy, needs_root, start

pytestmark = [needs_root, pytest.mark.lab]
ROOT = slot_root("/srv/labuser")
SUDOERS = Path("/etc/sudoers.d/deploy-lab-test")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labuser")
    the_lab = start(ROOT, 1, slot_port(3000), slot_port(9000), tmp)
    # The deploy user: may use the pool's socket (group www-data, as on Debian), nothing else.
    if subprocess.run(["id", "deploy"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "deploy"], check=True)
    # '*': no password, but not "locked" ('!'), which sshd without PAM refuses even for keys.
    subprocess.run(["usermod", "-p", "*", "-a", "-G", "www-data", "deploy"], check=True)
    # Only the programs the tool needs as root: setfacl (ownership step) and kill (FPM reload).
    SUDOERS.write_text("deploy ALL=(root) NOPASSWD: /usr/bin/setfacl, /bin/kill, /usr/bin/kill\n")
    SUDOERS.chmod(0o440)
    subprocess.run(["visudo", "-cf", str(SUDOERS)], check=True, capture_output=True)
    # sshd reads authorized_keys as the logging-in user: let deploy read the (public) keys file.
    Path(ROOT, "ssh").chmod(0o711)
    Path(ROOT, "ssh", "authorized_keys").chmod(0o644)
    info = the_lab.hosts["lab1"]
    subprocess.run(["chown", "deploy:deploy", info.deploy_path], check=True)
    text = Path(the_lab.inventory).read_text()
    text = text.replace("  user: root", "  user: deploy")
    text = text.replace(f'reload: kill -USR2 "$(cat {info.fpm_pid_file})"',
                        f'reload: sudo -n kill -USR2 "$(cat {info.fpm_pid_file})"')
    assert "user: deploy" in text and "sudo -n kill" in text
    the_lab.inventory = str(write(tmp / "deploy-user.yml", text))
    yield the_lab
    SUDOERS.unlink(missing_ok=True)
    labmod.down(ROOT, purge=True)


def pipe(tmp_path, source=None):
    return str(write(tmp_path / "p.yml", f"""
        remediate: false
        source: {source or PROJECT / 'sample-app'}
        steps:
          - sync
          - shared
          - ownership
          - composer
          - artisan: {{commands: [config:cache, route:cache, view:cache, event:cache]}}
          - activate
          - opcache_reset
          - fpm_reload
          - verify: {{timeout: 10}}
    """))


def as_user(user, *cmd):
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True).returncode == 0


def test_deploy_user_deploys_with_sudo_for_single_programs_only(lab, tmp_path):
    report = tmp_path / "r.json"
    r = fab("deploy", "--host", "lab1", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path),
            "--release", "u1", "--report", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get("lab1") == (200, "u1")
    commands = [c["command"] for h in json.loads(report.read_text())["hosts"] for s in h["steps"] for c in s["commands"]]
    sudo = [c for c in commands if "sudo" in c]
    # Each sudo runs one program (an ACL skip test around it runs as deploy, without sudo).
    programs = [p for c in sudo for p in re.findall(r"(?:^|; else |; then )sudo -n (\S+) ", c)]
    assert sudo and len(programs) == sum(c.count("sudo") for c in sudo), sudo
    assert set(programs) == {"setfacl", "kill"}, sudo
    assert any(c.startswith("cd ") and "artisan config:cache" in c for c in commands)

    rel = lab.deploy_path("lab1") / "releases" / "u1"
    deploy_uid = pwd.getpwnam("deploy").pw_uid
    assert (rel / "artisan").stat().st_uid == deploy_uid
    assert (rel / "bootstrap" / "cache" / "config.php").stat().st_uid == deploy_uid  # artisan ran as deploy
    assert not as_user("www-data", "test", "-w", str(rel / "app" / "Http" / "Kernel.php"))
    assert not as_user("www-data", "test", "-w", str(rel / "routes"))
    for d in ("storage/logs", "storage/framework/views", "bootstrap/cache"):
        assert as_user("www-data", "test", "-w", str(rel / d)), d
        assert as_user("deploy", "test", "-w", str(rel / d)), d


def test_second_deploy_fixes_acls_on_files_the_web_user_created(lab, tmp_path):
    # A log file created by the app (owner www-data): only sudo setfacl can grant on it.
    logs = lab.deploy_path("lab1") / "shared" / "storage" / "logs"
    subprocess.run(["runuser", "-u", "www-data", "--", "sh", "-c", f"echo x > {logs}/worker.log"], check=True)
    changed = app_copy(tmp_path, edit={"resources/views/welcome.blade.php": lambda s: s + "\n<!-- u2 -->\n"})
    r = fab("deploy", "--host", "lab1", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path, changed),
            "--release", "u2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get("lab1") == (200, "u2")
    assert as_user("deploy", "test", "-w", str(logs / "worker.log"))
    r = fab("rollback", "--host", "lab1", "--inventory", lab.inventory, "--pipeline", pipe(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get("lab1") == (200, "u1")
