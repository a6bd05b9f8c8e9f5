"""Plans are data: YAML in, exact commands out. No SSH anywhere in this file."""

import shlex
import subprocess
import sys

from deploy import inventory, pipeline, plan
from deploy.commands import MASK
from helpers import PROJECT, write

INV = """
defaults:
  user: {user}
  key: /keys/id
  known_hosts: /keys/known_hosts
  fpm: {{socket: "{socket}", reload: sudo systemctl reload php8.3-fpm}}
  health_url: http://127.0.0.1/up
hosts:
  web1: {{address: 10.0.0.11, deploy_path: "{path}"}}
"""

PIPE = """
source: app
keep_releases: 4
steps:
  - sync: {{exclude: ["{exclude}"]}}
  - shared
  - ownership
  - artisan: {{commands: ["config:cache", "route:cache"]}}
  - activate
  - opcache_reset
  - fpm_reload
  - verify
  - run:
      commands: ["php artisan queue:restart"]
      env: {{DB_PASSWORD: {{value: "{secret}", secret: true}}, MODE: "{mode}"}}
"""


def build(tmp_path, user="deploy", path="/var/www/app", socket="/run/php/fpm.sock", exclude=".git",
          secret="hunter2", mode="prod", release="r1"):
    (tmp_path / "app").mkdir(exist_ok=True)
    host = inventory.load(write(tmp_path / "hosts" / "h.yml", INV.format(user=user, path=path, socket=socket))).select("web1")[0]
    pipe = pipeline.load(write(tmp_path / "playbooks" / "p.yml", PIPE.format(exclude=exclude, secret=secret, mode=mode)))
    op = plan.Operator(user="ci", machine="runner", pid=42)
    return plan.deploy(host, pipe, release, op)


def commands(steps, name):
    return [c.render() for s in steps if s.name == name for c in s.commands]


def test_default_plan_exact_commands(tmp_path):
    steps = build(tmp_path)
    assert [s.name for s in steps] == ["lock", "prepare", "sync", "shared", "ownership", "artisan", "activate",
                                       "opcache_reset", "fpm_reload", "verify", "run", "finalize"]
    assert commands(steps, "artisan") == [
        "cd /var/www/app/releases/r1 && php artisan config:cache --no-interaction",
        "cd /var/www/app/releases/r1 && php artisan route:cache --no-interaction",
    ]
    assert commands(steps, "activate") == [
        "test -d /var/www/app/releases/r1 && printf '%s\\n' r1 > /var/www/app/releases/r1/RELEASE"
        " && ln -sfn releases/r1 /var/www/app/.current.tmp && mv -fT /var/www/app/.current.tmp /var/www/app/current"]
    assert commands(steps, "opcache_reset") == [
        "php -n /var/www/app/.deploy/bin/fpmctl.php reset --socket=/run/php/fpm.sock --deploy-path=/var/www/app"]
    assert commands(steps, "fpm_reload") == [
        "sudo systemctl reload php8.3-fpm",
        "php -n /var/www/app/.deploy/bin/fpmctl.php wait --socket=/run/php/fpm.sock --deploy-path=/var/www/app --timeout=30"]
    rsync = commands(steps, "sync")[0]
    assert rsync.startswith("rsync --archive --no-owner --no-group --delete")
    assert "--link-dest=/var/www/app/current/" in rsync
    assert "--exclude=/RELEASE" in rsync and "--exclude='/bootstrap/cache/*.php'" in rsync
    # rsync's remote shell tunnels through the tool's own (host-key-checked) SSH connection.
    assert f"-e '{sys.executable} -I -S {PROJECT / 'deploy' / 'rsh.py'}'" in rsync
    assert rsync.endswith("deploy@10.0.0.11:/var/www/app/releases/r1/")
    assert steps[2].commands[0].local and not steps[3].commands[0].local


