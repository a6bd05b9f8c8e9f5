"""deploy/health/ and deploy/remediate.py without SSH: canned evidence -> findings -> fixes.

The evidence text has the exact shape deploy/remote/gather.sh prints on a host (tagged sections,
tab-separated fields, fpmctl JSON + exit code markers, an `nginx -T` dump), built here by
`evidence()` with one healthy host as the default; each test breaks one thing.
"""

import json
from pathlib import Path

import pytest

from deploy import health, remediate, remote
from deploy import pipeline as pipeline_mod
from deploy.executor import CommandResult, StepResult
from deploy.inventory import Fpm, Host

REPO = Path(__file__).resolve().parents[1]
D = "/var/www/app"
REL = f"{D}/releases/r2"
SHARED = f"{D}/shared"
SOCK = "/run/php/php8.2-fpm.sock"
URL = "http://10.0.0.5/version"


@pytest.fixture(scope="module")
def pipe():
    return pipeline_mod.load(REPO / "playbooks" / "laravel.yml")


def host(**kw):
    base = dict(name="web1", address="10.0.0.5", user="deploy", deploy_path=D, web_user="www-data",
                fpm=Fpm(socket=SOCK, reload="sudo systemctl reload php8.2-fpm"), health_url=URL)
    base.update(kw)
    return Host(**base)


NGINX_CONF = f"""user www-data;
http {{
    include /etc/nginx/mime.types;
    server {{
        listen 80;
        root {D}/current/public;
        index index.php;
        location / {{
            try_files $uri /index.php?$query_string;
        }}
        location ~ ^/fpm-(status|ping)$ {{
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $fastcgi_script_name;
            fastcgi_pass unix:{SOCK};
        }}
        location ~ \\.php$ {{
            include fastcgi_params;
            fastcgi_pass unix:{SOCK};
            fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT $realpath_root;
        }}
    }}
}}
"""
FASTCGI_PARAMS = """fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  DOCUMENT_ROOT      $document_root;
"""


def nginx_dump(conf=NGINX_CONF, ok=True):
    if not ok:
        return "nginx: [emerg] unexpected \"}\" in /etc/nginx/nginx.conf:12\nnginx: configuration file /etc/nginx/nginx.conf test failed\n"
    return ("nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
            "nginx: configuration file /etc/nginx/nginx.conf test is successful\n"
            "# configuration file /etc/nginx/nginx.conf:\n" + conf +
            "\n# configuration file /etc/nginx/mime.types:\ntypes { text/html html; }\n"
            "\n# configuration file /etc/nginx/fastcgi_params:\n" + FASTCGI_PARAMS)


def status_json(**kw):
    opcache = {"enabled": True, "reason": None, "api_restricted": False, "restart_pending": False,
               "restart_in_progress": False, "manual_restarts": 3, "last_restart_time": 1700000000,
               "oom_restarts": 0, "num_cached_scripts": 120, "cached_by_release": {"r2": 40},
               "cached_under_current": 0, "cached_other": 80, "stale_scripts": 0,
               "memory": {"cache_full": False}, "validate_timestamps": False, "revalidate_freq": 2,
               "file_cache": "", "file_cache_only": False}
    opcache.update(kw.pop("opcache", {}))
    data = {"action": "status", "ok": True, "user": "www-data", "pid": 4242, "release": "r2", "release_dir": "r2",
            "current_realpath": REL, "realpath_cache_current": None, "opcache": opcache,
            "writable": {"storage": True, "bootstrap/cache": True},
            "writable_dirs": {"storage": {"error": None}, "bootstrap/cache": {"error": None}}}
    data.update(kw)
    return json.dumps(data)


def pool_json(changed=(), vt=False, error_log=""):
    """What fpmctl status reports about every script the pool cached, and its error log; evidence()
    merges it into the status section (where gather.sh's fpmctl status prints it)."""
    return json.dumps({"error_log": "/var/log/php-fpm-app.log", "error_log_tail": error_log,
                       "opcache": {"changed_cached": {
                           "start_time": 1699990000, "last_restart_time": 1700000000, "epoch": 1700000000,
                           "validate_timestamps": vt, "revalidate_freq": 2, "checked": 60,
                           "changed_count": len(changed), "changed": list(changed)}}})


def _merge_pool(status, pool):
    """The status section with the pool's report merged in (both: JSON + the RC marker)."""
    if status is None or pool is None:
        return status
    body, _, rc = status.partition("\n\x1dRC ")
    try:
        data = json.loads(body)
    except ValueError:
        return status
    if not data.get("ok") or "opcache" not in data:
        return status
    extra = json.loads(pool.partition("\n\x1dRC ")[0])
    data.update({k: v for k, v in extra.items() if k != "opcache"})
    data["opcache"] = dict(data["opcache"], **extra["opcache"])
    return json.dumps(data) + "\n\x1dRC " + rc


PROGRAMS = "".join(f"{remote.digest(n)}  {n}\n" for n in remote.names(remote.PHP))
APP_OK = json.dumps({"app": True, "root": REL, "config_cached": True, "laravel": "8.83.26",
                     "database": {"connection": "mysql", "driver": "mysql", "ok": True, "error": None, "memory": False,
                                  "elapsed_ms": 2.1},
                     "redis": [{"connection": "default", "used_by": ["queue"], "ok": True, "error": None, "elapsed_ms": 0.4}],
                     "migrations": {"rc": 0, "error": None, "output":
                                    "+------+------+-------+\n| Ran? | Migration | Batch |\n+------+------+-------+\n"
                                    "| Yes  | 2024_01_01_000000_create_release_runs_table | 1     |\n+------+------+-------+\n"}})


