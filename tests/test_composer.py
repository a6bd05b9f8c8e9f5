"""The composer step as data (plans, settings, errors) and deploy/remote/vendor.sh run locally on
temporary release dirs. No SSH here; the real deploys are in tests/test_stack_lab.py."""

import os
import shutil
import subprocess

import pytest

from deploy import inventory, pipeline, plan, remote
from deploy.errors import ConfigError
from helpers import PROJECT, write

VENDOR_SH = PROJECT / "deploy" / "remote" / "vendor.sh"

INV = """
hosts:
  web1: {address: 10.0.0.11, user: deploy, deploy_path: "/var/www/my app", health_url: http://127.0.0.1/up,
         fpm: {socket: /run/php/fpm.sock}, env: {APP_ENV: production}}
"""


def build(tmp_path, composer="composer", strategy="releases", after=""):
    (tmp_path / "app").mkdir(exist_ok=True)
    host = inventory.load(write(tmp_path / "hosts" / "h.yml", INV)).select("web1")[0]
    pipe = pipeline.load(write(tmp_path / "playbooks" / "p.yml", f"""
        source: app
        strategy: {strategy}
        steps:
          - sync
          - {composer}
          - activate
        {after}
    """))
    return plan.deploy(host, pipe, "r1", plan.Operator(user="ci", machine="runner", pid=42))


def step(steps, name):
    return next(s for s in steps if s.name == name)


def test_default_plan(tmp_path):
    s = step(build(tmp_path), "composer")
    assert [c.render() for c in s.commands] == [
        "mkdir -p '/var/www/my app/.deploy/composer'",
        f"sh -c <{remote.label('vendor.sh')}> vendor.sh '/var/www/my app/current' '/var/www/my app/releases/r1' hardlink",
        "cd '/var/www/my app/releases/r1' && export COMPOSER_HOME='/var/www/my app/.deploy/composer'"
        " APP_ENV=production && composer install --no-dev --prefer-dist --optimize-autoloader --no-interaction",
    ]
    # run as the deploy user: never under sudo
    assert not any(getattr(c, "sudo", False) for c in s.commands)
    # what the host runs is the text of deploy/remote/vendor.sh
    assert VENDOR_SH.read_text() in s.commands[1].render(reveal=True) or "vendor.sh" in s.commands[1].render(reveal=True)


def test_settings_secret_masked_everywhere_but_the_executed_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CI_COMPOSER_AUTH", '{"http-basic": {"r.example.org": {"username": "u", "password": "pw1"}}}')
    s = step(build(tmp_path, composer="""composer:
              reuse_vendor: copy
              home: /srv/cache/composer
              command: php /opt/composer.phar
              options: [--no-dev, --classmap-authoritative]
              env:
                COMPOSER_AUTH: {from_env: CI_COMPOSER_AUTH}
                COMPOSER_PROCESS_TIMEOUT: 600"""), "composer")
    reuse, install = s.commands[1], s.commands[2]
    assert reuse.render().endswith("'/var/www/my app/releases/r1' copy")
    assert install.render() == (
        "cd '/var/www/my app/releases/r1' && export COMPOSER_HOME=/srv/cache/composer APP_ENV=production"
        " COMPOSER_AUTH=*** COMPOSER_PROCESS_TIMEOUT=600 && php /opt/composer.phar install --no-dev"
        " --classmap-authoritative --no-interaction")
    assert "pw1" not in install.render()
    assert "'{\"http-basic\": {\"r.example.org\": {\"username\": \"u\", \"password\": \"pw1\"}}}'" in install.render(
        reveal=True)
    assert install.secrets == [os.environ["CI_COMPOSER_AUTH"]]


def test_reuse_off(tmp_path):
    s = step(build(tmp_path, composer="composer: {reuse_vendor: false}"), "composer")
    assert s.commands[1].render().endswith(" none")


