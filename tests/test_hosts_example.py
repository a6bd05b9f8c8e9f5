"""hosts/example.yml: read by default, planned, never connected to.

The refusal of every connecting command (exit 2, the file and line, no connection to a listener)
is in tests/bad_input/cases.yml (refs-example-inventory-*); this file checks the example itself.
"""

import ipaddress
import json

import pytest

from deploy import inventory
from deploy.errors import ConfigError
from helpers import PROJECT, fab, write

EXAMPLE = PROJECT / "hosts" / "example.yml"
# RFC 5737 (and RFC 3849 for IPv6): addresses for documentation, routed nowhere.
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")]


def test_the_example_marks_every_host_and_uses_documentation_addresses():
    inv = inventory.load(EXAMPLE)
    assert inv.hosts and set(inv.groups) == {"example"}
    for host in inv.hosts.values():
        assert host.example == f"{EXAMPLE}:{_line_of(EXAMPLE, 'example: true')}"
        assert host.name.startswith("example-")
        assert any(ipaddress.ip_address(host.address) in net for net in DOC_NETS), host.address
        assert host.user != "root"
    assert [h.name for h in inv.hosts.values() if h.primary] == ["example-web1"]


def test_the_default_inventory_reads_it_and_a_plain_file_is_no_example(tmp_path):
    inv = inventory.load(PROJECT / "hosts")
    assert "example-web1" in inv.hosts and EXAMPLE in inv.files
    plain = inventory.load(write(tmp_path / "prod.yml", """
        hosts:
          prod1: {address: 10.0.0.11, fpm: {socket: /run/php/php8.2-fpm.sock}}
    """))
    assert plain.hosts["prod1"].example is None
    off = inventory.load(write(tmp_path / "off.yml", """
        example: false
        hosts:
          prod2: {address: 10.0.0.12, fpm: {socket: /run/php/php8.2-fpm.sock}}
    """))
    assert off.hosts["prod2"].example is None
    inventory.refuse_examples(list(plain.hosts.values()) + list(off.hosts.values()))  # no error


def test_a_selection_with_one_example_host_is_refused_whole(tmp_path):
    write(tmp_path / "hosts" / "prod.yml", """
        hosts:
          prod1: {address: 10.0.0.11, fpm: {socket: /run/php/php8.2-fpm.sock}}
    """)
    (tmp_path / "hosts" / "example.yml").write_text(EXAMPLE.read_text())
    inv = inventory.load(tmp_path / "hosts")
    with pytest.raises(ConfigError) as err:
        inventory.check_controller_files(inv.select("prod1,example-web2"))
    text = str(err.value)
    assert f"example.yml:{_line_of(EXAMPLE, 'example: true')}" in text and "key 'example'" in text
    assert "host 'example-web2' is an example" in text and "hosts/README.md" in text


def test_example_must_be_a_boolean(tmp_path):
    path = write(tmp_path / "x.yml", """
        example: maybe
        hosts:
          a: {address: 10.0.0.11, fpm: {socket: /s}}
    """)
    with pytest.raises(ConfigError) as err:
        inventory.load(path)
    assert "x.yml:1" in str(err.value) and "example" in str(err.value)


def test_fab_plan_works_on_the_example_and_a_saved_plan_of_it_is_refused(tmp_path):
    r = fab("plan", "--host", "example", "--release", "ex1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "example-web1" in r.stdout and "example-web2" in r.stdout and "hosts/example.yml" in r.stdout
    saved = tmp_path / "plan.json"
    r = fab("plan", "--host", "example", "--release", "ex1", "--out", str(saved))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(saved.read_text())
    commands = [c["command"] for h in doc["hosts"] for s in h["steps"] for c in s["commands"]]
    assert "sudo -n systemctl reload php8.2-fpm" in " ".join(commands)
    r = fab("deploy", "--plan", str(saved))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "is an example" in r.stderr + r.stdout and "Traceback" not in r.stderr


def _line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip() == text)
