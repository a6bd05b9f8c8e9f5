"""The pure parsers of deploy/health/: nginx configuration, Laravel and PHP logs, and each
section of deploy/remote/gather.sh's output. Tables of inputs and what they must give."""

import json
from datetime import datetime, timezone

import pytest

from deploy import remote
from deploy.health import logs, nginx, sections

D = "/var/www/app"
SOCK = "/run/php/php8.2-fpm.sock"


# ---------------------------------------------------------------------------------------- nginx

@pytest.mark.parametrize("text, want", [
    ("listen 80;", ["listen", "80", ";"]),
    ("root /a/b; # a comment { }\nindex x;", ["root", "/a/b", ";", "index", "x", ";"]),
    ('set $a "x;y" ;', ["set", "$a", "x;y", ";"]),
    ("log_format m '${remote_addr} \"q\"';", ["log_format", "m", '${remote_addr} "q"', ";"]),
    ("location ~ \\.php$ {}", ["location", "~", "\\.php$", "{", "}"]),
    ('return 200 "a\\"b";', ["return", "200", 'a"b', ";"]),
    ("fastcgi_param X ${a}b;", ["fastcgi_param", "X", "${a}b", ";"]),
    ("", []),
])
def test_tokens(text, want):
    assert [t for t, _, _ in nginx.tokens(text)] == want


def test_tokens_count_lines_inside_quotes():
    toks = nginx.tokens('a "x\ny";\nb;')
    assert [(t, line) for t, line, _ in toks] == [("a", 1), ("x\ny", 2), (";", 2), ("b", 3), (";", 3)]


def dump(files):
    """An `nginx -T` dump of {path: text}, the first file being the main one."""
    out = "nginx: the configuration file /etc/nginx/nginx.conf syntax is ok\n"
    for path, text in files.items():
        out += f"# configuration file {path}:\n{text}\n"
    return out


def test_nginx_files_splits_the_dump_in_order():
    files = nginx.nginx_files(dump({"/etc/nginx/nginx.conf": "a;", "/etc/nginx/x.conf": "b;\nc;"}))
    assert list(files) == ["/etc/nginx/nginx.conf", "/etc/nginx/x.conf"]
    assert files["/etc/nginx/x.conf"] == "b;\nc;"
    assert nginx.nginx_files("") == {}


def test_includes_are_followed_with_globs_and_relative_paths():
    main, tree = nginx.nginx_tree(dump({
        "/etc/nginx/nginx.conf": "http { include sites/*.conf; }",
        "/etc/nginx/sites/a.conf": "server { listen 81; }",
        "/etc/nginx/sites/b.conf": "server { listen 82; }",
    }))
    http = tree[0]
    assert main == "/etc/nginx/nginx.conf" and http.name == "http"
    assert [(d.name, d.file) for d in http.block] == [("server", "/etc/nginx/sites/a.conf"),
                                                     ("server", "/etc/nginx/sites/b.conf")]


def server(php_location, root=f"{D}/current/public", extra=""):
    return {"/etc/nginx/nginx.conf": f"http {{ server {{ listen 80; root {root}; {extra}\n"
                                     f"location ~ \\.php$ {{ {php_location} }} }} }}",
            "/etc/nginx/fastcgi_params": "fastcgi_param DOCUMENT_ROOT $document_root;"}


GOOD = (f"include fastcgi_params; fastcgi_pass unix:{SOCK}; fastcgi_param SCRIPT_FILENAME"
        " $realpath_root$fastcgi_script_name; fastcgi_param DOCUMENT_ROOT $realpath_root;")