def evidence(**o):
    """Gather output of a healthy deployed host; keyword overrides replace whole sections' parts."""
    g = {
        "meta": "user\tdeploy\nnow\t1700000500\nroot\tyes\nweb\tyes\n",
        "layout": (f"deploy\tok\nsymlink\tyes\nlink\treleases/r2\nreal\t{REL}\nrelease\tr1\nrelease\tr2\n"
                   f"release_file\tr2\nwritable\tstorage\t{SHARED}/storage\nwritable\tbootstrap/cache\t{REL}/bootstrap/cache\n"),
        "history": json.dumps({"time": "2023-11-14T22:00:00Z", "action": "deploy", "release": "r2", "state": "deployed"}) + "\n",
        "programs": PROGRAMS,
        "ping": json.dumps({"action": "ping", "ok": True, "via": "probe", "pid": 4242, "elapsed_ms": 3.1}) + "\n\x1dRC 0\n",
        "status": status_json() + "\n\x1dRC 0\n",
        "pool": pool_json() + "\n\x1dRC 0\n",
        "http": "code\t200\n\x1dBODY\nr2",
        "disk": "\x1dRUN 1\n\x1dSTATUS 200\nr2\n",
        "fpm": ("listen_inode\t35684\nmasters\t900 \nhttp_owners\t910 911 \n"
                "master\t900\tyes\t5000\t4\tphp-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)\n"
                "socket\twww-data\twww-data\t660\n"),
        "nginx": "master\t910\t/etc/nginx/nginx.conf\t0\twww-data\nworker_socket\tok\n\x1dDUMP\n" + nginx_dump(),
        "owner": "notw_count\tstorage\t0\nnotw_count\tbootstrap/cache\t0\ncodew_count\t0\nodd_count\t0\n",
        "bootstrap": (f"file\tconfig.php\tdeploy:deploy\t644\t1700000100.0\nfile\troutes-v7.php\tdeploy:deploy\t644\t1700000100.0\n"
                      f"file\tevents.php\tdeploy:deploy\t644\t1700000100.0\nfile\tpackages.php\twww-data:www-data\t644\t1700000100.0\n"
                      f"file\tservices.php\twww-data:www-data\t644\t1700000100.0\nconfigref\t12\t{REL}\n"),
        "log": f"file\t{SHARED}/storage/logs/laravel.log\n\x1dTAIL\n[2023-11-14 21:00:00] production.ERROR: old error before the deploy\n",
        "env": f"file\tok\t{SHARED}/.env\nkey\tAPP_KEY\tset\n",
        "app": APP_OK + "\n\x1dRC 0\n",
        # the shipped playbook has a workers step: a healthy host runs its scheduler on the live release
        "workers": ("switched\t1700000000.5\nas\troot\n\x1dOUT\n"
                    f"ok\tpid=913\tstarted=1700000100.00\tcwd={REL}\trelease={REL}\tcmd=php {D}/current/artisan schedule:work\n"
                    "proven: 1 process(es) started at or after 1700000000.5\n\x1dRC 0\n"),
    }
    g.update(o)
    g["status"] = _merge_pool(g.get("status"), g.pop("pool", None))
    out = "health evidence v1\n"
    t = 1700000500.0
    for name, body in g.items():
        if body is None:
            continue
        out += f"\n\x1dS {name} {t:.3f}\n{body}"
        t += 0.01
    return out + f"\n\x1dS end {t:.3f}\n"


def findings(text=None, h=None, pipe=None, release=None, **o):
    ev = health.parse(text if text is not None else evidence(**o))
    return {f.check: f for f in health.evaluate(ev, h or host(), pipe, release)}


# ---------------------------------------------------------------------------- parse

def test_parse_reads_every_section_and_their_times():
    ev = health.parse(evidence())
    assert ev["complete"]
    assert ev["layout"]["real"] == REL and ev["layout"]["releases"] == ["r1", "r2"]
    assert ev["layout"]["writable"] == {"storage": f"{SHARED}/storage", "bootstrap/cache": f"{REL}/bootstrap/cache"}
    assert ev["status"]["rc"] == 0 and ev["status"]["data"]["release_dir"] == "r2"
    assert ev["pool"]["data"]["opcache"]["epoch"] == 1700000000   # the request body, decoded
    assert ev["http"] == {"code": 200, "body": "r2"}
    assert ev["disk"] == [{"status": 200, "body": "r2"}]
    assert ev["fpm"]["masters"][0]["owns_socket"] == "yes" and ev["fpm"]["socket"]["mode"] == "660"
    assert ev["nginx"]["master"]["conf"] == "/etc/nginx/nginx.conf" and "# configuration file" in ev["nginx"]["dump"]
    assert set(ev["section_seconds"]) >= {"meta", "owner", "log"}


def test_parse_survives_a_truncated_session():
    text = evidence()
    ev = health.parse(text[: text.index("\x1dS fpm ")])
    assert not ev["complete"]
    fs = {f.check: f for f in health.evaluate(ev, host(), None)}
    assert set(fs) == set(health.CHECKS)


def test_healthy_host_passes_every_check(pipe):
    fs = findings(pipe=pipe)
    assert [f.check for f in fs.values()] == list(health.CHECKS)
    assert {c: f.status for c, f in fs.items()} == {c: "pass" for c in health.CHECKS}, \
        {c: f.evidence for c, f in fs.items() if f.status != "pass"}
    assert "same as a fresh run of the code on disk" in fs["running_code"].evidence


# ---------------------------------------------------------------------------- ownership

def test_root_owned_writable_dirs_fail_with_the_acl_remedy(pipe):
    owner = (f"notw\troot:root\t755\t{SHARED}/storage/logs\nnotw\troot:root\t644\t{SHARED}/storage/logs/laravel.log\n"
             "notw_count\tstorage\t7\nnotw_count\tbootstrap/cache\t0\ncodew_count\t0\nodd_count\t0\n")
    f = findings(pipe=pipe, owner=owner)["ownership"]
    assert f.status == "fail" and f.remedy == "acl"
    assert "7 entries in storage not writable by www-data" in f.evidence and "root:root 755" in f.evidence
    assert "setfacl -R -m u:www-data:rwX,d:u:www-data:rwX" in f.fix and "never chown -R" in f.fix


def test_code_writable_by_the_web_user_fails_and_is_left_to_a_human(pipe):
    owner = (f"notw_count\tstorage\t0\nnotw_count\tbootstrap/cache\t0\n"
             f"codew\twww-data:www-data\t664\t{REL}/app/Http/Controllers/RetellFunctionCallHandler.php\ncodew_count\t1\n"
             f"codew_top\t{D}/releases\nodd_count\t0\n")
    f = findings(pipe=pipe, owner=owner)["ownership"]
    assert f.status == "fail" and f.remedy is None
    assert "writable by the web user www-data" in f.evidence and "RetellFunctionCallHandler.php" in f.evidence
    assert "chown -R deploy:" in f.fix and "never changes code ownership" in f.fix