@pytest.mark.parametrize("composer, words", [
    ("composer: {reuse_vendor: maybe}", ["steps[1].composer.reuse_vendor", "unknown value 'maybe'"]),
    ("composer: {options: [install]}", ["steps[1].composer.options", "'install' is not an option"]),
    ("composer: {command: ''}", ["steps[1].composer.command", "must not be empty"]),
    ("composer: {workdir: x}", ["steps[1].composer.workdir", "unknown key"]),
])
def test_bad_settings(tmp_path, composer, words):
    with pytest.raises(ConfigError) as exc:
        build(tmp_path, composer=composer)
    for w in words:
        assert w in str(exc.value)


def test_composer_after_activate_is_refused_at_plan_time(tmp_path):
    with pytest.raises(ConfigError) as exc:
        build(tmp_path, composer="shared", after="  - composer")
    assert "p.yml:7" in str(exc.value) and "must come before 'activate'" in str(exc.value)


def test_in_place_keeps_vendor_out_of_sync_and_unshares_the_live_tree(tmp_path):
    steps = build(tmp_path, strategy="in-place")
    rsync = step(steps, "sync").commands[0].render()
    assert "--exclude=/vendor" in rsync and "--delete" in rsync
    assert step(steps, "composer").commands[1].render().endswith(
        "vendor.sh '/var/www/my app' '/var/www/my app' hardlink")
    # without a composer step, vendor/ is the source's business
    steps = build(tmp_path, composer="shared", strategy="in-place")
    assert "--exclude=/vendor" not in step(steps, "sync").commands[0].render()


def test_the_default_playbook_runs_composer_before_artisan():
    kinds = [s.kind for s in pipeline.load(PROJECT / "playbooks" / "laravel.yml").steps]
    assert kinds.index("composer") < kinds.index("artisan") < kinds.index("activate")


# ------------------------------------------------------------------------------- vendor.sh, locally


def vendor_sh(live, new, mode):
    return subprocess.run(["sh", str(VENDOR_SH), str(live), str(new), mode], capture_output=True, text=True, timeout=60)


@pytest.fixture
def releases(tmp_path):
    """releases/live with a vendor/ (autoload.php, composer/, a package) and an empty releases/new."""
    live, new = tmp_path / "live", tmp_path / "new"
    for d in (live, new):
        d.mkdir()
        (d / "composer.lock").write_text('{"content-hash": "abc"}\n')
    v = live / "vendor"
    (v / "composer").mkdir(parents=True)
    (v / "lab" / "pkg" / "src").mkdir(parents=True)
    (v / "autoload.php").write_text("<?php // autoload\n")
    for f in ("autoload_real.php", "autoload_static.php", "installed.php", "installed.json", "ClassLoader.php"):
        (v / "composer" / f).write_text(f"<?php // {f}\n")
    (v / "lab" / "pkg" / "src" / "A.php").write_text("<?php class A {}\n")
    (v / "lab" / "link").symlink_to("../../packages/link")
    return live, new