@pytest.mark.parametrize("files, kw, want", [
    # (files, analyse_nginx keywords, [(status, text in the evidence)] of the problems)
    (server(GOOD), {}, []),
    (server(GOOD.replace("$realpath_root$fastcgi", "$document_root$fastcgi")), {},
     [("fail", "SCRIPT_FILENAME $document_root$fastcgi_script_name")]),
    (server(f"include fastcgi_params; fastcgi_pass unix:{SOCK}; fastcgi_param SCRIPT_FILENAME"
            " $realpath_root$fastcgi_script_name;"), {},
     [("fail", "DOCUMENT_ROOT $document_root (/etc/nginx/fastcgi_params:1)")]),       # inherited from the include
    (server(GOOD.replace("$realpath_root$fastcgi", "$document_root$fastcgi")), {"symlinked": False},
     [("warn", "fine while current is not a symlink")]),
    (server(GOOD.replace(SOCK, "/run/php/other.sock")), {}, [("fail", "passes PHP to unix:/run/php/other.sock")]),
    (server(GOOD, root="/srv/elsewhere/public"), {},                   # ours by its fastcgi_pass
     [("warn", "root /srv/elsewhere/public is not under")]),
    (server(f"fastcgi_pass unix:{SOCK}; fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;",
            root=f"{D}/public"), {"symlinked": False, "in_place": True}, []),
    (server(f"fastcgi_pass unix:{SOCK};", root=f"{D}/public"), {"symlinked": False, "in_place": True},
     [("warn", "passes no SCRIPT_FILENAME")]),
    (server(GOOD, root=f"{D}/current/public"), {"symlinked": False, "in_place": True},
     [("warn", f"is not {D}/public")]),
])
def test_analyse_nginx(files, kw, want):
    res = nginx.analyse_nginx(dump(files), D, SOCK, **kw)
    assert res["server"]
    got = [(s, e) for s, e, _ in res["problems"]]
    assert len(got) == len(want), got
    for (status, text), (gs, ge) in zip(want, got):
        assert gs == status and text in ge, (gs, ge)
    if not want:
        assert res["ok"] and res["location"] == "/etc/nginx/nginx.conf:2"


def test_analyse_nginx_server_level_params_are_not_merged_into_a_location_with_its_own():
    files = server(f"include fastcgi_params; fastcgi_pass unix:{SOCK};",
                   extra="fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;"
                         " fastcgi_param DOCUMENT_ROOT $realpath_root;")
    res = nginx.analyse_nginx(dump(files), D, SOCK)
    assert res["problems"] and "SCRIPT_FILENAME missing" in res["problems"][0][1]


def test_analyse_nginx_ignores_other_servers_and_fpm_status_pages():
    files = {"/etc/nginx/nginx.conf": "http { server { root /srv/other; location ~ \\.php$ { fastcgi_pass unix:/x; } }"
                                      f" server {{ root {D}/current/public; location /fpm {{ fastcgi_pass unix:{SOCK};"
                                      " fastcgi_param SCRIPT_FILENAME $fastcgi_script_name; } } }"}
    res = nginx.analyse_nginx(dump(files), D, SOCK)
    assert res["server"] and res["problems"] == [] and res["ok"] == []
    assert nginx.analyse_nginx(dump({"/etc/nginx/nginx.conf": "http { server { root /srv/x; } }"}), D, SOCK)["server"] is False


def test_test_errors():
    text = "nginx: [emerg] unexpected \"}\" in /etc/nginx/nginx.conf:12\nnginx: configuration file test failed\n"
    assert nginx.test_errors(text) == ['nginx: [emerg] unexpected "}" in /etc/nginx/nginx.conf:12']


# ----------------------------------------------------------------------------------------- logs

UTC = timezone.utc


@pytest.mark.parametrize("line, want", [
    ("[2023-11-14 22:05:00] production.ERROR: boom", (datetime(2023, 11, 14, 22, 5, tzinfo=UTC), "ERROR", "boom")),
    ("[2023-11-14T22:05:00.123456+00:00] local.WARNING: w", (datetime(2023, 11, 14, 22, 5, tzinfo=UTC), "WARNING", "w")),
    ("[2023-11-14 22:05:00] production.CRITICAL:", (datetime(2023, 11, 14, 22, 5, tzinfo=UTC), "CRITICAL", "")),
    ("#0 /usr/share/php/Illuminate/Foundation/PackageManifest.php(178)", None),
    ("[stacktrace]", None),
    ("", None),
])
def test_laravel_entries(line, want):
    assert logs.laravel_entries([line]) == ([want] if want else [])


@pytest.mark.parametrize("line, level", [
    ("[14-Nov-2023 22:01:00 UTC] PHP Fatal error:  Uncaught Error: x", "ERROR"),
    ("[14-Nov-2023 22:01:00] PHP Parse error:  syntax error", "ERROR"),
    ("[14-Nov-2023 22:01:00 Europe/Berlin] PHP Warning:  foo", "WARNING"),
    ("[14-Nov-2023 22:01:00 UTC] PHP Notice:  bar", "NOTICE"),
    ("[14-Nov-2023 22:01:00 UTC] PHP Deprecated:  baz", "NOTICE"),
    ("not a log line", None),
    ("[99-Nov-2023 22:01:00 UTC] PHP Fatal error: bad date", None),
])
def test_php_entries(line, level):
    got = logs.php_entries(line)
    assert [e[1] for e in got] == ([level] if level else [])