def test_files_of_an_unexpected_owner_warn(pipe):
    owner = (f"notw_count\tstorage\t0\nnotw_count\tbootstrap/cache\t0\ncodew_count\t0\n"
             f"odd\troot:root\t664\t{REL}/app/Http/Controllers/VersionController.php\nodd_count\t1\n")
    f = findings(pipe=pipe, owner=owner)["ownership"]
    assert f.status == "warn" and "owned by neither deploy nor www-data" in f.evidence


def test_without_root_the_pools_own_answer_decides(pipe):
    st = status_json(writable={"storage": False, "bootstrap/cache": True})
    f = findings(pipe=pipe, owner="noweb\nodd_count\t0\n", status=st + "\n\x1dRC 0\n")["ownership"]
    assert f.status == "fail" and f.remedy == "acl" and "cannot write storage" in f.evidence


# ---------------------------------------------------------------------------- FPM, socket

def test_no_master_on_the_socket_needs_a_human(pipe):
    fpm = "listen_inode\tnone\nmasters\t77 \nhttp_owners\t\nsocket\tmissing\n"
    ping = json.dumps({"ok": False, "error": "no such socket", "error_kind": "no_socket"}) + "\n\x1dRC 3\n"
    fs = findings(pipe=pipe, fpm=fpm, ping=ping, status=ping, pool=None)
    assert fs["fpm"].status == "fail" and fs["fpm"].remedy is None
    assert f"no PHP-FPM master listens on {SOCK}" in fs["fpm"].evidence
    assert fs["socket"].status == "fail" and "no socket" in fs["socket"].evidence
    assert fs["running_code"].status == "fail"


def test_a_stuck_pool_is_reloaded():
    ping = json.dumps({"ok": False, "error": "no complete answer within 3.0 s", "error_kind": "timeout"}) + "\n\x1dRC 3\n"
    f = findings(ping=ping, status=ping)["fpm"]
    assert f.status == "fail" and f.remedy == "fpm_reload"


def test_nginx_workers_that_cannot_open_the_socket_fail():
    ngx = "master\t910\t/etc/nginx/nginx.conf\t0\tnobody\nworker_socket\tdenied\n\x1dDUMP\n" + nginx_dump()
    f = findings(nginx=ngx)["socket"]
    assert f.status == "fail" and "nginx workers run as nobody" in f.evidence and "502" in f.evidence
    assert "listen.owner" in f.fix


# ---------------------------------------------------------------------------- OPCache

def test_code_changed_after_the_last_reset_with_validate_timestamps_off_fails(pipe):
    changed = [{"path": f"{REL}/app/Http/Controllers/VersionController.php", "mtime": 1700000300, "why": "modified"}]
    f = findings(pipe=pipe, pool=pool_json(changed) + "\n\x1dRC 0\n")["opcache"]
    assert f.status == "fail" and f.remedy == "opcache_reset"
    assert "app/Http/Controllers/VersionController.php" in f.evidence and "old code" in f.evidence
    assert "php -r opcache_reset()" in f.fix   # named as what NOT to do


def test_changed_code_with_validate_timestamps_on_only_informs(pipe):
    changed = [{"path": f"{REL}/app/X.php", "mtime": 1700000300, "why": "modified"}]
    f = findings(pipe=pipe, pool=pool_json(changed, vt=True) + "\n\x1dRC 0\n")["opcache"]
    assert f.status == "pass"


def test_file_cache_and_scripts_of_other_releases_warn(pipe):
    st = status_json(opcache={"file_cache": "/var/cache/opcache", "stale_scripts": 30,
                              "cached_by_release": {"r1": 30, "r2": 40}})
    f = findings(pipe=pipe, status=st + "\n\x1dRC 0\n")["opcache"]
    assert f.status == "warn"
    assert "opcache.file_cache=/var/cache/opcache survives" in f.evidence and "r1: 30" in f.evidence
    assert "fpm: {file_cache: /var/cache/opcache}" in f.fix


def test_validate_timestamps_off_without_a_reset_in_the_pipeline_warns(tmp_path):
    play = tmp_path / "p.yml"
    play.write_text(f"source: {REPO / 'sample-app'}\nsteps: [sync, activate, verify]\n")
    f = findings(pipe=pipeline_mod.load(play))["opcache"]
    assert f.status == "warn" and "neither resets nor reloads" in f.evidence


# ---------------------------------------------------------------------------- bootstrap cache

def test_unwritable_bootstrap_cache_without_manifests_fails_with_acl_and_artisan(pipe):
    st = status_json(writable={"storage": True, "bootstrap/cache": False},
                     writable_dirs={"bootstrap/cache": {"error": "fopen(...): Permission denied"}})
    boot = f"file\tconfig.php\troot:root\t644\t1.0\nfile\troutes-v7.php\troot:root\t644\t1.0\nfile\tevents.php\troot:root\t644\t1.0\nconfigref\t3\t{REL}\n"
    f = findings(pipe=pipe, status=st + "\n\x1dRC 0\n", bootstrap=boot)["bootstrap_cache"]
    assert f.status == "fail" and f.remedies == ("acl", "artisan")
    assert "must be present and writable" in f.evidence and "packages.php and services.php missing" in f.evidence


def test_config_cache_built_for_another_release_or_older_than_env_fails(pipe):
    boot = (f"file\tconfig.php\tdeploy:deploy\t644\t1.0\nfile\troutes-v7.php\tdeploy:deploy\t644\t1.0\n"
            f"file\tevents.php\tdeploy:deploy\t644\t1.0\nconfigref\t9\t{D}/releases/r1\n"
            f"newer_env\t{SHARED}/.env\nnewer_routes\t{REL}/routes/web.php\n")
    f = findings(pipe=pipe, bootstrap=boot)["bootstrap_cache"]
    assert f.status == "fail" and f.remedy == "artisan"
    assert "built for another release (r1)" in f.evidence and ".env changed after config:cache" in f.evidence
    assert "routes/web.php" in f.evidence
    assert "one by one" in f.fix and "OPCache reset" in f.fix


