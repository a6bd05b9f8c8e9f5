"""docs/laravel.md's server setup, run as written: its layout commands, its sudoers file and its
nginx server block, taken out of the document, installed on a lab host for a non-root deploy
user, and `fab plan --check`, `fab deploy`, `fab health` and `fab heal` run through them. So the
page cannot drift from what works.

What has to change for the lab (the page lists it too, "What the lab test proves"):
- the user is USER, not `deploy`, and the paths, the socket and the port are the lab host's;
- the lab's PHP-FPM is not a systemd service: the inventory's fpm.reload stays the lab's
  `kill -USR2 "$(cat PIDFILE)"`, with `sudo -n` in front as the page says to write it (the
  page's `kill` rule allows it), instead of `sudo -n systemctl reload php8.2-fpm`; the
  systemctl rule is installed but no lab command can use it;
- the lab's supervisord has its own config file: `supervisorctl -c CONF restart 'app:*'`, in
  the inventory (the page's hosts/example.yml value with `-c CONF`) and in the rule;
- the lab's nginx runs with its own prefix: `include fastcgi_params` names
  /etc/nginx/fastcgi_params, and it listens on the lab port;
- the lab's sshd runs without PAM: the password field is `*`, not adduser's locked `!`.
"""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from deploy import lab as labmod
from helpers import PROJECT, SLOT, fab, slot_port, slot_root, write
from labfixture import needs_root, start, wait_for

pytestmark = [needs_root, pytest.mark.lab]
DOC = PROJECT / "docs" / "laravel.md"
ROOT = slot_root("/srv/labdocs")
USER = "deploy-docs"   # not `deploy`: tests/test_deploy_user_lab.py gives that one its own rules
SUDOERS = Path(f"/etc/sudoers.d/deploy-docs-test-s{SLOT}")
HEALTH_RULES = "# fab health:"   # where the page's optional health rules start


def doc_block(marker):
    """The fenced code block of docs/laravel.md whose first line starts with `marker`."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", DOC.read_text(), re.S | re.M)
    found = [b for b in blocks if b.startswith(marker)]
    assert len(found) == 1, f"docs/laravel.md: {len(found)} blocks start with {marker!r}"
    return found[0]


def replace_once(text, old, new):
    """A substitution for the lab that must apply exactly once (else the page changed: look)."""
    assert text.count(old) == 1, f"docs/laravel.md changed: {old!r} appears {text.count(old)} times"
    return text.replace(old, new)


def host_value(the_lab, key):
    """A setting of the lab host lab1 (the one place that knows how labfixture hands hosts out)."""
    return getattr(the_lab.hosts["lab1"], key)


def sudoers_text(conf, health=True):
    text = doc_block("# /etc/sudoers.d/deploy")
    if not health:
        text = text[:text.index(HEALTH_RULES)]
    text = re.sub(r"(?m)^deploy ", f"{USER} ", text)
    return replace_once(text, "/usr/bin/supervisorctl restart", f"/usr/bin/supervisorctl -c {conf} restart")


def install_sudoers(text):
    candidate = SUDOERS.with_name(SUDOERS.name + ".new")   # sudo skips names with a '.'
    candidate.write_text(text)
    candidate.chmod(0o440)
    check = subprocess.run(["visudo", "-cf", str(candidate)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    candidate.rename(SUDOERS)


def allowed_programs():
    """The programs the page's sudoers rules name for root (basenames)."""
    programs = set()
    for line in doc_block("# /etc/sudoers.d/deploy").splitlines():
        m = re.match(r"deploy ALL=\(root\) NOPASSWD: (.*)", line)
        if m:
            programs |= {rule.split()[0].rsplit("/", 1)[1] for rule in m.group(1).split(", ")}
    return programs


