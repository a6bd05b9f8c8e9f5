"""Plans for people and machines, built from data (no SSH): the header, the step x host summary,
hosts that differ only in their own values shown once, --verbose, the JSON document (the
saved-plan format), saved plans refused when an input changed, and the parsing behind --check."""

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import cli, inventory, pipeline, plan, plancheck, planfile
from deploy.errors import ConfigError
from deploy.report import Reporter
from helpers import PROJECT, write

INV = """
defaults:
  user: {user}
  key: /keys/id
  known_hosts: /keys/known_hosts
  fpm: {{socket: /run/php/fpm.sock, reload: sudo -n systemctl reload php8.2-fpm}}
hosts:
  web1: {{address: 10.0.0.11, deploy_path: /srv/web1/app, health_url: "http://10.0.0.11/up"}}
  web2: {{address: 10.0.0.12, deploy_path: /srv/web2/app, health_url: "http://10.0.0.12/up"}}
  web3: {{address: 10.0.0.13, deploy_path: /srv/web3/app, health_url: "http://10.0.0.13/up"}}
  odd:  {{address: 10.0.0.14, deploy_path: /srv/odd/app, health_url: "http://10.0.0.14/up", env: {{MODE: odd}}}}
groups:
  web: [web1, web2, web3, odd]
"""