def test_missing_route_cache_fails_when_the_pipeline_caches_routes(pipe):
    boot = f"file\tconfig.php\td:d\t644\t1.0\nfile\tevents.php\td:d\t644\t1.0\nconfigref\t3\t{REL}\n"
    f = findings(pipe=pipe, bootstrap=boot)["bootstrap_cache"]
    assert f.status == "fail" and "routes-v7.php missing" in f.evidence and f.remedy == "artisan"


# ---------------------------------------------------------------------------- nginx

def test_document_root_with_a_symlinked_current_fails_with_the_exact_lines():
    conf = NGINX_CONF.replace("$realpath_root$fastcgi_script_name", "$document_root$fastcgi_script_name") \
                     .replace("            fastcgi_param DOCUMENT_ROOT $realpath_root;\n", "")
    ngx = "master\t910\t/etc/nginx/nginx.conf\t0\twww-data\n\x1dDUMP\n" + nginx_dump(conf)
    f = findings(nginx=ngx)["nginx"]
    assert f.status == "fail" and f.remedy is None
    assert "/etc/nginx/nginx.conf:16 location ~ \\.php$" in f.evidence
    assert "SCRIPT_FILENAME $document_root$fastcgi_script_name (/etc/nginx/nginx.conf:19)" in f.evidence
    # DOCUMENT_ROOT is inherited from the included fastcgi_params: named with its file and line
    assert "DOCUMENT_ROOT $document_root (/etc/nginx/fastcgi_params:3)" in f.evidence
    for line in health.REALPATH_LINES:
        assert line in f.fix
    assert "nginx -t && nginx -s reload" in f.fix


def test_document_root_is_only_a_warning_without_a_symlink():
    conf = NGINX_CONF.replace("$realpath_root", "$document_root")
    ngx = "master\t910\t/etc/nginx/nginx.conf\t0\twww-data\n\x1dDUMP\n" + nginx_dump(conf)
    layout = evidence().split("\x1dS layout ")[1].split("\n", 1)[1].split("\n\x1dS")[0].replace("symlink\tyes", "symlink\tno")
    f = findings(nginx=ngx, layout=layout + "\n")["nginx"]
    assert f.status == "warn"


def test_params_inherited_from_the_server_level_count():
    conf = NGINX_CONF.replace("""            fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;
            fastcgi_param DOCUMENT_ROOT $realpath_root;
        }""", "        }").replace("        index index.php;\n", "        index index.php;\n"
                                   "        fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n"
                                   "        fastcgi_param DOCUMENT_ROOT $realpath_root;\n")
    res = health.analyse_nginx(nginx_dump(conf), D, SOCK)
    # the location has its own fastcgi_param lines (from the include): nginx does NOT merge
    # them with the server's, so the server-level $realpath_root lines are lost
    assert res["problems"] and "SCRIPT_FILENAME missing" in res["problems"][0][1]
    conf2 = conf.replace("            include fastcgi_params;\n            fastcgi_pass unix:" + SOCK + ";\n        }",
                         "            fastcgi_pass unix:" + SOCK + ";\n        }")
    res2 = health.analyse_nginx(nginx_dump(conf2), D, SOCK)
    assert not res2["problems"] and res2["ok"]


def test_nginx_t_failure_and_a_wrong_socket_fail():
    ngx = "master\t910\t/etc/nginx/nginx.conf\t1\twww-data\n\x1dDUMP\n" + nginx_dump(ok=False)
    f = findings(nginx=ngx)["nginx"]
    assert f.status == "fail" and "[emerg] unexpected" in f.evidence
    conf = NGINX_CONF.replace(f"fastcgi_pass unix:{SOCK};\n            fastcgi_param SCRIPT_FILENAME",
                              "fastcgi_pass unix:/run/php/other.sock;\n            fastcgi_param SCRIPT_FILENAME")
    assert "other.sock" in conf
    res = health.analyse_nginx(nginx_dump(conf), D, SOCK)
    assert any("passes PHP to unix:/run/php/other.sock" in p[1] for p in res["problems"])


def test_nginx_tokenizer_handles_quotes_comments_and_variables():
    toks = [t for t, _, _ in health._tokens('set $a "x;y" ; # c { }\nlog_format m \'${remote_addr} "q"\';')]
    assert toks == ["set", "$a", "x;y", ";", "log_format", "m", '${remote_addr} "q"', ";"]


# ---------------------------------------------------------------------------- logs

def test_permission_errors_since_the_deploy_fail_while_dirs_are_unwritable(pipe):
    log = (f"file\t{SHARED}/storage/logs/laravel.log\n\x1dTAIL\n"
           "[2023-11-14 21:00:00] production.ERROR: before the deploy: ignored\n"
           "[2023-11-14 22:05:00] production.ERROR: The /var/www/app/releases/r2/bootstrap/cache directory must be present and writable.\n"
           "#0 /usr/share/php/Illuminate/Foundation/PackageManifest.php(178)\n")
    owner = "notw_count\tstorage\t0\nnotw_count\tbootstrap/cache\t2\ncodew_count\t0\nodd_count\t0\n"
    fs = findings(pipe=pipe, log=log, owner=owner)
    f = fs["laravel_log"]
    assert f.status == "fail" and f.remedy == "acl"
    assert "1 permission error(s) since 2023-11-14 22:00:00Z" in f.evidence and "must be present and writable" in f.evidence
    f2 = findings(pipe=pipe, log=log)["laravel_log"]   # dirs writable now
    assert f2.status == "warn" and "writable now" in f2.evidence


def test_php_fatal_errors_of_the_pool_since_the_deploy_warn(pipe):
    tail = ("[14-Nov-2023 21:59:00 UTC] PHP Fatal error:  old\n"
            "[14-Nov-2023 22:01:00 UTC] PHP Fatal error:  Uncaught Error: Call to undefined function x()\n")
    f = findings(pipe=pipe, pool=pool_json(error_log=tail) + "\n\x1dRC 0\n")["laravel_log"]
    assert f.status == "warn" and "1 error(s)" in f.evidence and "undefined function" in f.evidence


