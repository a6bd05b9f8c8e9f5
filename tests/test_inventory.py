"""Inventory parsing: hosts/*.yml -> Host objects; errors name file, line and key."""

import pytest

from deploy import inventory
from deploy.errors import ConfigError
from helpers import write

BASIC = """
defaults:
  user: deploy
  port: 22
  key: ~/.ssh/id_ed25519
  known_hosts: ~/.ssh/known_hosts
  deploy_path: /var/www/app
  web_user: www-data
  fpm:
    socket: /run/php/php8.3-fpm.sock
    reload: sudo systemctl reload php8.3-fpm
  health_url: http://127.0.0.1/up
hosts:
  prod1: {address: 10.0.0.11}
  prod2: {address: 10.0.0.12, port: 2222, fpm: {socket: /run/php/other.sock}}
groups:
  web: [prod1, prod2]
"""


def test_defaults_inherited_and_overridden(tmp_path):
    inv = inventory.load(write(tmp_path / "prod.yml", BASIC))
    p1, p2 = inv.select("web")
    assert (p1.name, p1.address, p1.port, p1.user, p1.deploy_path) == ("prod1", "10.0.0.11", 22, "deploy", "/var/www/app")
    assert p1.fpm.socket == "/run/php/php8.3-fpm.sock" and p1.fpm.reload == "sudo systemctl reload php8.3-fpm"
    assert p2.port == 2222
    # fpm merges one level deep: the host's socket, the defaults' reload.
    assert p2.fpm.socket == "/run/php/other.sock" and p2.fpm.reload == "sudo systemctl reload php8.3-fpm"
    assert p1.host_key_policy == "strict"


def test_select_host_group_and_list(tmp_path):
    inv = inventory.load(write(tmp_path / "prod.yml", BASIC))
    assert [h.name for h in inv.select("prod2")] == ["prod2"]
    assert [h.name for h in inv.select("prod2,web")] == ["prod2", "prod1"]


def test_directory_loads_every_file_and_names_are_unique(tmp_path):
    write(tmp_path / "a.yml", BASIC)
    write(tmp_path / "b.yml", "hosts:\n  prod3: {address: 10.0.0.13, fpm: {socket: /s}}\n")
    inv = inventory.load(tmp_path)
    assert sorted(inv.hosts) == ["prod1", "prod2", "prod3"]
    write(tmp_path / "c.yml", "hosts:\n  prod1: {address: 10.0.0.99, fpm: {socket: /s}}\n")
    with pytest.raises(ConfigError) as err:
        inventory.load(tmp_path)
    assert "c.yml:2" in str(err.value) and "defined twice" in str(err.value)


@pytest.mark.parametrize("text, where, words", [
    ("hosts:\n  prod1: {address: 10.0.0.1, fpm: {socket: /s}, colour: red}\n", ":2", "hosts.prod1.colour"),
    ("hosts:\n  prod1:\n    address: 10.0.0.1\n    port: twenty\n    fpm: {socket: /s}\n", ":4", "hosts.prod1.port"),
    ("hosts:\n  prod1:\n    port: 22\n    fpm: {socket: /s}\n", ":2", "hosts.prod1.address"),
    ("hosts:\n  prod1: {address: 10.0.0.1}\n", ":2", "fpm.socket"),
    ("hosts:\n  prod1: {address: 10.0.0.1, fpm: {socket: /s}}\ngroups:\n  web: [prod1, prod9]\n", ":4", "prod9"),
    ("hosts:\n  prod1: {address: 10.0.0.1, fpm: {socket: /s}, host_key_policy: yolo}\n", ":2", "host_key_policy"),
    ("hosts:\n  prod1: {address: 10.0.0.1, fpm: {socket: /s}, deploy_path: relative/path}\n", ":2", "deploy_path"),
    ("hosts:\n  prod1: {address: 10.0.0.1\n", ":3", "invalid YAML"),
    ("hosts:\n  prod1: {address: 10.0.0.1, fpm: {socket: /s}}\n  prod1: {address: 10.0.0.2}\n", ":3", "duplicate key"),
])
def test_errors_name_file_line_and_key(tmp_path, text, where, words):
    path = write(tmp_path / "bad.yml", text)
    with pytest.raises(ConfigError) as err:
        inventory.load(path)
    message = str(err.value)
    assert f"bad.yml{where}" in message, message
    assert words in message, message
    assert err.value.exit_code == 2


def test_unknown_host_lists_known_ones(tmp_path):
    inv = inventory.load(write(tmp_path / "prod.yml", BASIC))
    with pytest.raises(ConfigError) as err:
        inv.select("prod9")
    assert "unknown host or group 'prod9'" in str(err.value)
    assert "prod1" in str(err.value) and "web" in str(err.value)