PIPE = """
source: {source}
serial: [1, "100%"]
max_fail: 1
steps:
  - sync
  - shared
  - ownership
  - artisan: {{commands: [config:cache]}}
  - activate
  - opcache_reset
  - fpm_reload
  - verify
  - run:
      name: smoke
      commands: ["./smoke.sh"]
      env: {{TOKEN: {{from_env: SMOKE_TOKEN}}}}
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("SMOKE_TOKEN", "t0ps3cr3t")
    app = tmp_path / "app"
    shutil.copytree(PROJECT / "sample-app", app, symlinks=True, ignore=shutil.ignore_patterns("vendor"))
    inv = write(tmp_path / "hosts" / "web.yml", INV.format(user="root"))
    pipe = write(tmp_path / "playbooks" / "p.yml", PIPE.format(source=app))
    return tmp_path, inv, pipe, app


def run_plan(inv, pipe, **kw):
    out = io.StringIO()
    code = cli.plan_cmd("web", str(inv), str(pipe), release="r9", reporter=Reporter(stream=out, live=False), **kw)
    return code, out.getvalue()


def document(inv, pipe, run=None, digests=False):
    inv_obj = inventory.load(inv)
    hosts = inv_obj.select("web")
    p = pipeline.load(pipe)
    op = plan.Operator(user="ci", machine="runner", pid=0 if run else 42, run=run)
    plans = {h.name: plan.deploy(h, p, "r9", op) for h in hosts}
    return cli._document(hosts, p, plans, "r9", op, inv, inv_obj, planfile.fleet_doc(hosts, p), {
        "host": "web", "inventory": str(inv), "pipeline": str(pipe), "source": None, "allow_dirty": False},
        digests=digests)


def test_header_names_release_source_playbook_inventory_batches_and_failure(setup):
    tmp, inv, pipe, app = setup
    code, text = run_plan(inv, pipe)
    assert code == 0
    head = text.split("steps (commands per host)")[0]
    assert head.startswith("deploy plan: release r9 to 4 host(s): web1, web2, web3, odd\n")
    assert f"source     {app}" in head
    assert f"playbook   {pipe}" in head and f"inventory  {inv}" in head
    assert "batches    1 (canary): web1  [max_fail 1]" in head
    assert "2: web2, web3, odd  [max_fail 1]" in head
    assert "max_fail   1 per batch" in head
    assert "on failure before activate: the new release is removed" in head
    assert "on failure after activate: first the health checks run" in head
    assert "run        not saved" in head


def test_summary_shows_every_step_with_its_plain_english_description(setup):
    tmp, inv, pipe, app = setup
    _, text = run_plan(inv, pipe)
    table = text.split("steps (commands per host)")[1].split("# host")[0]
    from deploy.steps import KINDS
    for kind in ("sync", "shared", "ownership", "artisan", "activate", "opcache_reset", "fpm_reload", "verify"):
        assert KINDS[kind].KIND.summary[:60] in table, kind
    assert "your own commands: ./smoke.sh" in table
    assert "take the deploy lock" in table
    # One column per group of alike hosts.
    assert "web1, web2, web3" in table and "odd" in table


def test_alike_hosts_are_shown_once_and_the_claim_is_checked(setup):
    tmp, inv, pipe, app = setup
    _, text = run_plan(inv, pipe)
    assert text.count("# host web1 (") == 1
    assert "# host web2 (" not in text and "# host web3 (" not in text
    assert "# host web2, web3: the same commands as web1, with their own address, deploy_path, health_url:" in text
    assert "   web2  address=10.0.0.12  deploy_path=/srv/web2/app  health_url=http://10.0.0.12/up" in text
    # odd has its own env value: not "the same", so shown in full.
    assert "# host odd (root@10.0.0.14:22, /srv/odd/app)" in text
    assert "MODE=odd" in text
    # The exact commands of the first host are there.
    for expected in ("## prepare", "## sync", "local$ rsync", "## activate", "releases/r9", "fpmctl.php reset"):
        assert expected in text
    doc = document(inv, pipe)
    by = {h["host"]: h for h in doc["hosts"]}
    assert by["web2"]["same_as"] == "web1" and by["web3"]["same_as"] == "web1"
    assert by["odd"]["same_as"] is None and by["web1"]["same_as"] is None


def test_groups_never_join_hosts_whose_commands_differ_beyond_their_values():
    def entry(name, path, command):
        values = dict.fromkeys(planfile.HOST_FIELDS, "")
        values.update(host=name, deploy_path=path)
        return {"host": name, "values": values,
                "steps": [{"name": "x", "kind": "run", "where": "", "commands": [{"command": command, "local": False}],
                           "notes": []}]}
    same, fields = planfile.groups([entry("a", "/srv/a", "cd /srv/a && make"), entry("b", "/srv/b", "cd /srv/b && make")])
    assert same == [["a", "b"]] and fields == ["host", "deploy_path"]
    apart, _ = planfile.groups([entry("a", "/srv/a", "cd /srv/a && make"), entry("b", "/srv/b", "cd /srv/b && make -j")])
    assert apart == [["a"], ["b"]]
    # b's text holds a's value literally: substituting back would not give b's plan.
    tricky, _ = planfile.groups([entry("a", "/srv/a", "cp /srv/a /srv/b"), entry("b", "/srv/b", "cp /srv/a /srv/b")])
    assert tricky == [["a"], ["b"]]


def test_verbose_shows_every_host_with_what_each_command_does(setup):
    tmp, inv, pipe, app = setup
    _, text = run_plan(inv, pipe, verbose=True)
    for name in ("web1", "web2", "web3", "odd"):
        assert f"# host {name} (" in text
    assert "same commands as" not in text
    assert "   # take the deploy lock\n   $ if [ -e /srv/web2/app/current ] && [ ! -L /srv/web2/app/current ]" in text
    assert "   # switch current to r9\n" in text


def test_json_is_the_saved_plan_document_with_no_secret(setup, capsys):
    tmp, inv, pipe, app = setup
    code, text = run_plan(inv, pipe, as_json=True)
    assert code == 0
    doc = json.loads(text)
    assert doc["format"] == "deploy-plan/1"
    assert set(doc) == {"format", "created", "action", "release", "run", "planned_by", "tool", "inputs", "flags",
                        "fleet", "on_failure", "notify", "differ_in", "hosts", "check"}
    assert doc["release"] == "r9" and len(doc["run"]) == 12 and doc["planned_by"]["pid"] == 0
    assert set(doc["inputs"]) == {"inventory", "pipeline", "source"}
    assert doc["inputs"]["source"]["kind"] == "dir" and doc["inputs"]["source"]["files"] > 10
    for key in ("tool", "inventory", "pipeline", "source"):
        digest = doc["tool"]["sha256"] if key == "tool" else doc["inputs"][key]["sha256"]
        assert len(digest) == 64, key
    assert doc["fleet"]["batches"] == [{"number": 1, "hosts": ["web1"], "max_fail": 1, "canary": True},
                                       {"number": 2, "hosts": ["web2", "web3", "odd"], "max_fail": 1, "canary": False}]
    host = doc["hosts"][0]
    assert set(host) == {"host", "values", "same_as", "steps"}
    step = host["steps"][0]
    assert set(step) == {"name", "kind", "where", "summary", "commands", "notes"}
    assert set(step["commands"][0]) == {"command", "local", "desc"}
    assert "t0ps3cr3t" not in text and "TOKEN=***" in text
    # The run id is the lock token: the commands do not depend on the process that runs them.
    lock = host["steps"][0]["commands"][0]["command"]
    assert f'"token": "{doc["run"]}"' in lock and '"pid": 0' in lock


def test_saved_plan_round_trip_and_refusals(setup, tmp_path):
    tmp, inv, pipe, app = setup
    saved = tmp_path / "plan.json"
    code, text = run_plan(inv, pipe, out=str(saved))
    assert code == 0 and f"saved plan {saved} (sha256 " in text
    doc, digest = planfile.load(saved)
    assert digest == planfile.sha256_bytes(saved.read_bytes())

    def rebuilt():
        hosts, p, plans, op, now = cli._rebuild(doc, saved)
        return planfile.stale(doc, now) or planfile.differences(doc, now)

    assert rebuilt() == []
    # Each input changed in turn: refused, saying which one.
    original = pipe.read_text()
    pipe.write_text(original + "# a comment changes the playbook\n")
    assert any(line.startswith(f"playbook {pipe} changed") for line in rebuilt())
    pipe.write_text(original)
    inv_text = inv.read_text()
    inv.write_text(inv_text.replace("10.0.0.13", "10.0.0.99"))
    assert any(line.startswith(f"inventory {inv} changed") for line in rebuilt())
    inv.write_text(inv_text)
    (app / "routes" / "web.php").write_text((app / "routes" / "web.php").read_text() + "\n// changed\n")
    problems = rebuilt()
    assert len(problems) == 1 and problems[0].startswith(f"source {app} changed")
    subprocess.run(["git", "-C", str(PROJECT), "show", "HEAD:sample-app/routes/web.php"], check=True,
                   stdout=(app / "routes" / "web.php").open("w"))
    # A file sync never sends (excluded) may change: the plan still matches.
    (app / "storage" / "logs").mkdir(parents=True, exist_ok=True)
    (app / "storage" / "logs" / "laravel.log").write_text("noise\n")
    assert rebuilt() == []
    # A saved command edited by hand: the rebuilt commands differ.
    doc["hosts"][1]["steps"][2]["commands"][0]["command"] += " --delete-excluded"
    problems = rebuilt()
    assert problems and problems[0].startswith("web2: step sync, command 1 differs")


def test_deploy_from_a_changed_plan_exits_2_before_any_connection(setup, tmp_path, capsys):
    tmp, inv, pipe, app = setup
    saved = tmp_path / "plan.json"
    assert run_plan(inv, pipe, out=str(saved))[0] == 0
    pipe.write_text(pipe.read_text().replace("max_fail: 1", "max_fail: 2"))
    out = io.StringIO()
    code = cli.deploy(None, plan=str(saved), reporter=Reporter(stream=out, live=False))
    err = capsys.readouterr().err
    assert code == 2
    assert "the saved plan does not match what it was made from any more" in err and f"playbook {pipe} changed" in err
    # Flags the plan fixes are refused with it.
    code = cli.deploy("web", plan=str(saved), reporter=Reporter(stream=out, live=False))
    assert code == 2 and "--host cannot be used with --plan" in capsys.readouterr().err
    for bad in ("not json", json.dumps({"format": "other/9"})):
        (tmp_path / "bad.json").write_text(bad)
        assert cli.deploy(None, plan=str(tmp_path / "bad.json"), reporter=Reporter(stream=out, live=False)) == 2
        assert "not a saved plan" in capsys.readouterr().err


def test_unsaved_plans_keep_this_process_as_lock_token(setup):
    tmp, inv, pipe, app = setup
    doc = document(inv, pipe)
    assert doc["run"] is None
    lock = doc["hosts"][0]["steps"][0]["commands"][0]["command"]
    assert '"token": "ci@runner:42"' in lock


# ----------------------------------------------------------------------------- --check parsing

RSYNC_OUT = """\
*deleting   old.php
*deleting   olddir/
>fcs....... app/Http/Kernel.php
>f+++++++++ app/New.php
cd+++++++++ app/Newdir/
cL+++++++++ public/storage -> ../storage/app/public
.f..t...... composer.json
.d..t...... app/