def test_last_change_counts_heals_too():
    hist = [{"time": "2023-11-14T22:00:00Z", "action": "deploy"}, {"time": "2023-11-14T23:00:00Z", "action": "heal"}]
    assert health.last_change(hist).hour == 23


# ---------------------------------------------------------------------------- running code

def test_pool_serving_other_code_than_the_disk_is_stale(pipe):
    disk = "\x1dRUN 1\n\x1dSTATUS 200\nr2-fixed\n\x1dRUN 2\n\x1dSTATUS 200\nr2-fixed\n"
    f = findings(pipe=pipe, disk=disk)["running_code"]
    assert f.status == "fail" and f.remedy == "opcache_reset"
    assert "the pool answers 'r2' but the code on disk answers 'r2-fixed'" in f.evidence


def test_an_unstable_health_url_gives_no_stale_verdict(pipe):
    disk = "\x1dRUN 1\n\x1dSTATUS 200\nr2 at 12:00:01\n\x1dRUN 2\n\x1dSTATUS 200\nr2 at 12:00:02\n"
    f = findings(pipe=pipe, disk=disk)["running_code"]
    assert f.status == "pass"


def test_old_release_in_the_body_and_http_errors(pipe):
    f = findings(pipe=pipe, http="code\t200\n\x1dBODY\nr1", disk="")["running_code"]
    assert f.status == "fail" and "shows release r1, live is r2" in f.evidence and f.remedy == "opcache_reset"
    f = findings(pipe=pipe, http="code\t500\n\x1dBODY\nServer Error", disk="")["running_code"]
    assert f.status == "fail" and f.remedy == "fpm_reload" and "HTTP 500" in f.evidence
    f = findings(pipe=pipe, http="code\t000\n\x1dBODY\n", disk="")["running_code"]
    assert f.status == "fail" and f.remedy is None


def test_pool_resolving_another_release_and_expected_release(pipe):
    st = status_json(release="r1", release_dir="r1")
    f = findings(pipe=pipe, status=st + "\n\x1dRC 0\n")["running_code"]
    assert f.status == "fail" and "resolves current to r1" in f.evidence
    f = findings(pipe=pipe, release="r3")["running_code"]
    assert f.status == "fail" and "expected r3" in f.evidence and f.remedy is None


def test_no_health_url_warns(pipe):
    f = findings(pipe=pipe, h=host(health_url=None), http=None, disk=None)["running_code"]
    assert f.status == "warn" and "no health_url" in f.evidence


def test_missing_deploy_path():
    fs = findings(layout="deploy\tmissing\n", status=None, ping=None, pool=None, owner=None, bootstrap=None, log=None)
    assert fs["running_code"].status == "fail" and "does not exist" in fs["running_code"].evidence
    assert fs["ownership"].status == "warn"


# ---------------------------------------------------------------------------- remediation plans

def F(check, status, remedy=None, evidence="e"):
    return health.Finding(check, status, evidence, "fix", remedy)


def test_choose_orders_escalates_and_never_repeats():
    fs = [F("running_code", "fail", "opcache_reset", "stale"), F("ownership", "fail", "acl"), F("nginx", "fail")]
    assert [k for k, _ in remediate.choose(fs, [])] == ["acl", "opcache_reset"]
    # the reset did not help: the next attempt reloads; acl is not repeated
    assert [k for k, _ in remediate.choose(fs, ["acl", "opcache_reset"])] == ["fpm_reload"]
    assert "still failing after opcache_reset" in remediate.choose(fs, ["opcache_reset"])[-1][1]
    assert remediate.choose(fs, ["acl", "opcache_reset", "fpm_reload"]) == []
    # artisan brings acl before it and a reset after it; a reload absorbs the reset
    assert [k for k, _ in remediate.choose([F("bootstrap_cache", "fail", "artisan")], [])] == ["acl", "artisan", "opcache_reset"]
    assert [k for k, _ in remediate.choose([F("a", "fail", "opcache_reset"), F("b", "fail", "fpm_reload")], [])] == ["fpm_reload"]
    # warnings are never acted on
    assert remediate.choose([F("opcache", "warn", "opcache_reset")], []) == []


def test_settled_ignores_human_only_failures():
    assert remediate.settled([F("running_code", "pass"), F("nginx", "fail")])
    assert not remediate.settled([F("running_code", "pass"), F("ownership", "fail", "acl")])
    assert not remediate.settled([F("running_code", "fail")])


def test_acl_plan_uses_real_dirs_and_never_chowns_code(pipe):
    ev = health.parse(evidence())
    cmds, why = remediate.plan_remedy("acl", host(), pipe, ev)
    text = "\n".join(c.render() for c in cmds)
    assert why is None
    assert f"setfacl -R -m u:www-data:rwX,d:u:www-data:rwX,u:deploy:rwX,d:u:deploy:rwX {SHARED}/storage/ {REL}/bootstrap/cache/" in text
    assert "chown" not in text
    assert all(c.render().startswith("sudo -n ") for c in cmds)   # deploy user is not root
    root_cmds, _ = remediate.plan_remedy("acl", host(user="root"), pipe, ev)
    assert not any(c.render().startswith("sudo") for c in root_cmds)
    assert "chmod u+w {} +" in root_cmds[2].render()


def test_artisan_reset_and_reload_plans(pipe):
    ev = health.parse(evidence())
    cmds, _ = remediate.plan_remedy("artisan", host(), pipe, ev)
    assert [c.render() for c in cmds] == [f"cd {REL} && php artisan {c} --no-interaction"
                                          for c in ("config:cache", "route:cache", "view:cache", "event:cache")]
    reset, _ = remediate.plan_remedy("opcache_reset", host(fpm=Fpm(socket=SOCK, file_cache="/var/cache/opc")), pipe, ev)
    assert "find /var/cache/opc -mindepth 1 -delete" in reset[0].render()
    assert f"fpmctl.php reset --socket={SOCK}" in reset[-1].render()
    reload, _ = remediate.plan_remedy("fpm_reload", host(), pipe, ev)
    assert reload[0].render() == "sudo systemctl reload php8.2-fpm"
    assert "fpmctl.php wait" in reload[1].render() and "--timeout=30" in reload[1].render()
    none, why = remediate.plan_remedy("fpm_reload", host(fpm=Fpm(socket=SOCK)), pipe, ev)
    assert none is None and "no fpm.reload" in why


