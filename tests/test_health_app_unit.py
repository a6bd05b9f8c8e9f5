"""The app's own checks (.env keys, database and Redis, migrations, workers) and the remedies that
plan with the pipeline steps' builders, on canned evidence (tests/test_health_unit.py's healthy
host, one thing broken per test). No SSH."""

import json

import pytest

from deploy import health, remediate, workers
from deploy import pipeline as pipeline_mod
from deploy.inventory import Fpm, Workers
from test_health_unit import APP_OK, D, IP, REL, REPO, SHARED, FakeRunner, evidence, findings, host, ip_evidence, ip_host
from test_health_unit import ipipe, pipe  # noqa: F401 (fixtures)


def play(tmp_path, text, name="p.yml"):
    f = tmp_path / name
    f.write_text(f"source: {REPO / 'sample-app'}\n" + text)
    return pipeline_mod.load(f)


def app(**changes):
    """appcheck.php's report of the healthy host with some parts replaced."""
    data = json.loads(APP_OK)
    for key, value in changes.items():
        data[key] = value
    return json.dumps(data) + "\n\x1dRC 0\n"


def workers_section(*lines, rc=0, user="root"):
    return (f"switched\t1700000000.5\nas\t{user}\n\x1dOUT\n" + "".join(l + "\n" for l in lines)
            + ("proven" if rc == 0 else "NOT proven") + ": ...\n" + f"\x1dRC {rc}\n")


STALE = (f"stale\tpid=812\tstarted=1699990000.00\tcwd={D}/releases/r1\trelease={D}/releases/r1\t"
         f"why=runs {D}/releases/r1, not the live {REL}\tcmd=php {D}/current/artisan queue:work redis")
OK = f"ok\tpid=913\tstarted=1700000100.00\tcwd={REL}\trelease={REL}\tcmd=php {D}/current/artisan schedule:work"
UNKNOWN = ("unknown\tpid=914\tstarted=1700000100.00\tcwd=\trelease=\twhy=cannot read /proc/914/cwd (run as root or as"
           f" the process's user)\tcmd=php {D}/current/artisan queue:work")


# ---------------------------------------------------------------------------------------- .env

def test_env_passes_without_showing_values(pipe):
    f = findings(pipe=pipe)["env"]
    assert f.status == "pass" and f"APP_KEY set in {SHARED}/.env" in f.evidence and "values not read out" in f.evidence


@pytest.mark.parametrize("section, status, text", [
    (f"file\tok\t{SHARED}/.env\n", "fail", f"APP_KEY is missing from {SHARED}/.env"),
    (f"file\tok\t{SHARED}/.env\nkey\tAPP_KEY\tempty\n", "fail", "APP_KEY is empty"),
    (f"file\tdangling\t{SHARED}/.env\n", "fail", "which does not exist"),
    (f"file\tmissing\t{REL}/.env\n", "warn", "no .env in the live release"),
    (f"file\tunreadable\t{SHARED}/.env\n", "warn", "cannot read"),
    (None, "warn", "not checked"),
])
def test_env_findings(pipe, section, status, text):
    f = findings(pipe=pipe, env=section)["env"]
    assert f.status == status and text in f.evidence and f.remedy is None
    if status == "fail" and "APP_KEY" in text:
        assert "the key the app's other hosts use" in f.fix and "fab heal" in f.fix


def test_required_env_comes_from_the_pipeline(tmp_path):
    p = play(tmp_path, "health: {required_env: [APP_KEY, DB_PASSWORD]}\nsteps: [sync, activate]\n")
    assert "ENVKEYS='APP_KEY DB_PASSWORD';" in health.gather_command(host(), p).render()
    f = findings(pipe=p)["env"]
    assert f.status == "fail" and "DB_PASSWORD is missing" in f.evidence
    none = play(tmp_path, "health: {required_env: []}\nsteps: [sync, activate]\n", "q.yml")
    assert findings(pipe=none, env=f"file\tok\t{SHARED}/.env\n")["env"].status == "pass"


@pytest.mark.parametrize("text, error", [
    ("health: {required_env: [APP-KEY]}\n", "'APP-KEY' is not an environment variable name"),
    ("health: {required: [APP_KEY]}\n", "required"),
    ("health: [APP_KEY]\n", "mapping"),
])
def test_bad_health_settings_are_refused(tmp_path, text, error):
    from deploy.errors import ConfigError
    with pytest.raises(ConfigError, match=error):
        play(tmp_path, text + "steps: [sync, activate]\n")