Number of files: 50 (reg: 40, dir: 10)
Number of regular files transferred: 2
"""


def test_itemized_changes_are_counted_by_kind():
    f = plancheck.itemized(RSYNC_OUT, "r8")
    assert (f["added"], f["modified"], f["deleted"], f["total"], f["attributes_only"]) == (2, 1, 1, 4, 1)
    assert {"change": "-", "path": "old.php"} in f["list"] and {"change": "+", "path": "public/storage"} in f["list"]
    assert {"change": "~", "path": "app/Http/Kernel.php"} in f["list"]


def test_fleet_verdicts_and_exit_codes():
    def host(verdict):
        return {"verdict": verdict, "host": verdict}
    assert plancheck.summarize([host("changes"), host("changes")], "r9")["exit_code"] == 0
    assert plancheck.summarize([host("no changes")], "r9")["exit_code"] == 4
    assert plancheck.summarize([host("changes"), host("cannot deploy")], "r9")["exit_code"] == 1
    mixed = plancheck.summarize([host("changes"), host("no changes")], "r9")
    assert mixed["verdict"] == "cannot deploy" and "already live on no changes" in mixed["problems"][0]


def test_sudo_checks_cover_every_sudo_command_and_keep_secrets(tmp_path):
    inv = write(tmp_path / "hosts" / "h.yml", INV.format(user="deploy"))
    (tmp_path / "app").mkdir()
    p = pipeline.load(write(tmp_path / "playbooks" / "p.yml", """
        source: app
        steps:
          - sync
          - ownership
          - activate
          - fpm_reload
          - run: {commands: ["php artisan x"], sudo: true, env: {K: {value: "s3cr3t", secret: true}}}
    """))
    host = inventory.load(inv).select("web1")[0]
    steps = plan.deploy(host, p, "r9", plan.Operator("ci", "m", 1))
    sudo = plancheck.sudo_commands(steps, host)
    shown = sudo["shown"]
    assert any(s.startswith("setfacl -L -R -m") for s in shown)            # a simple command, by its words
    assert any(s.startswith("sh -c ") for s in shown)                      # a compound one: a root shell
    assert ["systemctl", "reload", "php8.2-fpm"] in sudo["checks"]        # the inventory's own sudo command
    assert not any("s3cr3t" in s for s in shown)
    secret = next(words for words in sudo["checks"] if any(not isinstance(w, str) for w in words))
    assert "s3cr3t" in secret[-1].value
    root = inventory.load(write(tmp_path / "hosts" / "h.yml", INV.format(user="root"))).select("web1")[0]
    assert plancheck.sudo_commands(plan.deploy(root, p, "r9", plan.Operator("ci", "m", 1)), root)["checks"] == []


def test_the_dry_run_is_the_sync_command_with_dry_run_flags_against_the_live_release(setup):
    tmp, inv, pipe, app = setup
    host = inventory.load(inv).select("web1")[0]
    p = pipeline.load(pipe)
    steps = plan.deploy(host, p, "r9", plan.Operator("ci", "m", 1))
    from deploy.context import StepContext
    ctx = StepContext(host, p, "r9")
    sync = planfile.sync_command(steps)
    dry = plancheck.dry_run_command(steps, host, ctx, {"release": "r8"})
    # The sync command's own flags and excludes; the paths later steps make on the host (the
    # shared storage/ and .env) left out of the comparison; the live release as destination.
    head = "rsync --dry-run --itemize-changes --exclude=/storage --exclude=/.env "
    assert dry.render().startswith(head + "--archive ")
    assert dry.render().endswith("root@10.0.0.11:/srv/web1/app/current/")
    assert "rsync " + dry.render()[len(head):].rsplit(" ", 1)[0] == sync.render().rsplit(" ", 1)[0]
    first = plancheck.dry_run_command(steps, host, ctx, None)
    assert first.render().endswith("/srv/web1/app/releases/r9/") and dry.local


def test_check_rendering_names_reasons_and_the_verdict(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    h = {"host": "web1", "verdict": "cannot deploy", "reasons": ["locked: alice@laptop pid 9 deploy r7"],
         "warnings": [], "connect": "ok", "user": "deploy", "live": {"release": "r8", "since": "2026-11-30T10:00:00Z"},
         "lock": {"held": True, "by": "alice"}, "path": {"ok": True}, "php": "8.2", "rsync": "rsync 3",
         "sudo": {"needed": True, "checked": ["setfacl ..."], "refused": [], "unchecked": []},
         "pool": {"ok": True, "via": "installed", "detail": "a worker answered"},
         "files": {"against": "r8", "added": 1, "modified": 2, "deleted": 0, "total": 3, "attributes_only": 0,
                   "list": [{"change": "+", "path": "a.php"}]}}
    out = io.StringIO()
    Reporter(stream=out, live=False).plan_check(plancheck.summarize([h], "r9"), files=True)
    text = out.getvalue()
    assert "r8, since 2026-11-30T10:00:00Z" in text and "3 to change: +1 ~2 -0" in text and "LOCKED" in text
    assert "web1: cannot deploy: locked: alice@laptop" in text
    assert "   + a.php" in text
    assert text.rstrip().endswith("check: cannot deploy: see the reasons above (exit 1)")


# ----------------------------------------------------------------------------- git sources

def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = tmp_path / "repo"
    shutil.copytree(PROJECT / "sample-app", r / "app", symlinks=True, ignore=shutil.ignore_patterns("vendor"))
    (r / "README").write_text("not shipped with path: app\n")
    git(r, "init", "-q", "-b", "main")
    git(r, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git(r, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "app")
    inv = write(tmp_path / "hosts" / "web.yml", INV.format(user="root"))
    return r, inv


def git_pipe(tmp_path, text):
    return write(tmp_path / "playbooks" / "g.yml", text + "steps: [sync, activate]\n")


def test_git_source_plans_the_commit_with_its_short_sha_as_release(repo, tmp_path):
    r, inv = repo
    pipe = git_pipe(tmp_path, f"source: {{git: main, repo: {r}, path: app}}\n")
    out = io.StringIO()
    assert cli.plan_cmd("web1", str(inv), str(pipe), reporter=Reporter(stream=out, live=False)) == 0
    sha = git(r, "rev-parse", "HEAD")
    text = out.getvalue()
    assert text.startswith(f"deploy plan: release {sha[:12]} to 1 host(s)")
    assert f"source     git main = commit {sha} (repo {r}, path app)" in text
    from deploy import gitsource
    resolved = gitsource.resolve(pipeline.load(pipe).git)
    assert resolved.tree == git(r, "rev-parse", "HEAD:app")
    assert f"{gitsource.export_dir(resolved)}/ root@10.0.0.11:/srv/web1/app/releases/{sha[:12]}/" in text
    # The export is exactly the commit's tree under path, and nothing else.
    exported = Path(gitsource.export(resolved))
    listed = set(git(r, "ls-tree", "-r", "--name-only", "HEAD:app").splitlines())
    assert {str(p.relative_to(exported)) for p in exported.rglob("*") if not p.is_dir()} == listed
    assert not (exported / "README").exists()


def test_git_source_refuses_a_dirty_tree_unless_asked(repo, tmp_path, capsys):
    r, inv = repo
    pipe = git_pipe(tmp_path, f"source: {{git: HEAD, repo: {r}, path: app}}\n")
    (r / "app" / "routes" / "web.php").write_text("<?php // edited, not committed\n")
    out = io.StringIO()
    assert cli.plan_cmd("web1", str(inv), str(pipe), reporter=Reporter(stream=out, live=False)) == 2
    err = capsys.readouterr().err
    assert "uncommitted changes under app" in err and "app/routes/web.php" in err and "--allow-dirty" in err
    assert cli.plan_cmd("web1", str(inv), str(pipe), allow_dirty=True, reporter=Reporter(stream=out, live=False)) == 0
    assert "1 uncommitted change(s) NOT shipped" in out.getvalue()
    # A change outside the shipped path does not count.
    git(r, "checkout", "--", "app")
    (r / "README").write_text("edited\n")
    assert cli.plan_cmd("web1", str(inv), str(pipe), reporter=Reporter(stream=out, live=False)) == 0


def test_source_flag_git_ref_ships_a_directory_source_as_of_a_commit(repo, tmp_path, capsys):
    r, inv = repo
    pipe = write(tmp_path / "playbooks" / "d.yml", f"source: {r / 'app'}\nsteps: [sync, activate]\n")
    out = io.StringIO()
    assert cli.plan_cmd("web1", str(inv), str(pipe), source="git:HEAD",
                        reporter=Reporter(stream=out, live=False)) == 0
    assert f"(repo {r / 'app'}, path app)" in out.getvalue()
    assert cli.plan_cmd("web1", str(inv), str(pipe), source="git:nosuchref",
                        reporter=Reporter(stream=out, live=False)) == 2
    assert "git ref 'nosuchref' is not a commit" in capsys.readouterr().err


def test_saved_plan_of_a_git_source_is_stale_once_the_ref_moves(repo, tmp_path):
    r, inv = repo
    pipe = git_pipe(tmp_path, f"source: {{git: main, repo: {r}, path: app}}\n")
    saved = tmp_path / "plan.json"
    out = io.StringIO()
    assert cli.plan_cmd("web1", str(inv), str(pipe), out=str(saved), reporter=Reporter(stream=out, live=False)) == 0
    doc, _ = planfile.load(saved)
    assert doc["inputs"]["source"]["git"]["commit"] == git(r, "rev-parse", "HEAD")
    assert planfile.stale(doc, cli._rebuild(doc, saved)[4]) == []
    (r / "app" / "NEW.txt").write_text("x\n")
    git(r, "add", "-A")
    git(r, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "next")
    problems = planfile.stale(doc, cli._rebuild(doc, saved)[4])
    assert problems == [f"source: git main is now commit {git(r, 'rev-parse', 'HEAD')[:12]} "
                        f"(the plan has {doc['inputs']['source']['commit'][:12]})"]


def test_bad_git_source_keys_exit_2_with_file_line_key(repo, tmp_path):
    r, inv = repo
    with pytest.raises(ConfigError) as e:
        pipeline.load(git_pipe(tmp_path, f"source: {{git: main, repo: {r}, branch: x}}\n"))
    assert "key 'source.branch': unknown key" in str(e.value) and "g.yml:1" in str(e.value)
    with pytest.raises(ConfigError) as e:
        pipeline.load(git_pipe(tmp_path, f"source: {{git: main, repo: {tmp_path / 'nope'}}}\n"))
    assert "source.repo" in str(e.value)


def test_check_flags_are_checked_before_any_connection(setup, capsys):
    tmp, inv, pipe, app = setup
    # --files only means something with --check; --check needs the key and known_hosts files.
    assert run_plan(inv, pipe, files=True)[0] == 2
    assert "--files lists the files --check finds" in capsys.readouterr().err
    assert run_plan(inv, pipe, check=True)[0] == 2
    err = capsys.readouterr().err
    assert "/keys/id" in err and "Traceback" not in err
    out = io.StringIO()
    assert cli.plan_cmd("web", str(inv), str(pipe), source="git:", reporter=Reporter(stream=out)) == 2
    assert "empty git ref in --source git:" in capsys.readouterr().err


def test_webhooks_are_named_in_the_header_and_listed_after_the_steps(setup):
    tmp, inv, pipe, app = setup
    pipe.write_text(pipe.read_text().replace("max_fail: 1\n", "max_fail: 1\nnotify:\n  - name: team\n"
                                             "    url: https://hooks.example.com/x\n"))
    _, text = run_plan(inv, pipe)
    assert "  notify     team (the ## notify lines below)" in text
    table_end, rest = text.split("┘\n", 1)
    assert rest.lstrip("\n").startswith("## notify team: json to https://hooks.example.com/x on start, success, "
                                        f"failure, rollback  ({pipe}:5)")
