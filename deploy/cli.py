"""Command implementations behind the fab tasks: parse arguments, load YAML, call operations,
hand results to the report layer, return an exit code (docs/commands.md)."""

import time
from pathlib import Path

from . import cliargs
from . import fleet as fleet_mod
from . import gitsource, htmlreport, notify, planfile, rollout, runinfo
from .cli_plan import (DEFAULT_INVENTORY, _document, _load_plan_inputs, _path, _pipeline_or_none, _quietly_piped,
                       load, plan_cmd, plan_hosts, ready_to_connect)
from . import inventory as inventory_mod
from . import operations as ops
from . import plan as planner
from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NEEDS_HUMAN, EXIT_OK, ConfigError
from .report import Reporter, write_json, write_junit
from .signals import Interrupts

def exit_code(results, ok_states=ops.OK_STATES):
    states = [r.state for r in results]
    if any(s in (ops.NEEDS_HUMAN,) for s in states):
        return EXIT_NEEDS_HUMAN
    if all(s in ok_states for s in states):
        return EXIT_OK
    return EXIT_FAILED


def deploy(host, inventory=None, pipeline=None, source=None, release=None, dry_run=False, parallel=None,
           serial=None, max_fail=None, rollback_all=False, report=None, junit=None, reporter=None, html=None,
           plan=None, allow_dirty=False):
    reporter = reporter or Reporter()
    if plan is not None:
        return deploy_saved(plan, dry_run, report, junit, html, reporter,
                            given={"--host": host, "--inventory": inventory, "--pipeline": pipeline, "--source": source,
                                   "--release": release, "--parallel": parallel, "--serial": serial,
                                   "--max-fail": max_fail, "--rollback-all": rollback_all or None,
                                   "--allow-dirty": allow_dirty or None})
    if dry_run:
        try:
            for flag, value in (("--report", report), ("--junit", junit), ("--html", html)):
                cliargs.parse_output(flag, value)
        except ConfigError as exc:
            reporter.error(str(exc))
            return EXIT_BAD_INPUT
        return plan_cmd(host, inventory, pipeline, source, release, serial, max_fail, parallel, rollback_all,
                        allow_dirty=allow_dirty, reporter=reporter)
    try:
        # The flags first (no file is read for a bad flag), then the files, then every host's plan.
        host, inventory, pipeline = cliargs.parse_selection(host, inventory, pipeline)
        source = cliargs.parse_path("--source", source)
        gitsource.override_ref(source)  # `--source git:` without a ref: a flag error, before any file
        release = cliargs.parse_release(release)
        parallel = cliargs.parse_count("--parallel", parallel)
        serial = cliargs.parse_serial(serial)
        max_fail = cliargs.parse_max_fail(max_fail)
        report, junit, html = (cliargs.parse_output(flag, value) for flag, value in
                               (("--report", report), ("--junit", junit), ("--html", html)))
        _, _, hosts, pipe, release = _load_plan_inputs(host, inventory, pipeline, source, release, allow_dirty)
        operator = planner.Operator.here()
        hosts, plans = plan_hosts(hosts, pipe, release, operator)
        targets = notify.resolve(pipe.notify)
        ready_to_connect(hosts, pipe)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    reporter.message(f"deploying release {release} to {len(hosts)} host(s): {', '.join(h.name for h in hosts)}")
    return _run_deploy(hosts, pipe, plans, release, operator, targets, reporter,
                       dict(parallel=parallel, serial=serial, max_fail=max_fail, rollback_all=rollback_all),
                       report, junit, html)