def inode(p):
    return os.stat(p).st_ino


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    r = subprocess.run(["shellcheck", str(VENDOR_SH)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_same_lock_hard_links_the_packages_and_copies_what_composer_rewrites(releases):
    live, new = releases
    r = vendor_sh(live, new, "hardlink")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("composer.lock unchanged: reused the live vendor/ (7 files, hard links;"
                        " 6 file(s) composer rewrites copied)\n")
    assert inode(new / "vendor/lab/pkg/src/A.php") == inode(live / "vendor/lab/pkg/src/A.php")
    for f in ["autoload.php"] + [f"composer/{x}" for x in os.listdir(live / "vendor" / "composer")]:
        assert inode(new / "vendor" / f) != inode(live / "vendor" / f), f
        assert (new / "vendor" / f).read_text() == (live / "vendor" / f).read_text()
        assert os.stat(live / "vendor" / f).st_nlink == 1
    assert os.readlink(new / "vendor/lab/link") == "../../packages/link"
    # what composer does next, in place: the live files do not change
    (new / "vendor/composer/installed.php").open("w").write("<?php // rewritten\n")
    assert (live / "vendor/composer/installed.php").read_text() == "<?php // installed.php\n"
    assert sorted(p.name for p in new.iterdir()) == ["composer.lock", "vendor"]   # no temp files left


def test_copy_mode_shares_nothing(releases):
    live, new = releases
    r = vendor_sh(live, new, "copy")
    assert r.returncode == 0 and r.stdout == "composer.lock unchanged: reused the live vendor/ (7 files, copied)\n"
    assert inode(new / "vendor/lab/pkg/src/A.php") != inode(live / "vendor/lab/pkg/src/A.php")


@pytest.mark.parametrize("change, words", [
    (lambda live, new: (new / "composer.lock").write_text('{"content-hash": "def"}\n'), "composer.lock differs"),
    (lambda live, new: (new / "composer.lock").unlink(), "composer.lock differs"),
    (lambda live, new: shutil.rmtree(live / "vendor"), "no live vendor/ to reuse"),
    (lambda live, new: shutil.rmtree(live), "no live vendor/ to reuse"),   # the first deploy
])
def test_no_reuse_when_the_lock_changed_or_nothing_is_live(releases, change, words):
    live, new = releases
    change(live, new)
    r = vendor_sh(live, new, "hardlink")
    assert r.returncode == 0 and words in r.stdout and "from scratch" in r.stdout
    assert not (new / "vendor").exists()


def test_reuse_off_installs_from_scratch(releases):
    live, new = releases
    r = vendor_sh(live, new, "none")
    assert r.returncode == 0 and r.stdout == "reuse_vendor is off: composer installs vendor/ from scratch\n"
    assert not (new / "vendor").exists()


def test_vendor_shipped_with_the_source_gets_private_autoload_files(releases):
    """sync hard-linked the shipped vendor/ from the live release; in place the live tree shares its
    files with the snapshot: either way composer must not write through those links."""
    live, new = releases
    subprocess.run(["cp", "-al", str(live / "vendor"), str(new / "vendor")], check=True)
    r = vendor_sh(live, new, "hardlink")
    assert r.returncode == 0
    assert r.stdout == "vendor/ is already in the release: 6 shared file(s) composer rewrites made its own copies\n"
    assert inode(new / "vendor/composer/autoload_real.php") != inode(live / "vendor/composer/autoload_real.php")
    assert inode(new / "vendor/lab/pkg/src/A.php") == inode(live / "vendor/lab/pkg/src/A.php")
    # in place: live and new are one directory; nothing is shared afterwards but nothing breaks
    r = vendor_sh(new, new, "hardlink")
    assert r.returncode == 0 and "0 shared file(s)" in r.stdout


@pytest.mark.parametrize("argv", [[], ["a", "b"], ["{live}", "{new}", "sometimes"], ["{live}", "/nonexistent", "copy"]])
def test_bad_usage(releases, argv):
    live, new = releases
    r = subprocess.run(["sh", str(VENDOR_SH), *[a.format(live=live, new=new) for a in argv]],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("vendor.sh: ")


def test_sample_app_lock_matches_its_composer_json(tmp_path):
    """The committed lock is what `composer install` reads: it must be current with composer.json."""
    app = tmp_path / "app"
    shutil.copytree(PROJECT / "sample-app", app, symlinks=True)
    r = subprocess.run(["composer", "validate", "--no-check-publish", "--no-interaction"], cwd=app,
                       capture_output=True, text=True, env=dict(os.environ, COMPOSER_HOME=str(tmp_path / "home")))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "is not up to date" not in r.stdout + r.stderr
    ignored = subprocess.run(["git", "check-ignore", "-q", "sample-app/vendor/"], cwd=PROJECT)
    assert ignored.returncode == 0