# ---------------------------------------------------------------------------- the heal loop, with a fake host

class FakeRunner:
    """Answers the gather step with the next canned evidence; every other step succeeds."""

    def __init__(self, evidences, fail_steps=()):
        self.evidences = list(evidences)
        self.facts = {}
        self.steps = []
        self.fail_steps = fail_steps

    def run(self, planned):
        out = []
        for s in planned:
            self.steps.append(s.name)
            if s.name == "health":
                self.facts["health"] = self.evidences.pop(0)
            r = StepResult(s.name, s.kind, status="ok")
            for c in s.commands:
                failed = s.name in self.fail_steps
                cr = CommandResult(s.name, c.render(), 1 if failed else 0, "boom" if failed else "")
                r.commands.append(cr)
                if failed:
                    r.status = "failed"
                    break
            out.append(r)
        return out


def test_heal_resets_then_verifies_and_emits_each_action(pipe):
    stale = evidence(disk="\x1dRUN 1\n\x1dSTATUS 200\nr2-fixed\n\x1dRUN 2\n\x1dSTATUS 200\nr2-fixed\n")
    fixed = evidence(http="code\t200\n\x1dBODY\nr2-fixed", disk="\x1dRUN 1\n\x1dSTATUS 200\nr2-fixed\n")
    runner, events = FakeRunner([stale, fixed]), []
    ok, actions = remediate.heal(runner, host(), pipe, None, events.append)
    assert ok
    assert [(a["action"], a["ok"]) for a in actions] == [("opcache_reset", True)]
    assert "code on disk answers 'r2-fixed'" in actions[0]["why"]
    assert {"type": "action", "host": "web1", "action": "opcache_reset", "why": actions[0]["why"]} in events
    assert runner.steps == ["health", "heal: opcache_reset", "health", "heal: record"]


def test_heal_escalates_then_gives_up_within_its_bound(pipe):
    broken = evidence(http="code\t500\n\x1dBODY\nServer Error", disk="\x1dRUN 1\n\x1dSTATUS 0\nboom\n")
    runner, events = FakeRunner([broken] * 5), []
    r = remediate.heal_detailed(runner, host(), pipe, None, events.append, attempts=2)
    assert not r.ok and r.state == "not healed"
    assert [a["action"] for a in r.actions] == ["fpm_reload"]          # nothing new to try in attempt 2
    assert runner.steps.count("health") == 2
    assert any(e["type"] == "message" and "still failing: running code" in e["text"] for e in events)


def test_heal_reports_a_failed_fix(pipe):
    bad = evidence(owner="notw_count\tstorage\t3\nnotw_count\tbootstrap/cache\t0\ncodew_count\t0\nodd_count\t0\n")
    runner = FakeRunner([bad, bad, bad], fail_steps=("heal: acl",))
    ok, actions = remediate.heal(runner, host(), pipe, None, lambda e: None)
    assert not ok and actions[0]["action"] == "acl" and not actions[0]["ok"] and "exit 1" in actions[0]["error"]


def test_heal_does_nothing_on_a_healthy_host(pipe):
    runner = FakeRunner([evidence()])
    ok, actions = remediate.heal(runner, host(), pipe, None, lambda e: None)
    assert ok and actions == [] and runner.steps == ["health"]


# ---------------------------------------------------------------------------- command layer

def test_gather_command_is_one_quoted_script(pipe):
    cmd = health.gather_command(host(deploy_path="/srv/my app"), pipe)
    text = cmd.render()
    assert cmd.capture == "health" and not cmd.sudo
    assert text.startswith("D='/srv/my app'; MODE=releases; WEB=www-data; DUSER=deploy;")
    assert "PORT=80;" in text and "URI=/version;" in text


def test_health_exit_code_2_on_bad_input(tmp_path, capsys):
    from deploy import cli_health
    inv = tmp_path / "h.yml"
    inv.write_text(f"hosts:\n  web1:\n    address: 10.0.0.5\n    fpm: {{socket: {SOCK}}}\n")
    assert cli_health.health("nope", inventory=str(inv)) == 2
    assert cli_health.heal("nope", inventory=str(inv)) == 2


def test_format_findings_is_plain_text():
    from deploy import cli_health
    text = cli_health.format_findings([F("nginx", "fail", None, "x " * 80), F("fpm", "pass")])
    assert "FAIL" in text and "fix: fix  [manual]" in text and "\x1b" not in text


# ---------------------------------------------------------------------------- strategy in-place
# Code directly under the deploy path, RELEASE at <deploy_path>/RELEASE, storage/ and .env inside
# it, no current symlink, hard-link snapshots of earlier trees in .deploy/snapshots/<id>.

IP = "/srv/shop"


@pytest.fixture(scope="module")
def ipipe(tmp_path_factory):
    play = tmp_path_factory.mktemp("inplace") / "inplace.yml"
    play.write_text(f"source: {REPO / 'sample-app'}\nstrategy: in-place\nkeep_releases: 3\nsteps:\n  - sync\n"
                    "  - ownership\n  - artisan: {commands: [config:cache, route:cache, view:cache]}\n"
                    "  - activate\n  - verify: {timeout: 3}\n")
    return pipeline_mod.load(play)


IP_NGINX = NGINX_CONF.replace(f"root {D}/current/public;", f"root {IP}/public;").replace("$realpath_root", "$document_root")


def ip_status(**kw):
    opcache = {"cached_by_release": {}, "stale_scripts": None, "changed_scripts": 0, "changed_examples": []}
    opcache.update(kw.pop("opcache", {}))
    base = dict(release="i2", release_dir=None, layout="in-place", current_realpath=IP, opcache=opcache)
    base.update(kw)
    return status_json(**base) + "\n\x1dRC 0\n"