# ------------------------------------------------------------------------------ database, Redis

def test_services_pass(pipe):
    f = findings(pipe=pipe)["services"]
    assert f.status == "pass" and "database 'mysql' (mysql) answers" in f.evidence
    assert "Redis 'default' (queue) answers PING" in f.evidence


def test_a_database_that_does_not_answer_fails_with_its_error(pipe):
    db = {"connection": "mysql", "driver": "mysql", "ok": False, "memory": False,
          "error": "PDOException: SQLSTATE[HY000] [2002] Connection refused"}
    fs = findings(pipe=pipe, app=app(database=db, migrations=None))
    assert fs["services"].status == "fail" and fs["services"].remedy is None
    assert "[2002] Connection refused" in fs["services"].evidence and "DB_HOST" in fs["services"].fix
    assert fs["migrations"].status == "warn" and "database is not reachable" in fs["migrations"].evidence


def test_redis_that_does_not_answer_fails_naming_what_uses_it(pipe):
    redis = [{"connection": "cache", "used_by": ["cache"], "ok": False, "error": "RedisException: Connection refused"},
             {"connection": "default", "used_by": ["queue", "session"], "ok": True}]
    f = findings(pipe=pipe, app=app(redis=redis))["services"]
    assert f.status == "fail" and "Redis connection 'cache' (the app's cache) is not reachable" in f.evidence
    assert "RedisException: Connection refused" in f.evidence and "REDIS_HOST" in f.fix


@pytest.mark.parametrize("section, text", [
    (json.dumps({"app": False, "error": "RuntimeException: boom"}) + "\n\x1dRC 1\n", "does not boot in php-cli"),
    ("PHP Fatal error: x\n\x1dRC 255\n", "printed no report (exit 255): PHP Fatal error: x"),
    (None, "the app was not started"),
])
def test_an_app_that_does_not_start_is_not_checked(pipe, section, text):
    fs = findings(pipe=pipe, app=section)
    for check in ("services", "migrations"):
        assert fs[check].status == "warn" and text in fs[check].evidence


# ------------------------------------------------------------------------------------ migrations

def migrations(output, rc=0):
    return app(migrations={"rc": rc, "output": output, "error": None})


def test_all_migrations_ran(pipe):
    f = findings(pipe=pipe)["migrations"]
    assert f.status == "pass" and "all 1 migrations ran (last batch 1)" in f.evidence


@pytest.mark.parametrize("section, status, text", [
    (migrations("| Ran? | Migration | Batch |\n| Yes  | a | 1 |\n| No   | 2024_02_01_000000_add_x |  |\n"), "fail",
     "1 pending migration (Ran? No): 2024_02_01_000000_add_x"),
    (migrations("Migration table not found.\n", 1), "fail", "has no migrations table"),
    (migrations("No migrations found\n"), "pass", "the app has no migrations"),
    (migrations("SQLSTATE[42000]: Syntax error\n", 1), "warn", "migrate:status failed: SQLSTATE[42000]"),
    (app(database={"connection": "sqlite", "driver": "sqlite", "ok": True, "memory": True}, migrations=None), "pass",
     "sqlite in memory"),
])
def test_migration_findings(pipe, section, status, text):
    f = findings(pipe=pipe, app=section)["migrations"]
    assert f.status == status and text in f.evidence and f.remedy is None
    if status == "fail":
        assert "php artisan migrate --force" in f.fix and "never migrates outside a deploy" in f.fix


# --------------------------------------------------------------------------------------- workers

def test_workers_on_an_old_release_fail_with_the_workers_remedy(pipe):
    f = findings(pipe=pipe, workers=workers_section(STALE, OK, rc=1))["workers"]
    assert f.status == "fail" and f.remedy == "workers"
    assert "1 of 2 worker process(es) do not run the live release r2" in f.evidence
    assert f"pid 812 queue:work: runs {D}/releases/r1" in f.evidence
    assert "php artisan queue:restart" in f.fix
    assert [p["pid"] for p in f.details["processes"]] == [812, 913]


def test_an_old_scheduler_without_a_restart_command_is_left_to_a_human(pipe):
    old = OK.replace("ok\tpid=913\tstarted=1700000100.00", "old\tpid=913\tstarted=1699990000.00") + "\twhy=started before"
    f = findings(pipe=pipe, workers=workers_section(old, rc=1))["workers"]
    assert f.status == "fail" and f.remedy is None and "does not reach schedule:work" in f.fix
    h = host(workers=Workers(restart="sudo supervisorctl restart app:*"))
    assert findings(pipe=pipe, h=h, workers=workers_section(old, rc=1))["workers"].remedy == "workers"