@pytest.mark.parametrize("message, perm", [
    ("The /x/bootstrap/cache directory must be present and writable.", True),
    ('The stream or file "/x/laravel.log" could not be opened in append mode: Failed to open stream: Permission denied', True),
    ("file_put_contents(/x): Failed to open stream: Read-only file system", True),
    ("Call to undefined function x()", False),
])
def test_permission_errors(message, perm):
    assert logs.is_permission_error(message) is perm


@pytest.mark.parametrize("history, hour", [
    ([], None),
    ([{"time": "2023-11-14T22:00:00Z", "action": "deploy"}], 22),
    ([{"time": "2023-11-14T22:00:00Z", "action": "deploy"}, {"time": "2023-11-14T23:00:00Z", "action": "heal"}], 23),
    ([{"time": "2023-11-14T22:00:00Z", "action": "rollback"}, {"time": "2023-11-14T23:00:00Z", "action": "unlock"}], 22),
    ([{"time": "garbage", "action": "deploy"}], None),
])
def test_last_change(history, hour):
    t = logs.last_change(history)
    assert (t.hour if t else None) == hour


# ------------------------------------------------------------------------------------- sections

def test_split_reads_sections_and_host_times_even_when_the_output_was_stripped():
    text = "health evidence v2\n\n\x1dS meta 10.0\nuser\tdeploy\n\n\x1dS layout 10.25\ndeploy\tok\n\n\x1dS end 10.5"
    s, times = sections.split(text)
    assert s == {"meta": "user\tdeploy\n", "layout": "deploy\tok\n", "end": ""}
    assert times == [("meta", 10.0), ("layout", 10.25), ("end", 10.5)]


@pytest.mark.parametrize("text, want", [
    (None, None),
    ('{"ok": true, "pid": 3}\n\x1dRC 0\n', {"rc": 0, "data": {"ok": True, "pid": 3}}),
    ('warning: x\n{"ok": false, "error_kind": "timeout"}\n\x1dRC 3', {"rc": 3, "data": {"ok": False, "error_kind": "timeout"}}),
    ("{broken\n\x1dRC 3\n", {"rc": 3, "data": None}),
    ("", {"rc": None, "data": None}),
])
def test_json_with_rc(text, want):
    assert sections.json_with_rc(text) == want


@pytest.mark.parametrize("text, want", [
    ("", {"releases": [], "writable": {}}),
    ("deploy\tmissing\n", {"releases": [], "writable": {}, "deploy": "missing"}),
    ("deploy\tok\nlink\t\nrelease\tr1\nrelease\tr2\nwritable\tstorage\t/s\nwritable\tbootstrap/cache\n",
     {"releases": ["r1", "r2"], "writable": {"storage": "/s", "bootstrap/cache": ""}, "deploy": "ok", "link": ""}),
])
def test_layout(text, want):
    assert sections.layout(text) == want


def test_programs_names_what_the_host_lacks():
    names = remote.names(remote.PHP)
    good = "".join(f"{remote.digest(n)}  {n}\n" for n in names)
    assert sections.programs(good) == {"have": {n: remote.digest(n) for n in names}, "missing": []}
    stale = good.replace(remote.digest("probe.php"), "0" * 64)
    assert sections.programs(stale)["missing"] == ["probe.php"]
    assert sections.programs(None)["missing"] == names


def test_pool_is_the_cached_scope_of_fpmctl_status():
    cached = {"epoch": 5, "changed_count": 1, "changed": [{"path": "/x.php", "mtime": 6, "why": "modified"}]}
    st = {"rc": 0, "data": {"pid": 7, "current_realpath": "/r", "error_log": "/l", "error_log_tail": "t",
                            "opcache": {"changed_cached": cached}}}
    assert sections.pool(st) == {"rc": 0, "data": {"pid": 7, "live": "/r", "opcache": cached, "error_log": "/l",
                                                   "error_log_tail": "t"}}
    assert sections.pool({"rc": 3, "data": {"ok": False}}) is None
    assert sections.pool({"rc": 0, "data": {"opcache": {"enabled": False, "changed_cached": None}}}) is None
    assert sections.pool(None) is None


@pytest.mark.parametrize("text, want", [
    (None, None),
    ("code\t200\n\x1dBODY\nr2\n", {"code": 200, "body": "r2"}),
    ("code\t000\n\x1dBODY\n", {"code": 0, "body": ""}),
    ("code\t502\n\x1dBODY\n<html>\nBad Gateway</html>", {"code": 502, "body": "<html>\nBad Gateway</html>"}),
])
def test_http(text, want):
    assert sections.http(text) == want