def ip_evidence(**o):
    g = {
        "layout": (f"deploy\tok\nlayout\tin-place\nmode\tin-place\nsymlink\tno\ncurrent\tno\nlink\t\nreal\t{IP}\n"
                   f"release\ti1\nrelease_present\tyes\nrelease_file\ti2\nwritable\tstorage\t{IP}/storage\n"
                   f"writable\tbootstrap/cache\t{IP}/bootstrap/cache\n"),
        "history": json.dumps({"time": "2023-11-14T22:00:00Z", "action": "deploy", "release": "i2", "state": "deployed"}) + "\n",
        "status": ip_status(),
        "http": "code\t200\n\x1dBODY\ni2",
        "disk": "\x1dRUN 1\n\x1dSTATUS 200\ni2\n",
        "nginx": "master\t910\t/etc/nginx/nginx.conf\t0\twww-data\nworker_socket\tok\n\x1dDUMP\n" + nginx_dump(IP_NGINX),
        "bootstrap": (f"file\tconfig.php\tdeploy:deploy\t644\t1700000100.0\nfile\troutes-v7.php\tdeploy:deploy\t644\t1700000100.0\n"
                      f"file\tpackages.php\twww-data:www-data\t644\t1700000100.0\n"
                      f"file\tservices.php\twww-data:www-data\t644\t1700000100.0\nconfigref\t10\t{IP}\nbasepath\t8\t{IP}\n"),
        "log": f"file\t{IP}/storage/logs/laravel.log\n\x1dTAIL\n",
    }
    g.update(o)
    return evidence(**g)


def ip_host(**kw):
    return host(deploy_path=IP, **kw)


def test_in_place_healthy_host_passes_every_check(ipipe):
    fs = findings(ip_evidence(), h=ip_host(), pipe=ipipe, release="i2")
    assert {c: f.status for c, f in fs.items() if f.status != "pass"} == {"opcache": "warn"}, \
        {c: f.evidence for c, f in fs.items() if f.status != "pass"}
    # validate_timestamps=0 with no reset in the pipeline: said, not failed (verify's probe + heal cover it)
    assert "verify's probe catches it" in fs["opcache"].evidence
    rc = fs["running_code"]
    assert f"the pool executes i2 in place ({IP}/RELEASE)" in rc.evidence
    assert rc.details["layout"] == "in-place" and rc.details["live"] == "i2"
    assert f"built for {IP} (in place)" in fs["bootstrap_cache"].evidence
    # no symlink switch: $document_root is fine, and said so
    assert "$realpath_root not required" in fs["nginx"].evidence
    assert "in place" in fs["ownership"].evidence


def test_in_place_is_not_a_missing_current(ipipe):
    """The bug: in place there is no current, and that is not 'no live release'."""
    fs = findings(ip_evidence(), h=ip_host(), pipe=ipipe)
    assert "current is missing" not in fs["running_code"].evidence
    assert fs["running_code"].status == "pass"


def test_in_place_stale_scripts_fail_with_the_reset(ipipe):
    st = ip_status(opcache={"changed_scripts": 2, "changed_examples": [f"{IP}/bootstrap/cache/config.php",
                                                                        f"{IP}/app/Http/Controllers/VersionController.php"]})
    fs = findings(ip_evidence(status=st, disk="\x1dRUN 1\n\x1dSTATUS 200\ni2-v2\n\x1dRUN 2\n\x1dSTATUS 200\ni2-v2\n"),
                  h=ip_host(), pipe=ipipe, release="i2")
    rc = fs["running_code"]
    assert rc.status == "fail" and rc.remedy == "opcache_reset"
    assert "2 cached script(s) changed on disk" in rc.evidence and "bootstrap/cache/config.php" in rc.evidence
    assert f"{IP}/bootstrap" not in rc.evidence          # paths shown relative to the deploy path
    assert "validate_timestamps=0" in rc.evidence
    assert "code on disk answers 'i2-v2'" in rc.evidence
    assert [k for k, _ in remediate.choose(list(fs.values()), [])] == ["opcache_reset"]


def test_in_place_release_file_and_expected_release(ipipe):
    rc = findings(ip_evidence(), h=ip_host(), pipe=ipipe, release="i3")["running_code"]
    assert rc.status == "fail" and f"{IP}/RELEASE says i2, expected i3" in rc.evidence and rc.remedy is None
    layout = ip_evidence().split("\x1dS layout ")[1].split("\n", 1)[1].split("\n\x1dS")[0]
    no_release = layout.replace("release_present\tyes\n", "").replace("release_file\ti2\n", "release_file\t\n")
    rc = findings(ip_evidence(layout=no_release + "\n"), h=ip_host(), pipe=ipipe)["running_code"]
    assert rc.status == "fail" and f"{IP}/RELEASE is missing" in rc.evidence and "fab rollback" in rc.fix


def test_in_place_pipeline_on_a_host_with_current_is_a_mismatch(ipipe):
    layout = (f"deploy\tok\nlayout\tin-place\nmode\tin-place\nsymlink\tyes\ncurrent\tyes\nlink\treleases/r2\nreal\t{IP}\n"
              f"release_present\tyes\nrelease_file\ti2\n")
    st = ip_status(layout="releases", release_dir="r2", current_realpath=f"{IP}/releases/r2")
    rc = findings(ip_evidence(layout=layout, status=st), h=ip_host(), pipe=ipipe)["running_code"]
    assert rc.status == "fail" and rc.remedy is None
    assert f"{IP}/current exists (-> releases/r2)" in rc.evidence and "the pool sees the releases layout" in rc.evidence


def test_releases_pipeline_on_an_in_place_host_says_so(pipe):
    layout = "deploy\tok\nlayout\treleases\nmode\treleases\nsymlink\tno\ncurrent\tno\nlink\t\nreal\t\ninplace_hint\tyes\n"
    rc = findings(ip_evidence(layout=layout, status=ip_status()), h=ip_host(), pipe=pipe)["running_code"]
    assert rc.status == "fail" and "current is missing" in rc.evidence
    assert "looks laid out in place" in rc.evidence and "strategy: in-place" in rc.evidence


