"""The lab's host model and config templates, without starting anything (deploy/lab/model.py, configs.py)."""

import json
from pathlib import Path

import pytest

from deploy.lab import configs, services
from deploy.lab.model import LabHost, Pool, index_of, load_host, stored
from deploy.lab.messages import LabError


def host(**kw):
    return LabHost(root="/srv/x", index=3, ssh_port=2203, http_port=8003, **kw)


def test_paths_and_urls_follow_from_root_and_index():
    h = host()
    assert (h.name, h.dir, h.deploy_path, h.current) == ("lab3", "/srv/x/lab3", "/srv/x/lab3/app", "/srv/x/lab3/app/current")
    assert (h.socket, h.fpm_pid_file, h.key) == ("/srv/x/lab3/php-fpm.sock", "/srv/x/lab3/fpm.pid", "/srv/x/ssh/id_ed25519")
    assert h.health_url == "http://127.0.0.1:8003/version"
    assert h.fpm_reload_cmd == 'kill -USR2 "$(cat /srv/x/lab3/fpm.pid)"'
    assert h.port == 2203 and host(proxy_port=3203).port == 3203   # clients use the relay when there is one


def test_lab_json_round_trip(tmp_path):
    h = LabHost(root=str(tmp_path), index=2, ssh_port=2202, http_port=8002, realpath_root=False, sftp=False,
                pool=Pool(validate_timestamps=1, directives={"php_admin_value[opcache.jit]": "off"}),
                latency_ms=15.0, proxy_port=3202)
    h.save()
    assert json.loads(Path(h.state_file).read_text())["pool"]["directives"] == {"php_admin_value[opcache.jit]": "off"}
    assert stored(tmp_path, 2) == h
    assert load_host("lab2", str(tmp_path)) == h
    assert stored(tmp_path, 5) is None
    with pytest.raises(LabError, match="does not exist"):
        load_host("lab5", str(tmp_path))
    with pytest.raises(LabError, match="not a lab host name"):
        index_of("web1")


def test_an_older_lab_json_without_the_newer_keys_loads(tmp_path):
    (tmp_path / "lab1").mkdir()
    (tmp_path / "lab1" / "lab.json").write_text(json.dumps(
        {"ssh_port": 2201, "http_port": 8001, "realpath_root": True,
         "pool": {"max_children": 2, "opcache_enable": 1, "validate_timestamps": 0, "revalidate_freq": 2}}))
    h = stored(tmp_path, 1)
    assert (h.sftp, h.light, h.latency_ms, h.proxy_port) == (True, False, 0, None)
    assert h.pool == Pool()


@pytest.mark.parametrize("variant", [dict(), dict(realpath_root=False, sftp=False, light=True,
                                                   pool=Pool(opcache_file_cache="/c", directives={"a": "b"}))])
def test_every_template_renders_every_placeholder(variant):
    h = host(**variant)
    texts = [configs.sshd_config(h), configs.fpm_config(h), configs.nginx_config(h),
             services._supervisor_config(h, services._supervisor(h, "www-data")),
             services.env_text(h, {"db_port": 3307, "redis_port": 6380},
                               {"database": "app", "username": "app", "password": "pw"})]
    for text in texts:
        assert "@{" not in text and text.endswith("\n") and not text.endswith("\n\n")
    sshd, fpm, nginx = texts[:3]
    assert "Port 2203" in sshd and ("Subsystem sftp" in sshd) == h.sftp
    assert "listen = /srv/x/lab3/php-fpm.sock" in fpm and ("a = b" in fpm) == bool(h.pool.directives)
    var = "$realpath_root" if h.realpath_root else "$document_root"
    assert f"fastcgi_param SCRIPT_FILENAME {var}$fastcgi_script_name;" in nginx
    assert ("worker_connections 64;" in nginx) == h.light


def test_a_missing_value_is_an_error_not_an_empty_line():
    with pytest.raises(KeyError):
        configs.render("sshd_config", name="lab1")