def _run_deploy(hosts, pipe, plans, release, operator, targets, reporter, fleet_flags, report, junit, html,
                saved=None):
    """The rollout of planned hosts, its summary, report and notifications. `saved`: (plan
    document, its sha256) for a deploy from a saved plan, recorded in the report."""
    run = runinfo.start("deploy", release, pipe, operator, hosts)
    if pipe.git is not None:
        run["commit"] = pipe.git.commit
    run["plan_sha256"] = saved[1] if saved else None
    run["run"] = operator.run
    notifier = notify.Notifier(targets, reporter, {v for p in plans.values() for s in p for c in s.commands
                                                   for v in c.secrets})
    notifier.send("start", run)
    reporter.start([h.name for h in hosts])
    primary, _ = rollout.primary(hosts, pipe)   # hosts are in deploy order already
    with Interrupts(reporter) as interrupt:
        fleet = fleet_mod.Fleet(hosts, pipe, operator, reporter, parallel=fleet_flags["parallel"],
                                stop_event=interrupt.stop, abort_event=interrupt.abort, plans=plans, primary=primary)
        try:
            results = fleet.deploy(release, serial=fleet_flags["serial"], max_fail=fleet_flags["max_fail"],
                                   rollback_all=fleet_flags["rollback_all"])
        finally:
            reporter.stop()
    reporter.summary(results, title=f"release {release}")
    code = exit_code(results)
    if interrupt.interrupted and code == EXIT_OK:
        code = EXIT_INTERRUPTED
    as_planned = None
    if saved:
        planned = {h["host"]: [c["command"] for s in h["steps"] for c in s["commands"]] for h in saved[0]["hosts"]}
        as_planned = {r.host: r.executed == planned.get(r.host) for r in results}
    _finish(run, notifier, results, code, report, junit, html, batches=fleet.batch_log, as_planned=as_planned)
    return code


def deploy_saved(plan_file, dry_run, report, junit, html, reporter, given):
    """`fab deploy --plan FILE`: the hosts, release id, run id and commands come from the plan.
    Its inputs are read again only to be compared; any difference refuses the run (exit 2)
    before any host is contacted."""
    try:
        for flag, value in given.items():
            if value is not None:
                raise ConfigError(f"{flag} cannot be used with --plan: the saved plan fixes the hosts, the release, "
                                  "the source, the batches and every command",
                                  hint="make a new plan with it (fab plan ... --out FILE), then fab deploy --plan FILE")
        plan_file = cliargs.nonempty("--plan", plan_file, "pass --plan FILE (written by fab plan --out FILE)")
        report, junit, html = (cliargs.parse_output(flag, value) for flag, value in
                               (("--report", report), ("--junit", junit), ("--html", html)))
        doc, digest = planfile.load(plan_file)
        try:
            hosts, pipe, plans, operator, now = _rebuild(doc, plan_file)
            problems = planfile.stale(doc, now) or planfile.differences(doc, now)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited file
            raise ConfigError(f"malformed saved plan ({type(exc).__name__}: {exc})", plan_file,
                              hint="make it again with fab plan --out FILE; never edit a saved plan") from None
        if problems:
            raise ConfigError(f"{plan_file}: the saved plan does not match what it was made from any more, so it is "
                              "not run (nothing was contacted):\n  - " + "\n  - ".join(problems),
                              hint="make a new plan (fab plan ... --out FILE), review it, and deploy that one")
        targets = [] if dry_run else notify.resolve(pipe.notify)
        if not dry_run:
            ready_to_connect(hosts, pipe)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    age = planfile.age(doc)
    by = doc["planned_by"]
    reporter.message(f"saved plan {plan_file} (sha256 {digest}, run {doc['run']}, made {doc['created']} by "
                     f"{by['user']}@{by['machine']}" + (f", {age}s ago" if age is not None else "")
                     + "): its inputs are unchanged, and the commands rebuilt from them are the saved ones")
    if dry_run:
        _quietly_piped(lambda: reporter.plan_document(doc))
        return EXIT_OK
    fleet = doc["fleet"]
    reporter.plan_head(doc)
    reporter.message(f"deploying release {doc['release']} to {len(hosts)} host(s): {', '.join(h.name for h in hosts)}")
    return _run_deploy(hosts, pipe, plans, doc["release"], operator, targets, reporter,
                       dict(parallel=fleet["parallel"], serial=fleet["serial"], max_fail=fleet["max_fail"],
                            rollback_all=fleet["rollback_all"]), report, junit, html, saved=(doc, digest))


