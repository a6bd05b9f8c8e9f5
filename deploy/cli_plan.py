"""`fab plan` (and `fab deploy --dry-run`), and what every command reads first: the inventory,
the pipeline and the hosts' plans. Kept apart from deploy/cli.py so a plan loads no executor,
fleet or transport (docs/benchmark.md: start-up); `--check` imports its connections when asked."""

import dataclasses
import os
import sys
from pathlib import Path

from . import cliargs, gitsource, notify, planfile, rollout
from . import inventory as inventory_mod
from . import pipeline as pipeline_mod
from . import plan as planner
from .errors import EXIT_BAD_INPUT, EXIT_OK, ConfigError
from .report import Reporter

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


def _load_plan_inputs(host, inventory, pipeline, source, release, allow_dirty):
    """What a plan is made from: (inventory path, inventory, hosts, pipeline, release id). A git
    source is resolved to its commit (not exported yet); its short sha is the default id."""
    inv_path = _path(inventory, DEFAULT_INVENTORY)
    inv = inventory_mod.load(inv_path)
    hosts = inv.select(host)
    pipe = pipeline_mod.load(_path(pipeline, DEFAULT_PIPELINE), source_override=source)
    if pipe.git is not None:
        resolved = gitsource.resolve(pipe.git, allow_dirty)
        pipe = dataclasses.replace(pipe, git=resolved, source=gitsource.export_dir(resolved))
        release = release or resolved.short
    return inv_path, inv, hosts, pipe, release or planner.new_release_id()


def plan_hosts(hosts, pipe, release, operator):
    """Every host's plan, before any connection (a bad setting for any host stops the run):
    (hosts in deploy order, {host name: plan}). The host that migrates goes first, so it is in
    the first batch, and every plan names it."""
    primary, hosts = rollout.primary(hosts, pipe)
    return hosts, {h.name: planner.deploy(h, pipe, release, operator, primary=primary) for h in hosts}


def ready_to_connect(hosts, pipe):
    """What a connecting command needs before the first host: the key and known_hosts files, and
    a git source exported (rsync sends that directory)."""
    inventory_mod.check_controller_files(hosts)
    if pipe.git is not None:
        gitsource.export(pipe.git)


def _document(hosts, pipe, plans, release, operator, inv_path, inv, fleet, flags, digests):
    return planfile.build(release=release, operator=operator, hosts=hosts, plans=plans, pipe=pipe,
                          inventory=(inv_path, inv.files), fleet=fleet, on_failure=_on_failure(pipe),
                          notify=[line.removeprefix("## notify ") for line in notify.describe(pipe.notify)],
                          flags=flags, digests=digests)


def plan_cmd(host, inventory=None, pipeline=None, source=None, release=None, serial=None, max_fail=None,
             parallel=None, rollback_all=False, verbose=False, as_json=False, out=None, check=False, files=False,
             allow_dirty=False, reporter=None):
    """`fab plan` (and `fab deploy --dry-run`): the plan for people, --json for machines, --out
    to save it for `fab deploy --plan`, --check to ask each host (read-only) what it would change."""
    reporter = reporter or Reporter()
    try:
        host, inventory, pipeline = cliargs.parse_selection(host, inventory, pipeline)
        source = cliargs.parse_path("--source", source)
        gitsource.override_ref(source)
        release = cliargs.parse_release(release)
        parallel = cliargs.parse_count("--parallel", parallel)
        serial = cliargs.parse_serial(serial)
        max_fail = cliargs.parse_max_fail(max_fail)
        out = cliargs.parse_output("--out", out)
        if files and not check:
            raise ConfigError("--files lists the files --check finds", hint="add --check (it connects, read-only)")
        inv_path, inv, hosts, pipe, release = _load_plan_inputs(host, inventory, pipeline, source, release, allow_dirty)
        # A plan meant to be run later gets a run id: its lock token, whoever runs it.
        saved = bool(out or as_json)
        operator = planner.Operator.here(run=planfile.new_run_id() if saved else None)
        hosts, plans = plan_hosts(hosts, pipe, release, operator)
        fleet = planfile.fleet_doc(hosts, pipe, serial, max_fail, parallel, rollback_all)
        flags = {"host": host, "inventory": inventory, "pipeline": pipeline, "source": source,
                 "allow_dirty": bool(allow_dirty)}
        doc = _document(hosts, pipe, plans, release, operator, inv_path, inv, fleet, flags, digests=saved)
        if check:  # connects: the files a connection needs, and the source rsync compares
            ready_to_connect(hosts, pipe)
    except ConfigError as exc:
        reporter.error(str(exc))
        return EXIT_BAD_INPUT
    if check:
        from . import plancheck  # connects (read-only): only for --check
        doc["check"] = plancheck.run(hosts, pipe, plans, release, fleet["parallel"])
    digest = planfile.save(out, doc) if out else None

    def show():
        if as_json:
            reporter.message(planfile.encode(doc).decode().rstrip("\n"))
        else:
            reporter.plan_document(doc, verbose=verbose)
            if check:
                reporter.plan_check(doc["check"], files=files)
        if out:
            line = f"saved plan {out} (sha256 {digest}); deploy exactly this: fab deploy --plan {out}"
            print(line, file=sys.stderr if as_json else reporter.stream, flush=True)
    _quietly_piped(show)
    return doc["check"]["exit_code"] if check else EXIT_OK


def _quietly_piped(show):
    try:
        show()
    except BrokenPipeError:  # `fab plan | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _on_failure(pipe):
    """What a deploy does when a step fails, from the playbook (docs/pipeline.md#when-a-step-fails)."""
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
        "before activate: the new release is removed, current is never touched"]
    lines.append(f"after {switch}: {heal}{back}, then {', '.join(again)} run for it, "
                 "and the failed release is marked bad")
    return lines


def _pipeline_or_none(pipeline):
    try:
        return pipeline_mod.load(_path(pipeline, DEFAULT_PIPELINE))
    except ConfigError:
        if pipeline:
            raise
        return None