def test_deploy_path_is_normalised_and_hostile_but_valid_paths_are_kept(tmp_path):
    text = "hosts:\n  a: {address: 10.0.0.1, fpm: {socket: /s}, deploy_path: '%s'}\n"
    for given, used in [("/var/www/x/../app/", "/var/www/app"), ("//srv//app", "/srv/app"),
                        ("/srv/$(touch /tmp/x)", "/srv/$(touch /tmp/x)"), ("/srv/my app", "/srv/my app")]:
        host = inventory.load(write(tmp_path / "n.yml", text % given)).select("a")[0]
        assert host.deploy_path == used, given


@pytest.mark.parametrize("path, words", [
    ("/", "must not be /"), ("/var/www/../..", "resolves to /"), ("/etc/app", "system directory /etc"),
    ("/usr/bin/../lib/x", "system directory /usr/lib"), ("/home", "must not be /home"), ("app", "absolute"),
])
def test_dangerous_deploy_paths_are_refused(tmp_path, path, words):
    path_file = write(tmp_path / "d.yml", f"hosts:\n  a: {{address: 10.0.0.1, fpm: {{socket: /s}}, deploy_path: '{path}'}}\n")
    with pytest.raises(ConfigError) as err:
        inventory.load(path_file)
    assert "d.yml:2" in str(err.value) and "hosts.a.deploy_path" in str(err.value) and words in str(err.value)


def test_aliases_within_the_budget_dates_as_text_bom_and_crlf(tmp_path):
    text = ("\ufeffdefaults:\r\n  fpm: &fpm {socket: /s}\r\n  env: {BUILT: 2024-01-01}\r\n"
            "hosts:\r\n  a: {address: 10.0.0.1, fpm: *fpm}\r\n  b: {address: 10.0.0.2}\r\n"
            "groups:\r\n  web: &web [a, b]\r\n  all: *web\r\n")
    path = tmp_path / "x.yml"
    path.write_bytes(text.encode("utf-8"))
    inv = inventory.load(path)
    assert [h.name for h in inv.select("all")] == ["a", "b"]
    assert inv.hosts["a"].env["BUILT"]["value"] == "2024-01-01"  # not a datetime.date


def test_nested_groups_are_expanded_once_each(tmp_path):
    # g30 reaches the host 2**30 ways; each group is flattened once, so this loads at once.
    groups = "".join(f"  g{i}: [g{i - 1}, g{i - 1}]\n" for i in range(1, 31))
    inv = inventory.load(write(tmp_path / "g.yml", "hosts:\n  a: {address: 10.0.0.1, fpm: {socket: /s}}\n"
                                                   "groups:\n  g0: [a]\n" + groups))
    assert [h.name for h in inv.select("g30")] == ["a"]


def _one_host(tmp_path, settings, defaults=""):
    return inventory.load(write(tmp_path / "hosts" / "c.yml", f"{defaults}hosts:\n  a: {{address: 10.0.0.1, "
                                                             f"fpm: {{socket: /s}}{settings}}}\n")).select("a")


def test_controller_files_are_checked_with_the_entry_they_come_from(tmp_path):
    kh = write(tmp_path / "kh", "")
    key = write(tmp_path / "id", "key")
    inventory.check_controller_files(_one_host(tmp_path, f", key: {key}, known_hosts: {kh}"))
    # accept-new creates a missing known_hosts (and its directory): not an error
    inventory.check_controller_files(_one_host(tmp_path, f", known_hosts: {tmp_path}/new/kh, host_key_policy: accept-new"))
    cases = [
        (f", key: {tmp_path}/nope, known_hosts: {kh}", "c.yml:2", "hosts.a.key", "does not exist"),
        (f", key: {tmp_path}, known_hosts: {kh}", "c.yml:2", "hosts.a.key", "is a directory"),
        (f", known_hosts: {tmp_path}/nope", "c.yml:2", "hosts.a.known_hosts", "ssh-keyscan -p 22 10.0.0.1"),
        (f", known_hosts: {tmp_path}, host_key_policy: accept-new", "c.yml:2", "hosts.a.known_hosts", "is a directory"),
        (f", known_hosts: {key}/kh, host_key_policy: accept-new", "c.yml:2", "hosts.a.known_hosts", "cannot be created"),
    ]
    for settings, where, key_path, words in cases:
        with pytest.raises(ConfigError) as err:
            inventory.check_controller_files(_one_host(tmp_path, settings))
        message = str(err.value)
        assert where in message and f"key '{key_path}'" in message and words in message, message
    # from defaults: the message names the defaults' line
    with pytest.raises(ConfigError) as err:
        inventory.check_controller_files(_one_host(tmp_path, "", defaults=f"defaults:\n  known_hosts: {tmp_path}/gone\n"))
    assert "c.yml:2" in str(err.value) and "defaults.known_hosts" in str(err.value)


def test_the_default_known_hosts_is_named_as_the_default(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError) as err:
        inventory.check_controller_files(_one_host(tmp_path, ""))
    assert "the default known_hosts" in str(err.value) and "c.yml:2" in str(err.value)
    # accept-new with no ~/.ssh at all (a fresh CI runner): fine
    inventory.check_controller_files(_one_host(tmp_path, ", host_key_policy: accept-new"))