def test_workers_whose_release_cannot_be_told_warn_never_pass(pipe):
    f = findings(pipe=pipe, workers=workers_section(UNKNOWN, rc=1, user="deploy"))["workers"]
    assert f.status == "warn" and "cannot be told as deploy" in f.evidence and "root" in f.fix


def test_workers_on_the_live_release_pass(pipe):
    f = findings(pipe=pipe, workers=workers_section(OK))["workers"]
    assert f.status == "pass" and "1 process(es) (schedule:work x1) run the live release r2" in f.evidence


def test_no_workers_pass_unless_the_host_has_some(pipe, tmp_path):
    none = workers_section()
    # The shipped playbook's workers step expects workers where the inventory says there are.
    assert pipe.first("workers") is not None
    assert findings(pipe=pipe, workers=none)["workers"].status == "pass"
    f = findings(pipe=pipe, workers=none, h=host(workers=Workers(restart="sudo supervisorctl restart app:*")))["workers"]
    assert f.status == "fail" and f.remedy == "workers" and "no worker process of the app runs" in f.evidence
    # Or where the step itself says how many to expect.
    strict = play(tmp_path, "steps: [sync, activate, {workers: {expect: 2}}]\n")
    f = findings(pipe=strict, workers=none)["workers"]
    assert f.status == "fail" and "no worker process of the app runs" in f.evidence


def test_workers_sh_failing_to_run_is_not_checked(pipe):
    f = findings(pipe=pipe, workers="switched\t\nas\troot\n\x1dOUT\nworkers.sh: no deploy path\n\x1dRC 2\n")["workers"]
    assert f.status == "warn" and "workers.sh could not run (workers.sh: no deploy path)" in f.evidence


def test_the_workers_pattern_reaches_gather(pipe):
    text = health.gather_command(host(workers=Workers(processes="artisan (queue:work|horizon)")), pipe).render()
    assert "WPATTERN='artisan (queue:work|horizon)';" in text
    assert "WPATTERN='';" in health.gather_command(host(), pipe).render()


# ---------------------------------------------------------------------- the workers remedy, planned

def test_workers_remedy_restarts_in_the_live_release_and_proves_them(pipe):
    ev = health.parse(evidence(workers=workers_section(STALE, OK, rc=1)))
    cmds, why = remediate.plan_remedy("workers", host(), pipe, ev)
    assert why is None
    assert cmds[0].render() == f"cd {REL} && php artisan queue:restart --no-interaction"
    proof = cmds[1].render()
    # As the deploy user, never `sudo sh` (a root shell); workers.sh reads the switch time itself.
    assert proof.startswith("sh -c <deploy/remote/workers.sh@")
    assert proof.endswith(f"workers.sh --wait 30 --expect 2 {D} {REL} current")    # the two processes seen
    assert cmds[1].timeout == 60


def test_workers_remedy_uses_the_inventorys_restart_pattern_and_timeout(pipe):
    h = host(user="root", workers=Workers(restart="supervisorctl -c /etc/s.conf restart app:*",
                                          processes="artisan queue:work", timeout=45))
    ev = health.parse(evidence(workers=workers_section(STALE, rc=1)))
    cmds, _ = remediate.plan_remedy("workers", h, pipe, ev)
    assert cmds[0].render() == f"cd {REL} && supervisorctl -c /etc/s.conf restart app:*"
    proof = cmds[1].render()
    assert not proof.startswith("sudo") and "--wait 45 --expect 1 --pattern 'artisan queue:work'" in proof


def test_proof_command_for_a_step_that_knows_when_it_switched(pipe):
    from deploy.context import StepContext
    cmd = workers.proof_command(StepContext(host(user="root"), pipe, "r3"), switched_at=1700000123.25, expect=3)
    text = cmd.render()
    assert text.startswith("sh -c <deploy/remote/workers.sh@") and text.endswith(
        f"workers.sh --wait 30 --expect 3 {D} {D}/releases/r3 1700000123.250")
    ip = workers.proof_command(StepContext(ip_host(user="root"), pipe_in_place(), "i2"))
    assert ip.render().endswith(f" {IP} {IP} current")      # in place workers.sh takes RELEASE's mtime


def pipe_in_place():
    return pipeline_mod.Pipeline(file="-", source="", keep_releases=2, steps=[], strategy="in-place")


