"""Fabric/Invoke tasks: thin wrappers that parse arguments and call deploy.cli.

Run `fab --list` for the tasks and `fab --help TASK` for their flags; docs/commands.md has more.
"""

from invoke import Collection, Exit, task

from deploy import cli, cli_health


def _done(code):
    if code:
        raise Exit(code=code)


@task(help={
    "host": "host, group, or comma-separated list of either (required)",
    "inventory": "inventory file (default: every hosts/*.yml)",
    "pipeline": "pipeline file (default: playbooks/laravel.yml)",
    "source": "local app directory to ship (overrides the pipeline's source)",
    "release": "release id (e.g. a git sha); default: a UTC timestamp",
    "dry-run": "print the exact plan per host and step; change nothing",
    "parallel": "how many hosts work at once (default: pipeline's parallel, else 10)",
    "serial": "rolling batches, e.g. 1,25%,100% (default: pipeline's serial)",
    "max-fail": "failed hosts a batch tolerates, count or percentage (default: pipeline's max_fail, else 0)",
    "rollback-all": "when a batch goes over max-fail, roll back every switched host, not only that batch",
    "report": "write a JSON report to this file",
    "junit": "write a JUnit XML file",
    "yes": "answer yes to confirmations (the tool never prompts without a terminal)",
})
def deploy(c, host, inventory=None, pipeline=None, source=None, release=None, dry_run=False, parallel=0,
           serial=None, max_fail=None, rollback_all=False, report=None, junit=None, yes=False):
    """Deploy a release to hosts: build, switch, reset the pool, verify; roll back on failure."""
    _done(cli.deploy(host, inventory, pipeline, source, release, dry_run, parallel or None, serial, max_fail,
                     rollback_all, report, junit))


@task(help={"host": "host, group, or comma-separated list", "inventory": "inventory file",
            "pipeline": "pipeline file", "source": "local app directory", "release": "release id"})
def plan(c, host, inventory=None, pipeline=None, source=None, release=None):
    """Dry run: the exact commands per host and step. Changes nothing, connects to nothing."""
    _done(cli.deploy(host, inventory, pipeline, source, release, dry_run=True))


@task(help={"host": "host, group, or comma-separated list", "to": "release id to go back to (default: the previous good one)",
            "inventory": "inventory file", "pipeline": "pipeline file (for the reset/reload/verify steps)",
            "dry-run": "show what would run (reads the host's state, changes nothing)",
            "report": "JSON report file", "junit": "JUnit XML file", "parallel": "hosts at once"})
def rollback(c, host, to=None, inventory=None, pipeline=None, dry_run=False, report=None, junit=None, parallel=0):
    """Switch back to the previous good release (or --to ID), reset/reload the pool, verify."""
    _done(cli.rollback(host, inventory, pipeline, to, dry_run, parallel or None, report, junit))


@task(help={"host": "host, group, or comma-separated list", "inventory": "inventory file", "json": "print JSON",
            "pipeline": "pipeline file (its strategy decides: releases, or in-place snapshots)"})
def releases(c, host, inventory=None, pipeline=None, json=False):
    """List releases per host: which is live, which are marked bad, the lock if any."""
    _done(cli.releases(host, inventory, pipeline, as_json=json))


@task(help={"host": "host, group, or comma-separated list", "inventory": "inventory file"})
def unlock(c, host, inventory=None):
    """Remove a deploy lock left by a dead deploy (shows who held it and since when)."""
    _done(cli.unlock(host, inventory))


@task(help={"host": "host, group, or comma-separated list", "inventory": "inventory file",
            "pipeline": "pipeline file", "json": "print JSON"})
def health(c, host, inventory=None, pipeline=None, json=False):
    """The eight health checks per host (pass/warn/fail, evidence, fix); exit 1 when one fails."""
    _done(cli_health.health(host, inventory, pipeline, as_json=json))


@task(help={"host": "host, group, or comma-separated list", "inventory": "inventory file",
            "pipeline": "pipeline file", "json": "print JSON", "attempts": "rounds of fixes (default 2)"})
def heal(c, host, inventory=None, pipeline=None, json=False, attempts=2):
    """Fix what the checks find (ACLs, OPCache reset in the pool, FPM reload, artisan caches), verify again."""
    _done(cli_health.heal(host, inventory, pipeline, as_json=json, attempts=int(attempts)))


@task(help={"hosts": "how many sandbox hosts (default 3)",
            "latency": "delay every SSH byte MS each way (a relay in front of each sshd; round trip 2 x MS)"})
def lab_up(c, hosts=3, latency=0):
    """Start local sandbox hosts: real sshd, PHP-FPM (OPCache on) and nginx per host; writes hosts/lab.yml."""
    from deploy import lab
    lab.ensure_packages()
    for h in lab.up(int(hosts), latency_ms=float(latency)):
        via = f" (+{h['latency_ms']:g} ms each way)" if h["proxy_port"] else ""
        print(f"{h['name']}: ssh 127.0.0.1:{h['port']}{via}  http://127.0.0.1:{h['http_port']}/version  {h['deploy_path']}")


@task(help={"purge": "also delete the sandbox directory (/srv/lab)"})
def lab_down(c, purge=False):
    """Stop the sandbox hosts."""
    from deploy import lab
    lab.down(purge=purge)


lab_ns = Collection("lab")
lab_ns.add_task(lab_up, name="up")
lab_ns.add_task(lab_down, name="down")
ns = Collection(deploy, plan, rollback, releases, unlock, health, heal, lab_ns)
