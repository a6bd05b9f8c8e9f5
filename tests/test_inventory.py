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