def _rebuild(doc, plan_file):
    """The plan again from its inputs as they are now: (hosts, pipeline, plans, operator, document)."""
    flags = doc["flags"]
    try:
        release = planner.check_release_id(doc["release"], flag="the saved plan")
        inv_path, inv, hosts, pipe, _ = _load_plan_inputs(",".join(doc["fleet"]["hosts"]), flags.get("inventory"),
                                                          flags.get("pipeline"), flags.get("source"), release,
                                                          flags.get("allow_dirty", False))
    except ConfigError as exc:
        raise ConfigError(f"{plan_file}: the inputs of the saved plan do not load any more (they changed since "
                          f"the plan was made): {exc}",
                          hint="make a new plan (fab plan ... --out FILE), review it, and deploy that one") from None
    by = doc["planned_by"]
    operator = planner.Operator(user=str(by["user"]), machine=str(by["machine"]), pid=int(by["pid"]), run=doc["run"])
    hosts, plans = plan_hosts(hosts, pipe, release, operator)
    now = _document(hosts, pipe, plans, release, operator, inv_path, inv, doc["fleet"], flags, digests=True)
    return hosts, pipe, plans, operator, now


def _finish(run, notifier, results, code, report=None, junit=None, html=None, batches=(), as_planned=None):
    """The end of a run: the report dict (docs/commands.md#json-report), the end notification
    (its outcome goes into the report), then the files asked for. `as_planned`: per host, for
    a deploy from a saved plan, whether exactly the saved commands ran."""
    data = {**run, "exit_code": code, "ended": round(time.time(), 3), "batches": list(batches),
            "hosts": [r.as_dict() for r in results]}
    if as_planned is not None:
        for h in data["hosts"]:
            h["as_planned"] = as_planned.get(h["host"])
    data["notifications"] = notifier.finish(data)
    if report:
        write_json(report, data)
    if html:
        Path(html).write_text(htmlreport.render(data), encoding="utf-8")
    if junit:
        write_junit(junit, results, name=f"{data['action']} {data['release'] or ''}".strip())


def rollback(host, inventory=None, pipeline=None, to=None, dry_run=False, parallel=None, report=None,
             junit=None, reporter=None, html=None):
    reporter = reporter or Reporter()
    try:
        host, inventory, pipeline = cliargs.parse_selection(host, inventory, pipeline)
        to = cliargs.parse_release(to, flag="--to")
        parallel = cliargs.parse_count("--parallel", parallel)
        report, junit, html = (cliargs.parse_output(flag, value) for flag, value in
                               (("--report", report), ("--junit", junit), ("--html", html)))
        hosts, pipe = load(host, inventory, pipeline)
        operator = planner.Operator.here()
        targets = [] if dry_run else notify.resolve(pipe.notify)
        # The checks a deploy makes when it plans, before any connection: the target is known only
        # once connected, but a placeholder id plans the same steps, so a host without fpm.reload
        # or a missing from_env variable of an on_rollback step stops here.
        for h in hosts:
            planner.rollback(h, pipe, to or "previous", operator, failed="current", take_lock=True)
        inventory_mod.check_controller_files(hosts)  # --dry-run connects too
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    quiet = (lambda e: None) if dry_run else reporter
    fleet = fleet_mod.Fleet(hosts, pipe, operator, quiet, parallel=parallel)
    if not dry_run:
        run = runinfo.start("rollback", to, pipe, operator, hosts)
        notifier = notify.Notifier(targets, reporter)
        notifier.send("start", run)
        reporter.start([h.name for h in hosts])
    try:
        # A rollback is short and makes hosts consistent: the first Ctrl-C lets it finish.
        with Interrupts(reporter, rollback=True) as interrupt:
            def one(h):
                if interrupt.interrupted:
                    return ops.HostResult(h.name, None, state=ops.UNTOUCHED, message="not started: interrupted"), None
                return ops.rollback_host(h, pipe, operator, quiet, to=to, dry_run=dry_run)
            out = fleet.map(one, hosts)
    finally:
        reporter.stop()
    results = [r for r, _ in out]
    if dry_run:
        for h, (r, steps) in zip(hosts, out):
            if steps:
                reporter.plan(h, steps)
            else:
                reporter.message(f"# host {h.name}: {r.state}: {r.message}")
        return EXIT_OK if all(s for _, s in out) else EXIT_FAILED
    reporter.summary(results, title="rollback")
    # For `fab rollback`, rolled back is the success state.
    code = exit_code(results, ok_states=ops.OK_STATES + (ops.ROLLED_BACK,))
    if interrupt.interrupted and code == EXIT_OK:
        code = EXIT_INTERRUPTED
    _finish(run, notifier, results, code, report, junit, html)
    return code