# ---------------------------------------------------------------- the other remedies: steps' plans

def test_artisan_remedy_is_the_artisan_steps_plan_with_shlex(tmp_path):
    p = play(tmp_path, "steps:\n  - sync\n  - artisan: {commands: [config:cache, \"app:warm --tag='a b'\"]}\n  - activate\n")
    cmds, _ = remediate.plan_remedy("artisan", host(), p, health.parse(evidence()))
    assert [c.render() for c in cmds] == [f"cd {REL} && php artisan config:cache --no-interaction",
                                          f"cd {REL} && php artisan app:warm '--tag=a b' --no-interaction"]
    bare = play(tmp_path, "steps: [sync, activate]\n", "bare.yml")      # no artisan step: the step's defaults
    cmds, _ = remediate.plan_remedy("artisan", host(), bare, health.parse(evidence()))
    assert [c.render().split()[-2] for c in cmds] == ["config:cache", "route:cache", "view:cache", "event:cache"]


def test_fpm_reload_remedy_waits_as_long_as_the_pipelines_step(tmp_path):
    p = play(tmp_path, "steps: [sync, activate, {fpm_reload: {wait: 7}}]\n")
    cmds, _ = remediate.plan_remedy("fpm_reload", host(), p, health.parse(evidence()))
    assert cmds[0].render() == "sudo systemctl reload php8.2-fpm" and "--timeout=7" in cmds[1].render()


def test_opcache_reset_remedy_is_the_steps_plan_plus_the_file_cache_the_pool_reports(pipe):
    st = evidence().split("\x1dS status ")[1].split("\n", 1)[1].split("\n\x1dRC")[0]
    data = json.loads(st)
    data["opcache"]["file_cache"] = "/var/cache/opc-pool"
    ev = health.parse(evidence(status=json.dumps(data) + "\n\x1dRC 0\n"))
    cmds, _ = remediate.plan_remedy("opcache_reset", host(fpm=Fpm(socket="/run/php/x.sock", file_cache="/var/cache/opc")),
                                    pipe, ev)
    text = [c.render() for c in cmds]
    assert "find /var/cache/opc-pool -mindepth 1 -delete" in text[0]       # what the pool reports
    assert "find /var/cache/opc -mindepth 1 -delete" in text[1]            # the step's own, from the inventory
    assert "fpmctl.php reset --socket=/run/php/x.sock" in text[2] and len(text) == 3


def test_remedies_follow_the_hosts_layout_when_the_pipeline_is_for_the_other(pipe):
    """fab heal without --pipeline on an in-place host: the default pipeline is releases, the
    evidence says in place: the artisan commands run in the deploy path."""
    ev = health.parse(ip_evidence())
    health.evaluate(ev, ip_host(), pipe, layout="auto")
    cmds, _ = remediate.plan_remedy("artisan", ip_host(), pipe, ev)
    assert cmds[0].render() == f"cd {IP} && php artisan config:cache --no-interaction"
    cmds, _ = remediate.plan_remedy("workers", ip_host(), None, ev)
    assert cmds[0].render() == f"cd {IP} && php artisan queue:restart --no-interaction"


# ------------------------------------------------------------------ heal: fab heal vs a deploy

def test_fab_heal_restarts_workers_on_an_old_release(pipe):
    stale = evidence(workers=workers_section(STALE, OK, rc=1))
    runner = FakeRunner([stale, evidence(workers=workers_section(OK))])
    r = remediate.heal_detailed(runner, host(), pipe, None, lambda e: None)
    assert r.ok and [a["action"] for a in r.actions] == ["workers"]
    assert "workers and scheduler: 1 of 2 worker process(es)" in r.actions[0]["why"]
    assert runner.steps == ["health", "heal: workers", "health", "heal: record"]


def test_a_deploys_healing_leaves_the_workers_to_the_pipeline(pipe):
    stale = evidence(workers=workers_section(STALE, rc=1))
    fs = [f for f in health.evaluate(health.parse(stale), host(), pipe)]
    assert remediate.choose(fs, [], during_deploy=True) == [] and remediate.settled(fs, during_deploy=True)
    assert [k for k, _ in remediate.choose(fs, [])] == ["workers"] and not remediate.settled(fs)
    events = []
    runner = FakeRunner([stale])
    ok, actions = remediate.heal(runner, host(), pipe, "r2", events.append)
    assert ok and actions == [] and runner.steps == ["health"]
    assert any("left to the pipeline: workers and scheduler" in e.get("text", "") for e in events)
