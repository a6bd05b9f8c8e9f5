"""Fabric/Invoke tasks: thin wrappers that hand the flags to deploy.cli, which checks them.

Run `fab --list` for the tasks and `fab --help TASK` (or `fab TASK --help`) for their flags;
docs/commands.md has more. Flags are long only (`auto_shortflags=False`): Invoke would otherwise
give every parameter a short flag, differing per task and taking `-h` from --help. Value flags
default to None and arrive as text, so deploy/cli.py can tell "not given" from an empty or bad
value and say which flag is wrong (exit 2). Argument errors Invoke finds itself (unknown flag,
missing value) are reported the same way: deploy/cliargs.py.
"""

from invoke import Collection, Exit, task

# Only the argument checks at start-up: each task imports what it runs (deploy.cli pulls in the
# planner, the executor, the report layer), so `fab --list` and `fab --help` start fast
# (docs/benchmark.md: start-up).
from deploy import cliargs

cliargs.adopt()


def _done(code):
    if code:
        raise Exit(code=code)


HOST_HELP = "host, group, or comma-separated list of either (required)"


@task(auto_shortflags=False, help={
    "host": HOST_HELP,
    "inventory": "inventory file or directory (default: every hosts/*.yml)",
    "pipeline": "pipeline file (default: playbooks/laravel.yml)",
    "source": "app directory to ship, or git:REF for a commit (overrides the pipeline's source)",
    "release": "release id (e.g. a git sha); default: a git source's short sha, else a UTC timestamp",
    "dry-run": "print the plan (as fab plan does); change nothing",
    "parallel": "how many hosts work at once, >= 1 (default: pipeline's parallel, else 10)",
    "serial": "rolling batches, e.g. 1,25%,100% (default: pipeline's serial)",
    "max-fail": "failed hosts a batch tolerates, count or percentage (default: pipeline's max_fail, else 0)",
    "rollback-all": "when a batch goes over max-fail, roll back every switched host, not only that batch",
    "report": "write a JSON report to this file",
    "junit": "write a JUnit XML file",
    "html": "write a self-contained HTML report (timeline per host and step, states, commands) to this file",
    "plan": "run this saved plan (from fab plan --out) exactly; refused (exit 2) if any of its inputs changed",
    "allow-dirty": "git source: ship the commit even if the work tree has uncommitted changes (they are not shipped)",
    "yes": "accepted for scripts; has no effect (the tool never prompts)",
})
def deploy(c, host=None, inventory=None, pipeline=None, source=None, release=None, dry_run=False, parallel=None,
           serial=None, max_fail=None, rollback_all=False, report=None, junit=None, html=None, plan=None,
           allow_dirty=False, yes=False):
    """Deploy a release to hosts: build, switch, reset the pool, verify; roll back on failure."""
    from deploy import cli
    _done(cli.deploy(host, inventory, pipeline, source, release, dry_run, parallel, serial, max_fail,
                     rollback_all, report, junit, html=html, plan=plan, allow_dirty=allow_dirty))


@task(auto_shortflags=False, help={
    "host": HOST_HELP, "inventory": "inventory file or directory", "pipeline": "pipeline file",
    "source": "app directory, or git:REF for a commit", "release": "release id (default: git short sha, else a timestamp)",
    "serial": "rolling batches to plan, e.g. 1,25%,100% (default: pipeline's serial)",
    "max-fail": "failed hosts a batch tolerates (default: pipeline's max_fail)",
    "parallel": "hosts at once, >= 1 (default: pipeline's parallel, else 10)",
    "rollback-all": "plan the wider rollback of fab deploy --rollback-all",
    "verbose": "every host's exact commands, each with what it does (default: one host per group of alike hosts)",
    "json": "print the plan as JSON (the saved-plan format), nothing else on stdout",
    "out": "save the plan to this file, for fab deploy --plan FILE",
    "check": "connect read-only to each host: live release, files that would change, lock, sudo, pool; "
             "exit 0 changes, 4 no changes, 1 cannot deploy",
    "files": "with --check: list every file that would change per host",
    "allow-dirty": "git source: plan the commit even if the work tree has uncommitted changes"})
def plan(c, host=None, inventory=None, pipeline=None, source=None, release=None, serial=None, max_fail=None,
         parallel=None, rollback_all=False, verbose=False, json=False, out=None, check=False, files=False,
         allow_dirty=False):
    """Dry run: the plan per host and step. Connects to nothing (--check: read-only connections)."""
    from deploy import cli_plan
    _done(cli_plan.plan_cmd(host, inventory, pipeline, source, release, serial, max_fail, parallel, rollback_all,
                       verbose=verbose, as_json=json, out=out, check=check, files=files, allow_dirty=allow_dirty))