def releases(host, inventory=None, pipeline=None, as_json=False, reporter=None):
    reporter = reporter or Reporter()
    try:
        host, inventory, pipeline = cliargs.parse_selection(host, inventory, pipeline)
        inv = inventory_mod.load(_path(inventory, DEFAULT_INVENTORY))
        hosts = inv.select(host)
        pipe = _pipeline_or_none(pipeline)
        inventory_mod.check_controller_files(hosts)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    fleet = fleet_mod.Fleet(hosts, pipe, planner.Operator.here(), lambda e: None)
    states = fleet.map(lambda h: ops.host_state(h, pipe, None), hosts)
    if as_json:
        import json
        reporter.message(json.dumps(states, indent=2))
    else:
        for s in states:
            reporter.releases(s)
    return EXIT_FAILED if any("error" in s for s in states) else EXIT_OK


def unlock(host, inventory=None, reporter=None):
    reporter = reporter or Reporter()
    try:
        host, inventory, _ = cliargs.parse_selection(host, inventory)
        inv = inventory_mod.load(_path(inventory, DEFAULT_INVENTORY))
        hosts = inv.select(host)
        inventory_mod.check_controller_files(hosts)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    fleet = fleet_mod.Fleet(hosts, None, planner.Operator.here(), lambda e: None, parallel=fleet_mod.DEFAULT_PARALLEL)
    code = EXIT_OK
    for r in fleet.map(lambda h: ops.unlock_host(h, None, None), hosts):
        if "error" in r:
            reporter.message(f"{r['host']}: {r['error']}")
            code = EXIT_FAILED
        elif r["removed"]:
            reporter.message(f"{r['host']}: lock removed (was: {r['was']})")
        else:
            reporter.message(f"{r['host']}: no lock")
    return code


def lab_up(hosts=None, stack=True, latency=None, root=None, inventory=None, ssh_base=None, http_base=None,
           db_port=None, redis_port=None, reporter=None):
    """`fab lab.up`: start (or keep) the sandbox hosts, print how to reach them."""
    reporter = reporter or Reporter()
    from . import lab
    try:
        count = cliargs.parse_count("--hosts", hosts) or 3
        latency_ms = cliargs.parse_count("--latency", latency, minimum=0) or 0
        cliargs.nonempty("--root", root, "e.g. --root /srv/labmine, or leave it out for /srv/lab")
        cliargs.nonempty("--inventory", inventory, "e.g. --inventory /tmp/mine.yml, or leave it out for hosts/lab.yml")
        ssh_base = cliargs.parse_port("--ssh-base", ssh_base, span=count, example=12200)
        http_base = cliargs.parse_port("--http-base", http_base, span=count, example=18000)
        db_port = cliargs.parse_port("--db-port", db_port, example=13307)
        redis_port = cliargs.parse_port("--redis-port", redis_port, example=16380)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    lab.ensure_packages()
    started = lab.up(count, root=root or lab.DEFAULT_ROOT, inventory=inventory or lab.DEFAULT_INVENTORY,
                     ssh_base=2200 if ssh_base is None else ssh_base, http_base=8000 if http_base is None else http_base,
                     stack=stack, db_port=db_port, redis_port=redis_port, latency_ms=float(latency_ms))
    for h in started:
        via = f" (+{h.latency_ms:g} ms each way)" if h.proxy_port else ""
        reporter.message(f"{h.name}: ssh 127.0.0.1:{h.port}{via}  http://127.0.0.1:{h.http_port}/version"
                         f"  {h.deploy_path}")
        if h.stack:
            reporter.message(f"      workers: {h.stack.supervisor.restart}")
    if started and started[-1].stack:
        db, redis = started[-1].stack.db, started[-1].stack.redis
        reporter.message(f"stack: mariadb 127.0.0.1:{db.port} (database {db.database}, user {db.username}, "
                         f"password in {db.conf.rsplit('/', 1)[0]}/credentials.json)  redis 127.0.0.1:{redis.port}")
    return EXIT_OK


