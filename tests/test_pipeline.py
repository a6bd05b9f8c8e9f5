"""Pipeline parsing: playbooks -> typed steps; every mistake is one clear message with file:line:key."""

import pytest

from deploy import pipeline
from deploy.errors import ConfigError
from helpers import PROJECT, write


def load(tmp_path, text):
    (tmp_path / "app").mkdir(exist_ok=True)
    return pipeline.load(write(tmp_path / "playbooks" / "p.yml", text))


def test_shipped_pipeline_is_a_correct_default_order():
    p = pipeline.load(PROJECT / "playbooks" / "laravel.yml")
    assert [s.kind for s in p.steps] == ["sync", "shared", "ownership", "composer", "artisan", "migrate", "precheck",
                                          "activate", "opcache_reset", "fpm_reload", "verify", "workers"]
    assert p.steps[4].settings["commands"] == ["config:cache", "route:cache", "view:cache", "event:cache"]
    assert p.source == str(PROJECT / "sample-app")


def test_settings_and_defaults(tmp_path):
    p = load(tmp_path, """
        source: app
        keep_releases: 3
        steps:
          - sync: {exclude: [.git, /tests]}
          - shared
          - ownership: {mode: chown}
          - activate
          - verify: {timeout: 5, expect_release: false}
          - run:
              name: restart queue
              commands: ["php artisan queue:restart"]
              env: {APP_ENV: production, TOKEN: {from_env: HOME}}
              on_rollback: true
    """)
    assert p.keep_releases == 3
    assert p.steps[0].settings["exclude"] == [".git", "/tests"]
    assert p.steps[1].settings == {"dirs": ["storage"], "files": [".env"]}
    assert p.steps[2].settings["mode"] == "chown"
    assert p.steps[4].settings["timeout"] == 5 and p.steps[4].settings["expect_release"] is False
    run = p.steps[5]
    assert run.name == "restart queue" and run.settings["on_rollback"] is True
    assert run.settings["env"]["TOKEN"]["secret"] is True  # from_env values are secret by default


@pytest.mark.parametrize("steps, line, words", [
    ("  - sync\n  - teleport\n  - activate\n", 4, "unknown step kind 'teleport'"),
    ("  - sync\n  - activate\n  - verify: {timeout: soon}\n", 5, "steps[2].verify.timeout"),
    ("  - sync\n  - activate\n  - verify: {colour: red}\n", 5, "steps[2].verify.colour"),
    ("  - sync\n  - activate\n  - run: {cwd: /tmp}\n", 5, "steps[2].run.commands"),
    ("  - sync\n  - artisan: {commands: [optimize]}\n  - activate\n", 4, "optimize"),
    ("  - sync\n  - ownership: {mode: yolo}\n  - activate\n", 4, "steps[1].ownership.mode"),
    ("  - sync\n  - shared: {dirs: [../etc]}\n  - activate\n", 4, "steps[1].shared.dirs"),
    ("  - sync\n", 3, "exactly one 'activate'"),
    ("  - sync\n  - activate\n  - artisan\n", 5, "must come before 'activate'"),
])
def test_errors_name_file_line_and_key(tmp_path, steps, line, words):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "source: app\nsteps:\n" + steps)
    message = str(err.value)
    assert f"p.yml:{line}" in message, message
    assert words in message, message


def test_missing_required_and_wrong_type(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "source: app\nkeep_releases: 3\n")
    assert "key 'steps': missing required key" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "source: app\nkeep_releases: many\nsteps: [sync, activate]\n")
    assert "p.yml:2" in str(err.value) and "keep_releases" in str(err.value) and "integer" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "source: nowhere\nsteps: [sync, activate]\n")
    assert "p.yml:1" in str(err.value) and "does not exist" in str(err.value)


def test_multi_line_commands_empty_env_values_and_limits(tmp_path):
    p = load(tmp_path, """
        source: app
        steps:
          - sync
          - activate
          - run:
              commands: |
                php artisan down
                php artisan migrate --force
              env: {APP_DEBUG: "", NOTE: "two\\nlines"}
          - verify: {status: 599, interval: 1}
    """)
    assert p.steps[2].settings["commands"] == ["php artisan down\nphp artisan migrate --force\n"]
    assert p.steps[2].settings["env"]["APP_DEBUG"]["value"] == ""
    assert p.steps[3].settings["status"] == 599


@pytest.mark.parametrize("steps, line, words", [
    ("  - sync\n  - activate\n  - verify: {status: 600}\n", 5, "steps[2].verify.status"),
    ("  - sync\n  - activate\n  - verify: {url: 'ftp://x/'}\n", 5, "http:// or https://"),
    ("  - sync\n  - activate\n  - run: {commands: [ls], cwd: rel}\n", 5, "absolute path"),
    ("  - sync\n  - activate\n  - run: {commands: ['ls', '']}\n", 5, "must not be empty"),
    ("  - sync: {name: ''}\n  - activate\n", 3, "steps[0].sync.name"),
    ("  - sync\n  - artisan: {commands: [\"a 'b\"]}\n  - activate\n", 4, "cannot split"),
    ("  - sync\n  - activate\n  - run: !!python/object/apply:os.system [id]\n", 5, "not allowed"),
])
def test_step_settings_are_checked(tmp_path, steps, line, words):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "source: app\nsteps:\n" + steps)
    message = str(err.value)
    assert f"p.yml:{line}" in message and words in message, message