def test_layout_follows_the_pipeline_else_the_host(pipe, ipipe):
    assert health.layout_mode(ipipe) == "in-place" and health.layout_mode(pipe) == "releases"
    assert health.layout_mode(None) == "auto" and health.layout_mode(pipe, "auto") == "auto"
    assert "; MODE=in-place;" in health.gather_command(ip_host(), ipipe).render()
    assert "; MODE=auto;" in health.gather_command(ip_host(), None).render()
    # canned evidence without a layout line: without a pipeline the host decides (fpmctl status
    # says in-place; or: no current and a RELEASE file)
    layout = f"deploy\tok\nsymlink\tno\ncurrent\tno\nlink\t\nreal\t{IP}\nrelease_present\tyes\nrelease_file\ti2\n" \
             f"writable\tstorage\t{IP}/storage\nwritable\tbootstrap/cache\t{IP}/bootstrap/cache\n"
    for st in (ip_status(), status_json(release="i2", release_dir=None) + "\n\x1dRC 0\n"):
        ev = health.parse(ip_evidence(layout=layout, status=st))
        health.evaluate(ev, ip_host(), None)
        assert health.in_place(ev)
    ev = health.parse(ip_evidence(layout=layout))
    health.evaluate(ev, ip_host(), pipe)          # a pipeline with the releases strategy decides
    assert not health.in_place(ev)


def test_in_place_config_cache_built_elsewhere_fails(ipipe):
    boot = (f"file\tconfig.php\td:d\t644\t1.0\nfile\troutes-v7.php\td:d\t644\t1.0\n"
            f"configref\t4\t{IP}/.deploy/snapshots/i1\nbasepath\t8\t/home/dev/shop\n")
    f = findings(ip_evidence(bootstrap=boot), h=ip_host(), pipe=ipipe)["bootstrap_cache"]
    assert f.status == "fail" and f.remedy == "artisan"
    assert "built in the snapshot of i1" in f.evidence and "built for another directory (/home/dev/shop)" in f.evidence
    assert "in the live tree" in f.fix


def test_in_place_nginx_root_must_be_the_public_dir(ipipe):
    conf = IP_NGINX.replace(f"root {IP}/public;", f"root {IP}/current/public;")
    ngx = "master\t910\t/etc/nginx/nginx.conf\t0\twww-data\n\x1dDUMP\n" + nginx_dump(conf)
    f = findings(ip_evidence(nginx=ngx), h=ip_host(), pipe=ipipe)["nginx"]
    assert f.status == "warn" and f"root {IP}/current/public is not {IP}/public" in f.evidence
    res = health.analyse_nginx(nginx_dump(IP_NGINX), IP, SOCK, symlinked=False, in_place=True)
    assert not res["problems"] and "$realpath_root not required" in res["ok"][0]


def test_in_place_code_writable_by_the_web_user_fix_spares_the_writable_dirs(ipipe):
    owner = (f"notw_count\tstorage\t0\nnotw_count\tbootstrap/cache\t0\n"
             f"codew\twww-data:www-data\t664\t{IP}/app/Models/User.php\ncodew_count\t1\nodd_count\t0\n")
    f = findings(ip_evidence(owner=owner), h=ip_host(), pipe=ipipe)["ownership"]
    assert f.status == "fail" and f.remedy is None and "User.php" in f.evidence
    assert "-path /srv/shop/.deploy" in f.fix and "except storage and bootstrap/cache and .deploy" in f.fix


def test_in_place_gather_script_skips_the_snapshots(ipipe):
    text = health.gather_command(ip_host(), ipipe).render()
    assert '-path "$REL/.deploy" -o' in text and 'find "$REL" -xdev -path "$REL/.deploy" -prune' in text
    assert "str_starts_with($path, $r . '/.deploy/')" in health.POOL_PROBE   # the pool probe skips them too


def test_in_place_plans_work_in_the_deploy_path(ipipe):
    ev = health.parse(ip_evidence())
    health.evaluate(ev, ip_host(), ipipe)
    cmds, _ = remediate.plan_remedy("artisan", ip_host(), ipipe, ev)
    assert [c.render() for c in cmds][0] == f"cd {IP} && php artisan config:cache --no-interaction"
    cmds, _ = remediate.plan_remedy("acl", ip_host(user="root"), ipipe, ev)
    assert f"setfacl -R -m u:www-data:rwX,d:u:www-data:rwX {IP}/storage/ {IP}/bootstrap/cache/" in cmds[1].render()


def test_in_place_heal_records_the_live_release(ipipe):
    stale = ip_evidence(status=ip_status(opcache={"changed_scripts": 1, "changed_examples": [f"{IP}/app/X.php"]}))
    runner = FakeRunner([stale, ip_evidence()])
    ok, actions = remediate.heal(runner, ip_host(), ipipe, "i2", lambda e: None)
    assert ok and [a["action"] for a in actions] == ["opcache_reset"]
    assert "stale code: 1 cached script(s)" in actions[0]["why"]
    assert runner.steps == ["health", "heal: opcache_reset", "health", "heal: record"]


def test_without_pipeline_flag_the_host_decides_and_the_default_pipeline_is_no_evidence(pipe):
    """`fab health` without --pipeline on an in-place host: the default (releases) pipeline's
    event:cache and resets do not describe this host."""
    # given explicitly, the releases pipeline's cache commands count (event:cache: events.php)
    assert findings(ip_evidence(), h=ip_host(), pipe=pipe)["bootstrap_cache"].status == "fail"
    ev = health.parse(ip_evidence())                          # the gather, in auto mode, said in-place
    fs = {x.check: x for x in health.evaluate(ev, ip_host(), pipe, layout="auto")}
    assert fs["bootstrap_cache"].status == "warn" and "events.php missing" in fs["bootstrap_cache"].evidence
    assert "no pipeline describes this host" in fs["bootstrap_cache"].evidence
    assert fs["running_code"].status == "pass"
    assert "no pipeline was given" in fs["opcache"].evidence


def test_in_place_pool_reading_another_release_needs_a_human(ipipe):
    rc = findings(ip_evidence(status=ip_status(release="i1")), h=ip_host(), pipe=ipipe)["running_code"]
    assert rc.status == "fail" and "the pool reads release 'i1'" in rc.evidence and rc.remedy is None
