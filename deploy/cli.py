"""Command implementations behind the fab tasks: parse arguments, load YAML, call operations,
hand results to the report layer, return an exit code (docs/commands.md)."""

import os
import sys
import time
from pathlib import Path

from . import cliargs
from . import fleet as fleet_mod
from . import htmlreport, notify, runinfo
from . import inventory as inventory_mod
from . import operations as ops
from . import pipeline as pipeline_mod
from . import plan as planner
from .errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_NEEDS_HUMAN, EXIT_OK, ConfigError
from .report import Reporter, write_json, write_junit
from .signals import Interrupts

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = "hosts"
DEFAULT_PIPELINE = "playbooks/laravel.yml"


def _path(value, default):
    path = Path(value or default)
    if not path.is_absolute() and not path.exists() and (PROJECT / path).exists():
        path = PROJECT / path
    return path


def load(host, inventory=None, pipeline=None, source=None):
    inv = inventory_mod.load(_path(inventory, DEFAULT_INVENTORY))
    hosts = inv.select(host)
    pipe = pipeline_mod.load(_path(pipeline, DEFAULT_PIPELINE), source_override=source)
    return hosts, pipe


def exit_code(results, ok_states=ops.OK_STATES):
    states = [r.state for r in results]
    if any(s in (ops.NEEDS_HUMAN,) for s in states):
        return EXIT_NEEDS_HUMAN
    if all(s in ok_states for s in states):
        return EXIT_OK
    return EXIT_FAILED


def deploy(host, inventory=None, pipeline=None, source=None, release=None, dry_run=False, parallel=None,
           serial=None, max_fail=None, rollback_all=False, report=None, junit=None, reporter=None, html=None):
    reporter = reporter or Reporter()
    try:
        # The flags first (no file is read for a bad flag), then the files, then every host's plan.
        host, inventory, pipeline = cliargs.parse_selection(host, inventory, pipeline)
        source = cliargs.parse_path("--source", source)
        release = cliargs.parse_release(release)
        parallel = cliargs.parse_count("--parallel", parallel)
        serial = cliargs.parse_serial(serial)
        max_fail = cliargs.parse_max_fail(max_fail)
        report, junit, html = (cliargs.parse_output(flag, value) for flag, value in
                               (("--report", report), ("--junit", junit), ("--html", html)))
        hosts, pipe = load(host, inventory, pipeline, source)
        release = release or planner.new_release_id()
        operator = planner.Operator.here()
        # The host that migrates goes first (its batch is the first); every plan names it.
        primary, hosts = fleet_mod.primary(hosts, pipe)
        # Plan every host first: a bad setting for any host stops the run before any SSH.
        plans = {h.name: planner.deploy(h, pipe, release, operator, primary=primary) for h in hosts}
        targets = [] if dry_run else notify.resolve(pipe.notify)
        if not dry_run:  # a plan never connects; a deploy needs the key and known_hosts files
            inventory_mod.check_controller_files(hosts)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    if dry_run:
        try:
            for h in hosts:
                reporter.plan(h, plans[h.name], extra=_plan_footer(pipe))
        except BrokenPipeError:  # `fab plan | head`: the reader has seen enough
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    reporter.message(f"deploying release {release} to {len(hosts)} host(s): {', '.join(h.name for h in hosts)}")
    run = runinfo.start("deploy", release, pipe, operator, hosts)
    notifier = notify.Notifier(targets, reporter, {v for p in plans.values() for s in p for c in s.commands
                                                   for v in c.secrets})
    notifier.send("start", run)
    reporter.start([h.name for h in hosts])
    with Interrupts(reporter) as interrupt:
        fleet = fleet_mod.Fleet(hosts, pipe, operator, reporter, parallel=parallel, stop_event=interrupt.stop,
                                abort_event=interrupt.abort, plans=plans, primary=primary)
        try:
            results = fleet.deploy(release, serial=serial, max_fail=max_fail, rollback_all=rollback_all)
        finally:
            reporter.stop()
    reporter.summary(results, title=f"release {release}")
    code = exit_code(results)
    if interrupt.interrupted and code == EXIT_OK:
        code = EXIT_INTERRUPTED
    _finish(run, notifier, results, code, report, junit, html, batches=fleet.batch_log)
    return code


def _plan_footer(pipe):
    _, _, after = pipe.split()
    again = [s.name for s in after if s.on_rollback]
    if not pipe.resets_pool_after_switch():
        again.insert(0, "opcache_reset (always on rollback)")
    heal = ("first the health checks run and their fixes are applied (remediate: true), then if that does not help: "
            if pipe.remediate else "")
    switch = "sync starts writing into the live tree" if pipe.strategy == "in-place" else "activate"
    back = ("the snapshot taken in prepare is restored" if pipe.strategy == "in-place"
            else "current goes back to the previous release")
    lines = [] if pipe.strategy == "in-place" else [
        "## on failure before activate: the new release is removed, current is never touched"]
    lines.append(f"## on failure after {switch}: {heal}{back}, then {', '.join(again)} run for it, "
                 "and the failed release is marked bad")
    return "\n".join(lines + notify.describe(pipe.notify))




def _finish(run, notifier, results, code, report=None, junit=None, html=None, batches=()):
    """The end of a run: the report dict (docs/commands.md#json-report), the end notification
    (its outcome goes into the report), then the files asked for."""
    data = {**run, "exit_code": code, "ended": round(time.time(), 3), "batches": list(batches),
            "hosts": [r.as_dict() for r in results]}
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


def lab_up(hosts=None, stack=True, latency=None, reporter=None):
    """`fab lab.up`: start (or keep) the sandbox hosts, print how to reach them."""
    reporter = reporter or Reporter()
    try:
        count = cliargs.parse_count("--hosts", hosts) or 3
        latency_ms = cliargs.parse_count("--latency", latency, minimum=0) or 0
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    from . import lab
    lab.ensure_packages()
    started = lab.up(count, stack=stack, latency_ms=float(latency_ms))
    for h in started:
        via = f" (+{h['latency_ms']:g} ms each way)" if h.get("proxy_port") else ""
        reporter.message(f"{h['name']}: ssh 127.0.0.1:{h['port']}{via}  http://127.0.0.1:{h['http_port']}/version"
                         f"  {h['deploy_path']}")
        if h.get("stack"):
            reporter.message(f"      workers: {h['stack']['supervisor']['restart']}")
    if started and started[-1].get("stack"):
        db, redis = started[-1]["stack"]["db"], started[-1]["stack"]["redis"]
        reporter.message(f"stack: mariadb 127.0.0.1:{db['port']} (database {db['database']}, user {db['username']}, "
                         f"password in {db['conf'].rsplit('/', 1)[0]}/credentials.json)  redis 127.0.0.1:{redis['port']}")
    return EXIT_OK


def _pipeline_or_none(pipeline):
    try:
        return pipeline_mod.load(_path(pipeline, DEFAULT_PIPELINE))
    except ConfigError:
        if pipeline:
            raise
        return None