@pytest.mark.parametrize("text, want", [
    ("", []),
    ("\x1dRUN 1\n\x1dSTATUS 200\nr2\n", [{"status": 200, "body": "r2"}]),
    ("\x1dRUN 1\n\x1dSTATUS 200\na\n\x1dRUN 2\n\x1dSTATUS 500\nb\n", [{"status": 200, "body": "a"}, {"status": 500, "body": "b"}]),
    ("\x1dRUN 1\nPHP Fatal error\n", [{"status": None, "body": "PHP Fatal error"}]),
])
def test_disk(text, want):
    assert sections.disk(text) == want


def test_fpm():
    got = sections.fpm("listen_inode\t35684\nmasters\t900 901 \nhttp_owners\t910 911 \n"
                       "master\t900\tyes\t5000\t4\tphp-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)\n"
                       "socket\twww-data\twww-data\t660\n")
    assert got == {"listen_inode": "35684", "all_masters": 2, "http_owners": [910, 911], "socket":
                   {"state": "ok", "owner": "www-data", "group": "www-data", "mode": "660"},
                   "masters": [{"pid": 900, "owns_socket": "yes", "uptime": 5000, "workers": 4,
                                "args": "php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"}]}
    assert sections.fpm("listen_inode\tnone\nsocket\tmissing\n")["socket"] == {"state": "missing"}
    assert sections.fpm("")["listen_inode"] is None


@pytest.mark.parametrize("text, key, want", [
    ("master\t910\t/etc/nginx/nginx.conf\t0\twww-data\nworker_socket\tok\n\x1dDUMP\n# configuration file x:\n",
     "master", {"pid": 910, "conf": "/etc/nginx/nginx.conf", "rc": 0, "worker_user": "www-data"}),
    ("other\t77\tdefault\t1\ndefault\t126\n", "default_rc", 126),
    ("nonginx\n", "none", True),
    ("master\t910\tdefault\t0\twww-data\nworker_socket\tdenied\n", "worker_socket", "denied"),
])
def test_nginx_section(text, key, want):
    assert sections.nginx(text)[key] == want


def test_owner_and_bootstrap():
    own = sections.owner("notw\troot:root\t755\t/s/logs\nnotw_count\tstorage\t7\nnotw_count\tbootstrap/cache\t0\n"
                         "codew_count\t0\ncodew_top\t/d/releases\nodd_count\t2\nmissing\tstorage\t\n")
    assert own["checked"] and own["notw"] == [{"owner": "root:root", "mode": "755", "path": "/s/logs"}]
    assert own["notw_count"] == {"storage": 7, "bootstrap/cache": 0} and own["odd_count"] == 2
    assert own["codew_top"] == ["/d/releases"] and own["missing"] == [{"name": "storage", "path": ""}]
    assert sections.owner("noweb\n")["noweb"] and not sections.owner("")["checked"]
    boot = sections.bootstrap("file\tconfig.php\tdeploy:deploy\t644\t17.5\nconfigref\t12\t/d/releases/r2\n"
                              "newer_env\t/d/shared/.env\nnewer_routes\t/d/releases/r2/routes/web.php\n")
    assert boot["files"] == {"config.php": {"owner": "deploy:deploy", "mode": "644", "mtime": 17.5}}
    assert boot["configref"] == {"/d/releases/r2": 12} and boot["newer_env"] == "/d/shared/.env"
    assert boot["newer_routes"] == ["/d/releases/r2/routes/web.php"] and sections.bootstrap("nodir\n")["nodir"]


def test_log():
    got = sections.log("file\t/s/logs/laravel.log\n\x1dTAIL\n[2023-11-14 22:00:00] p.ERROR: x\n#0 trace\n")
    assert got == {"file": "/s/logs/laravel.log", "lines": ["[2023-11-14 22:00:00] p.ERROR: x", "#0 trace", ""]}
    assert sections.log("file\t\n") == {"file": None, "lines": []}


@pytest.mark.parametrize("text, want", [
    (None, {"file": None, "path": None, "keys": {}}),
    ("file\tmissing\t/d/releases/r2/.env\n", {"file": "missing", "path": "/d/releases/r2/.env", "keys": {}}),
    ("file\tdangling\t/d/shared/.env\n", {"file": "dangling", "path": "/d/shared/.env", "keys": {}}),
    ("file\tok\t/d/shared/.env\nkey\tAPP_KEY\tset\nkey\tDB_PASSWORD\tempty\n",
     {"file": "ok", "path": "/d/shared/.env", "keys": {"APP_KEY": "set", "DB_PASSWORD": "empty"}}),
])
def test_env(text, want):
    assert sections.env(text) == want