def test_non_root_user_gets_sudo_for_privileged_commands_only(tmp_path):
    steps = build(tmp_path, user="deploy")
    acl = commands(steps, "ownership")[1]
    # A simple command goes to sudo as is, so sudoers can allow just setfacl; the test that skips
    # it (the dir has the default ACL already) runs as the deploy user.
    test, run = acl.split("; else ")
    assert test.startswith("if getfacl --omit-header /var/www/app/releases/r1/storage ") and "sudo" not in test
    assert run.startswith("sudo -n setfacl -L -R -m u:www-data:rwX,d:u:www-data:rwX,u:deploy:rwX")
    assert "'^default:user:www-data:rwx'" in test and "'^default:user:deploy:rwx'" in test
    assert not any(c.startswith("sudo") for c in commands(steps, "artisan"))
    root = build(tmp_path, user="root")
    assert commands(root, "ownership")[1:3] == [
        f"if getfacl --omit-header /var/www/app/releases/r1/{d} 2>/dev/null | grep -q '^default:user:www-data:rwx'; "
        f"then echo '{d}: has the default ACL already'; "
        f"else setfacl -L -R -m u:www-data:rwX,d:u:www-data:rwX /var/www/app/releases/r1/{d}; fi"
        for d in ("storage", "bootstrap/cache")]


def test_ownership_never_hands_the_code_tree_to_the_web_user(tmp_path):
    for line in commands(build(tmp_path, user="root"), "ownership"):
        assert "chown -R www-data" not in line
        assert "/releases/r1 " not in line + " " or "storage" in line or "bootstrap" in line


HOSTILE = ["/srv/my app", "/srv/a;rm -rf /x", "/srv/$(touch /tmp/pwned)", "/srv/`id`", "/srv/it's"]


def shell_words(text):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    if words[:4] == ["sudo", "-n", "sh", "-c"]:
        return words[:4] + shell_words(words[4])  # the root shell splits the inner script again
    return words


def test_hostile_values_come_out_quoted(tmp_path):
    for path in HOSTILE:
        steps = build(tmp_path, path=path, socket=path + "/fpm.sock", exclude="$(reboot)", mode="a b;c")
        checked = 0
        for step in steps:
            for cmd in step.commands:
                # A shell splits the text into words: every word touching the hostile value must
                # hold all of it (one quoted word), never a fragment followed by syntax.
                for word in shell_words(cmd.render()):
                    if "/srv/" in word:
                        assert path in word, (path, word, cmd.render())
                        checked += 1
        assert checked > 20
        words = shlex.split(commands(steps, "sync")[0])
        assert "--exclude=$(reboot)" in words
        assert f"--link-dest={path}/current/" in words
        assert "MODE='a b;c'" in commands(steps, "run")[0]


def test_hostile_path_is_inert_when_actually_run_by_a_shell(tmp_path):
    # Render a real command with a hostile path and run it with sh: nothing but mkdir happens.
    target = tmp_path / "x;touch pwned;$(touch pwned2)"
    steps = build(tmp_path, path=str(target))
    mkdir = steps[1].commands[0].render()
    subprocess.run(["sh", "-c", mkdir], cwd=tmp_path, check=True)
    assert (target / "releases").is_dir()
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_secrets_are_masked_in_plans_but_real_when_executed(tmp_path):
    steps = build(tmp_path, secret="s3cr3t-$(x)")
    shown = "\n".join(c.render() for s in steps for c in s.commands)
    assert "s3cr3t" not in shown and f"DB_PASSWORD={MASK}" in shown
    run = [c for s in steps if s.name == "run" for c in s.commands][0]
    assert "DB_PASSWORD='s3cr3t-$(x)'" in run.render(reveal=True)


def test_sudo_compound_commands_run_in_one_root_shell_with_secrets_quoted(tmp_path):
    from deploy.commands import Raw, Secret, sh
    cmd = sh("cd {} && export A={} && {}", "/a b", Secret("p w'$(x)"), Raw('printf %s "$A"'), sudo=True)
    assert cmd.render() == "sudo -n sh -c 'cd '\"'\"'/a b'\"'\"' && export A=*** && printf %s \"$A\"'"
    # What runs: sh sees the secret as one quoted word (checked by running the inner script).
    inner = shlex.split(cmd.render(reveal=True))[4].replace("cd '/a b' && ", "")
    out = subprocess.run(["sh", "-c", inner], capture_output=True, text=True).stdout
    assert out == "p w'$(x)"


def test_release_ids_are_validated():
    import pytest
    from deploy.errors import ConfigError
    assert plan.check_release_id("3f2c1ab") == "3f2c1ab"
    for bad in ["", "../x", "a b", "x;y", "-rf"]:
        with pytest.raises(ConfigError):
            plan.check_release_id(bad)
    assert len(plan.new_release_id()) == 14