def sudo_programs(commands):
    return {m.group(1).rsplit("/", 1)[-1] for c in commands for m in re.finditer(r"sudo -n (?:-- )?(\S+)", c)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("labdocs")
    the_lab = start(ROOT, 1, slot_port(3900), slot_port(9900), tmp, stack=True,
                    db_port=slot_port(3910), redis_port=slot_port(3920))
    try:
        inv = yaml.safe_load(Path(the_lab.inventory).read_text())
        host = inv["hosts"]["lab1"]
        deploy_path, socket = host["deploy_path"], host["fpm"]["socket"]
        conf = shlex.split(host["workers"]["restart"])[2]   # supervisorctl -c CONF restart app:*
        port = int(host["health_url"].split(":")[2].split("/")[0])

        # The deploy user (docs: "The deploy user"); '*' instead of '!' for the lab's PAM-less sshd.
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            subprocess.run(["adduser", "--disabled-password", "--gecos", "", USER], check=True, capture_output=True)
        subprocess.run(["usermod", "-p", "*", "-a", "-G", "www-data", USER], check=True)
        # sshd reads the lab's one authorized_keys file as the logging-in user.
        Path(ROOT, "ssh").chmod(0o711)
        Path(ROOT, "ssh", "authorized_keys").chmod(0o644)

        # The layout, run as written: the lab made shared/.env (root-owned), which becomes the
        # operator's first .env placed by the page's commands.
        shared_env = Path(deploy_path, "shared", ".env")
        (tmp / ".env").write_text(shared_env.read_text())
        shared_env.unlink()
        layout = doc_block("# the layout")
        layout = re.sub(r"(?<=-[og] )deploy\b", USER, layout).replace("/var/www/app", deploy_path)
        r = subprocess.run(["sh", "-eu", "-c", layout], cwd=tmp, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        st = shared_env.stat()
        assert (st.st_mode & 0o777, Path(deploy_path).owner(), shared_env.owner(), shared_env.group()) == \
               (0o640, USER, USER, "www-data")

        install_sudoers(sudoers_text(conf))

        # The nginx server block, as the lab host's server.
        block = doc_block("# /etc/nginx/sites-available/app")
        block = replace_once(block, "listen 80;", f"listen 127.0.0.1:{port};")
        block = replace_once(block, "    listen [::]:80;\n", "")
        block = replace_once(block, "root /var/www/app/current/public;", f"root {deploy_path}/current/public;")
        block = replace_once(block, "unix:/run/php/php8.2-fpm.sock", f"unix:{socket}")
        block = replace_once(block, "include fastcgi_params;", "include /etc/nginx/fastcgi_params;")
        nginx_conf = Path(host_value(the_lab, "nginx_conf"))
        text = nginx_conf.read_text()
        start_at, end_at = text.index("    server {"), text.rindex("}")
        nginx_conf.write_text(text[:start_at] + "\n".join("    " + l if l else l for l in block.splitlines()) + "\n" + text[end_at:])
        nginx = ["/usr/sbin/nginx", "-c", str(nginx_conf), "-p", host_value(the_lab, "dir") + "/",
                 "-e", host_value(the_lab, "nginx_error_log")]
        for extra in (["-t"], ["-s", "reload"]):
            r = subprocess.run(nginx + extra, capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr
        # The page's block denies dot files; the lab's own block did not: this is the new one.
        assert wait_for(lambda: the_lab.get("lab1", "/.env")[0] == 403, timeout=20)

        # The inventory: the lab's, for USER, with the page's commands (adapted as said above).
        text = Path(the_lab.inventory).read_text()
        text = replace_once(text, "  user: root", f"  user: {USER}")
        text = replace_once(text, "reload: kill -USR2", "reload: sudo -n kill -USR2")
        example = yaml.safe_load((PROJECT / "hosts" / "example.yml").read_text())["defaults"]["workers"]["restart"]
        restart = replace_once(example, "supervisorctl restart", f"supervisorctl -c {conf} restart")
        text = re.sub(r"(?m)^      restart: .*$", lambda _: f"      restart: {json.dumps(restart)}", text)
        assert restart in yaml.safe_load(text)["hosts"]["lab1"]["workers"]["restart"]
        the_lab.inventory = str(write(tmp / "docs-user.yml", text))
        the_lab.conf = conf
        yield the_lab
    finally:
        SUDOERS.unlink(missing_ok=True)
        labmod.down(ROOT, purge=True)


def run(the_lab, *args, **kw):
    return fab(*args, "--host", "lab1", "--inventory", the_lab.inventory, **kw)


def health(the_lab):
    r = run(the_lab, "health", "--json")
    assert r.returncode in (0, 1), r.stdout + r.stderr
    host = json.loads(r.stdout)["hosts"][0]
    assert host["error"] is None, host["error"]
    return r.returncode, {f["check"]: f for f in host["findings"]}


def failing(findings):
    return {k: f["evidence"] for k, f in findings.items() if f["status"] == "fail"}


def test_deploy_through_the_documented_rules(lab, tmp_path):
    report = tmp_path / "r.json"
    r = run(lab, "deploy", "--release", "d1", "--report", str(report))
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.get("lab1") == (200, "d1")
    steps = {s["name"]: s for h in json.loads(report.read_text())["hosts"] for s in h["steps"]}
    assert {"migrate", "precheck", "workers"} <= set(steps)
    commands = [c["command"] for s in steps.values() for c in s["commands"]]
    used = sudo_programs(commands)
    assert {"setfacl", "supervisorctl"} <= used, used
    assert used <= allowed_programs(), used - allowed_programs()
    release = Path(yaml.safe_load(Path(lab.inventory).read_text())["hosts"]["lab1"]["deploy_path"]) / "releases" / "d1"
    assert (release / "artisan").owner() == USER
    as_web = lambda *cmd: subprocess.run(["runuser", "-u", "www-data", "--", *cmd], capture_output=True).returncode == 0
    assert not as_web("test", "-w", str(release / "routes" / "web.php"))
    assert as_web("test", "-w", str(release / "storage" / "logs")) and as_web("test", "-w", str(release / "bootstrap" / "cache"))


def test_plan_check_finds_every_sudo_command_allowed(lab):
    # After the first deploy (the page runs it before): the sudo rules are what this test is about.
    r = run(lab, "plan", "--check", "--json", "--release", "d0")
    assert r.returncode == 0, r.stdout + r.stderr
    sudo = json.loads(r.stdout)["check"]["hosts"][0]["sudo"]
    assert sudo["needed"] and sudo["refused"] == [] and sudo["unchecked"] == [], sudo
    assert any(c.startswith("setfacl -L -R -m") for c in sudo["checked"]), sudo
    assert f"supervisorctl -c {lab.conf} restart 'app:*'" in sudo["checked"], sudo   # workers.restart
    assert "kill" in sudo["checked"], sudo                                          # the lab's fpm.reload


def test_health_passes_with_the_full_evidence(lab):
    code, findings = health(lab)
    assert code == 0 and not failing(findings), failing(findings)
    nginx = findings["nginx"]
    assert nginx["status"] == "pass" and "$realpath_root" in nginx["evidence"], nginx
    assert findings["ownership"]["status"] == "pass" and "checked as www-data" in findings["ownership"]["evidence"]
    assert findings["workers"]["status"] == "pass", findings["workers"]


def test_heal_repairs_a_broken_host_through_the_documented_rules(lab):
    deploy_path = Path(yaml.safe_load(Path(lab.inventory).read_text())["hosts"]["lab1"]["deploy_path"])
    release = deploy_path / "releases" / "d1"
    writable = [str(release / "bootstrap" / "cache"), str(deploy_path / "shared" / "storage")]
    # The incident's host: writable dirs root-owned without ACLs, code edited in place under
    # validate_timestamps=0 (stale OPCache, a route cache older than its routes), workers down.
    subprocess.run(["setfacl", "-R", "-b", *writable], check=True)
    subprocess.run(["chown", "-R", "root:root", *writable], check=True)
    subprocess.run(["chmod", "-R", "go-w", *writable], check=True)
    with open(release / "routes" / "web.php", "a") as f:
        f.write("\n// edited on the server\n")
    subprocess.run(["/usr/bin/supervisorctl", "-c", lab.conf, "stop", "app:*"], check=True, capture_output=True)
    code, findings = health(lab)
    assert code == 1 and {"ownership", "bootstrap_cache", "workers"} <= set(failing(findings)), failing(findings)

    r = run(lab, "heal", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    host = json.loads(r.stdout)["hosts"][0]
    actions = {a["action"]: a for a in host["actions"]}
    assert {"acl", "artisan", "opcache_reset", "workers"} <= set(actions), list(actions)
    assert all(a["ok"] for a in actions.values()), actions
    used = sudo_programs(c if isinstance(c, str) else c["command"] for a in actions.values() for c in a["commands"])
    assert {"mkdir", "setfacl", "find", "supervisorctl"} <= used, used
    assert used <= allowed_programs(), used - allowed_programs()

    code, findings = health(lab)
    assert code == 0 and not failing(findings), failing(findings)
    assert lab.get("lab1") == (200, "d1")


def test_health_without_the_optional_rules_still_passes_and_says_what_it_could_not_check(lab):
    install_sudoers(sudoers_text(lab.conf, health=False))
    try:
        code, findings = health(lab)
        assert code == 0 and not failing(findings), failing(findings)
        assert findings["nginx"]["status"] == "warn" and "cannot run nginx -T" in findings["nginx"]["evidence"]
        assert findings["ownership"]["status"] == "warn" and "cannot test files as www-data" in findings["ownership"]["evidence"]
        assert findings["workers"]["status"] == "pass", findings["workers"]
    finally:
        install_sudoers(sudoers_text(lab.conf))