def test_app():
    report = {"app": True, "database": {"ok": True}}
    got = sections.app("PHP Warning:  x in y\n" + json.dumps(report) + "\n\x1dRC 0\n")
    assert got == {"checked": True, "rc": 0, "data": report, "noise": "PHP Warning:  x in y"}
    got = sections.app("PHP Fatal error:  Allowed memory size exhausted\n\x1dRC 255\n")
    assert got["data"] is None and got["rc"] == 255 and "Allowed memory" in got["noise"]
    assert sections.app(None) == {"checked": False, "rc": None, "data": None, "noise": ""}


LARAVEL8_TABLE = """+------+------------------------------------------------+-------+
| Ran? | Migration                                      | Batch |
+------+------------------------------------------------+-------+
| Yes  | 2014_10_12_000000_create_users_table           | 1     |
| Yes  | 2024_01_01_000000_create_release_runs_table    | 2     |
| No   | 2024_02_01_000000_add_stamp_to_release_runs    |       |
+------+------------------------------------------------+-------+
"""
LARAVEL10_LINES = """
  Migration name .............................................. Batch / Status
  2014_10_12_000000_create_users_table ................................ [1] Ran
  2024_02_01_000000_add_stamp_to_release_runs ......................... Pending
"""


@pytest.mark.parametrize("output, rc, state, ran, pending, batch", [
    (LARAVEL8_TABLE, 0, "table", ["2014_10_12_000000_create_users_table", "2024_01_01_000000_create_release_runs_table"],
     ["2024_02_01_000000_add_stamp_to_release_runs"], 2),
    (LARAVEL8_TABLE.replace("| No   | 2024_02_01_000000_add_stamp_to_release_runs    |       |\n", ""), 0, "table",
     ["2014_10_12_000000_create_users_table", "2024_01_01_000000_create_release_runs_table"], [], 2),
    (LARAVEL10_LINES, 0, "table", ["2014_10_12_000000_create_users_table"], ["2024_02_01_000000_add_stamp_to_release_runs"], 1),
    ("Migration table not found.\n", 1, "no_table", [], [], None),
    ("\n   ERROR  Migration table not found.\n", 1, "no_table", [], [], None),
    ("No migrations found\n", 0, "none", [], [], None),
    ("\n  In Connection.php line 712:\n  SQLSTATE[HY000] [2002] Connection refused\n", 1, "error", [], [], None),
    ("", 1, "error", [], [], None),
])
def test_migrate_status(output, rc, state, ran, pending, batch):
    got = sections.migrate_status(output, rc)
    assert (got["state"], got["ran"], got["pending"], got["batch"]) == (state, ran, pending, batch)
    if state == "error":
        assert got["error"]


WORKERS_OUT = ("switched\t1700000000.5\nas\troot\n\x1dOUT\n"
               "ok\tpid=11\tstarted=1700000001.00\tcwd=/d/releases/r2\trelease=/d/releases/r2\t"
               "cmd=php /d/current/artisan queue:work redis\n"
               "stale\tpid=12\tstarted=1699999000.00\tcwd=/d/releases/r1\trelease=/d/releases/r1\t"
               "why=runs /d/releases/r1, not the live /d/releases/r2\tcmd=php /d/current/artisan schedule:work\n"
               "unknown\tpid=13\tstarted=1.00\tcwd=\trelease=\twhy=cannot read /proc/13/cwd (run as root or as the"
               " process's user)\tcmd=php artisan queue:work\n"
               "NOT proven: 2 of 3 process(es) do not run /d/releases/r2 started after 1700000000.5\n\x1dRC 1\n")


def test_workers():
    got = sections.workers(WORKERS_OUT)
    assert got["checked"] and got["switched"] == 1700000000.5 and got["as"] == "root" and got["rc"] == 1
    assert [(p["status"], p["pid"]) for p in got["processes"]] == [("ok", 11), ("stale", 12), ("unknown", 13)]
    assert got["processes"][1]["why"] == "runs /d/releases/r1, not the live /d/releases/r2"
    assert got["processes"][0]["cmd"] == "php /d/current/artisan queue:work redis"
    assert got["summary"].startswith("NOT proven: 2 of 3")
    bad = sections.workers("switched\t\nas\tdeploy\n\x1dOUT\nworkers.sh: no deploy path /x\n\x1dRC 2\n")
    assert bad["rc"] == 2 and bad["error"] == "workers.sh: no deploy path /x" and bad["switched"] is None
    assert sections.workers(None)["checked"] is False