@task(auto_shortflags=False, help={
    "host": HOST_HELP, "to": "release id to go back to (default: the previous good one)",
    "inventory": "inventory file or directory", "pipeline": "pipeline file (for the reset/reload/verify steps)",
    "dry-run": "show what would run (reads the host's state, changes nothing)",
    "report": "JSON report file", "junit": "JUnit XML file", "parallel": "hosts at once, >= 1",
    "html": "self-contained HTML report file"})
def rollback(c, host=None, to=None, inventory=None, pipeline=None, dry_run=False, report=None, junit=None,
             parallel=None, html=None):
    """Switch back to the previous good release (or --to ID), reset/reload the pool, verify."""
    from deploy import cli
    _done(cli.rollback(host, inventory, pipeline, to, dry_run, parallel, report, junit, html=html))


@task(auto_shortflags=False, help={"host": HOST_HELP, "inventory": "inventory file or directory", "json": "print JSON",
                                   "pipeline": "pipeline file (its strategy decides: releases, or in-place snapshots)"})
def releases(c, host=None, inventory=None, pipeline=None, json=False):
    """List releases per host: which is live, which are marked bad, the lock if any."""
    from deploy import cli
    _done(cli.releases(host, inventory, pipeline, as_json=json))


@task(auto_shortflags=False, help={"host": HOST_HELP, "inventory": "inventory file or directory"})
def unlock(c, host=None, inventory=None):
    """Remove a deploy lock left by a dead deploy (shows who held it and since when)."""
    from deploy import cli
    _done(cli.unlock(host, inventory))


@task(auto_shortflags=False, help={"host": HOST_HELP, "inventory": "inventory file or directory",
                                   "pipeline": "pipeline file", "json": "print JSON"})
def health(c, host=None, inventory=None, pipeline=None, json=False):
    """The eight health checks per host (pass/warn/fail, evidence, fix); exit 1 when one fails."""
    from deploy import cli_health
    _done(cli_health.health(host, inventory, pipeline, as_json=json))


@task(auto_shortflags=False, help={"host": HOST_HELP, "inventory": "inventory file or directory",
                                   "pipeline": "pipeline file", "json": "print JSON",
                                   "attempts": "rounds of fixes, >= 1 (default 2)"})
def heal(c, host=None, inventory=None, pipeline=None, json=False, attempts=None):
    """Fix what the checks find (ACLs, OPCache reset in the pool, FPM reload, artisan caches), verify again."""
    from deploy import cli_health
    _done(cli_health.heal(host, inventory, pipeline, as_json=json, attempts=attempts))


@task(auto_shortflags=False, help={
    "hosts": "how many sandbox hosts, >= 1 (default 3)",
    "stack": "also the app stack (default on; --no-stack skips it): one MariaDB and one Redis for the lab, "
             "a supervisord per host running the queue workers and the scheduler",
    "latency": "delay every SSH byte MS each way (a relay in front of each sshd; round trip 2 x MS)",
    "root": "the sandbox directory (default /srv/lab): another one for a lab of your own",
    "inventory": "the inventory file to write (default hosts/lab.yml)",
    "ssh-base": "host labN's sshd listens on BASE+N (default 2200)",
    "http-base": "host labN's nginx listens on BASE+N (default 8000)",
    "db-port": "the stack's MariaDB port (default 3307)",
    "redis-port": "the stack's Redis port (default 6380)"})
def lab_up(c, hosts=None, stack=True, latency=None, root=None, inventory=None, ssh_base=None, http_base=None,
           db_port=None, redis_port=None):
    """Start local sandbox hosts: real sshd, PHP-FPM (OPCache on) and nginx per host, and the app stack; writes hosts/lab.yml."""
    from deploy import cli
    _done(cli.lab_up(hosts, stack=stack, latency=latency, root=root, inventory=inventory, ssh_base=ssh_base,
                     http_base=http_base, db_port=db_port, redis_port=redis_port))


@task(auto_shortflags=False, help={"purge": "also delete the sandbox directory (/srv/lab)",
                                   "root": "the sandbox directory (default /srv/lab)"})
def lab_down(c, purge=False, root=None):
    """Stop the sandbox hosts."""
    from deploy import lab
    lab.down(root or lab.DEFAULT_ROOT, purge=purge)


lab_ns = Collection("lab")
lab_ns.add_task(lab_up, name="up")
lab_ns.add_task(lab_down, name="down")
ns = Collection(deploy, plan, rollback, releases, unlock, health, heal, lab_ns)
