#!/usr/bin/env python3
"""Benchmark: failed requests under a steady HTTP load while the tool deploys, rolls back and
heals, before and after the zero-downtime changes, in the same run.

Two real sandbox hosts (deploy/lab/: own sshd, PHP-FPM with OPCache, nginx, the sample Laravel
app). During every measured command, wrk (deploy/lab/load.py) loads EACH host's nginx with
~100 requests/s on /version (4 connections, each pausing before every request) and counts every
answer by status, and the requests that got none (connect/read/write errors, timeouts). A
request failed when it got a non-2xx answer or none.

Configurations, each measured on the same hosts, in this order:
  before          the previous default pipeline (no precheck; fpm_reload on every deploy) on
                  pools with FPM's default process_control_timeout = 0
  host fix only   the same pipeline, pools with process_control_timeout = 10s
  after           playbooks/laravel.yml (precheck; fpm_reload when: needed), pools with 10s

Operations, per round and configuration (all on both hosts at once, `--host lab`):
  deploy          a new release
  rollback        `fab rollback` back to the previous one
  deploy (broken) a release whose code always throws (exit 1 expected): switched live and
                  rolled back after verify (before), or rejected by precheck before the switch
  heal (reset)    `fab heal` of the incident's stale code (an in-place edit the pool does not
                  run, validate_timestamps=0): the fix is an in-pool OPCache reset
  heal (reload)   the same on pools whose opcache.restrict_api refuses the probe's reset: heal
                  escalates to a reload of PHP-FPM
Unmeasured deploys in between keep every rollback target clean (a rollback refuses a release
whose files changed since it was verified).

Then each moment of a deploy alone, on one host at full speed (wrk without pauses, 8
connections): N switches of current between two releases (rename of a symlink), N in-pool
OPCache resets (fpmctl.php reset), N reloads (SIGUSR2 to the master, 1 s apart) with
process_control_timeout = 0 and with 10s.

    .venv/bin/python bench/load.py                       # 3 rounds, prints the table
    .venv/bin/python bench/load.py --rounds 5 --write    # also docs/benchmark.md
    .venv/bin/python bench/load.py --table-from FILE     # the tables of a --json file, no run

Must run as root (the lab does). Everything is stopped and removed at the end, also on
failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from deploy import lab  # noqa: E402
from deploy.lab.load import Load, LoadResult  # noqa: E402

FAB = PROJECT / ".venv" / "bin" / "fab"
DOC = PROJECT / "docs" / "benchmark.md"
DEFAULT = PROJECT / "playbooks" / "laravel.yml"
START, END = "<!-- load.py results: start -->", "<!-- load.py results: end -->"
HOSTS = 2
RATE = 100

# The default playbook before precheck, keep_assets and `fpm_reload: {when: needed}`.
PREVIOUS = """\
source: {source}
keep_releases: 5
remediate: true
steps:
  - sync
  - shared
  - ownership
  - composer
  - artisan:
      commands: [config:cache, route:cache, view:cache, event:cache]
  - activate
  - opcache_reset
  - fpm_reload
  - verify:
      timeout: 20
"""

CONFIGS = [
    ("before", "previous default pipeline (fpm_reload on every deploy), process_control_timeout = 0", "previous", 0),
    ("host fix only", "previous default pipeline, process_control_timeout = 10s", "previous", 10),
    ("after", "playbooks/laravel.yml (precheck, fpm_reload when: needed), process_control_timeout = 10s", "default", 10),
]
OPERATIONS = ["deploy", "rollback", "deploy (broken)", "heal (reset)", "heal (reload)"]
RESTRICT = {"php_admin_value[opcache.restrict_api]": "/nonexistent-restrict-api"}


class BenchError(RuntimeError):
    pass


def log(msg):
    print(f"[bench-load {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.inventory = work / "lab.yml"
        self.hosts = []
        self.n = 0
        self.source = str(PROJECT / "sample-app")
        self.broken = work / "broken"
        shutil.copytree(self.source, self.broken, symlinks=True)
        controller = self.broken / "app" / "Http" / "Controllers" / "VersionController.php"
        controller.write_text(controller.read_text().replace("$file = base_path('RELEASE');",
                                                             "throw new \\RuntimeException('always broken');"))
        self.pipelines = {"default": str(DEFAULT),
                          "previous": str(self.write("previous.yml", PREVIOUS.format(source=self.source)))}

    def write(self, name, text):
        path = self.work / name
        path.write_text(text)
        return path

    def fab(self, pipeline, *argv, ok=(0,)):
        self.n += 1
        out = self.work / f"{self.n:03d}-{argv[0]}.log"
        cmd = [str(FAB), *argv, "--host", "lab", "--inventory", str(self.inventory), "--pipeline", pipeline]
        r = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=600)
        out.write_text(r.stdout + r.stderr)
        if r.returncode not in ok:
            raise BenchError(f"{' '.join(argv)} exited {r.returncode}; output in {out}:\n{r.stdout[-3000:]}")
        return r

    def measured(self, pipeline, *argv, expect=None, ok=(0,)):
        """fab ARGV while every host's nginx is under load; the counts of each host's load.
        `expect`: text fab's output must contain (the operation did what it is measured for)."""
        loads = [Load(h.health_url, rate=RATE) for h in self.hosts]
        for load in loads:
            load.start()
        try:
            r = self.fab(pipeline, *argv, ok=ok)
            time.sleep(0.5)   # requests sent right after the command count too
        finally:
            results = [load.stop() for load in loads]
        if expect and expect not in r.stdout:
            raise BenchError(f"fab {' '.join(argv)}: no {expect!r} in its output:\n{r.stdout[-3000:]}")
        return results

    def pools(self, pct, directives=None):
        for h in self.hosts:
            lab.fpm_restart(h.name, root=self.args.root, process_control_timeout=pct, directives=directives or {})

    def release_dir(self, h):
        return Path(h.deploy_path).joinpath("current").resolve()

    def patch(self, tag):
        """The incident's hot fix: the live controller edited in place, which the pool does not
        run (validate_timestamps=0) until its OPCache is reset."""
        for h in self.hosts:
            f = self.release_dir(h) / "app" / "Http" / "Controllers" / "VersionController.php"
            text = f.read_text()
            text = re.sub(r"return response\(\$release[^,]*, 200\)", f"return response($release . '-{tag}', 200)", text)
            tmp = f.with_name(f.name + ".new")
            tmp.write_text(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, f)
            t = time.time() - 2.5   # older than opcache.file_update_protection
            os.utime(f, (t, t))

    def warm(self, expect):
        """Every host answers `expect` (and its controller is cached in its pool)."""
        for h in self.hosts:
            status, body = get(h.health_url)
            if (status, body) != (200, expect):
                raise BenchError(f"{h.name} answers {status} {body!r}, want {expect!r}")

    def round(self, key, pipeline, pct, rnd, rows):
        rel = f"{key}{rnd}"
        self.pools(pct)
        rows["deploy"].append(self.measured(pipeline, "deploy", "--release", f"{rel}a"))
        self.warm(f"{rel}a")
        rows["rollback"].append(self.measured(pipeline, "rollback"))
        prev = self.release_dir(self.hosts[0]).name
        self.warm(prev)
        rows["deploy (broken)"].append(self.measured(pipeline, "deploy", "--release", f"{rel}x", "--source",
                                                     str(self.broken), ok=(1,)))
        self.warm(prev)

        self.fab(pipeline, "deploy", "--release", f"{rel}b")
        self.warm(f"{rel}b")
        time.sleep(3.5)   # the edit must be newer than the deploy's reset
        self.patch("hotfix")
        self.warm(f"{rel}b")   # the pool still runs the old code
        rows["heal (reset)"].append(self.measured(pipeline, "heal", expect="action: opcache_reset"))
        self.warm(f"{rel}b-hotfix")

        self.pools(pct, RESTRICT)
        self.warm(f"{rel}b-hotfix")
        time.sleep(3.5)
        self.patch("hotfix2")
        self.warm(f"{rel}b-hotfix")
        rows["heal (reload)"].append(self.measured(pipeline, "heal", expect="action: fpm_reload"))
        self.warm(f"{rel}b-hotfix2")
        self.pools(pct)
        # A clean release last: the next round's rollback goes back to it.
        self.fab(pipeline, "deploy", "--release", f"{rel}c")

    def components(self, n):
        """Each moment alone, under a closed-loop load on lab1: what drops requests?"""
        h = self.hosts[0]
        root = Path(h.deploy_path)
        releases = sorted((p.name for p in (root / "releases").iterdir() if (p / "RELEASE").exists()),
                          key=lambda r: (root / "releases" / r / "RELEASE").stat().st_mtime)[-2:]
        live = os.readlink(root / "current")
        fpmctl = [shutil.which("php"), str(root / ".deploy" / "bin" / "fpmctl.php"), "reset",
                  f"--socket={h.socket}", f"--deploy-path={root}"]

        def switch():
            for i in range(n):
                tmp = root / ".current.bench"
                os.symlink(f"releases/{releases[i % 2]}", tmp)
                os.replace(tmp, root / "current")
                time.sleep(0.05)

        def reset():
            for _ in range(n):
                r = subprocess.run(fpmctl, capture_output=True, text=True, timeout=30)
                if r.returncode != 0:
                    raise BenchError(f"fpmctl reset failed: {r.stdout}{r.stderr}")
                time.sleep(0.3)

        def reload():
            for _ in range(n):
                pid = int(Path(h.fpm_pid_file).read_text().split()[0])
                os.kill(pid, signal.SIGUSR2)   # what `systemctl reload php8.2-fpm` sends
                time.sleep(1.0)

        out = {}
        for name, action, pct in [("switch of current", switch, 10), ("OPCache reset in the pool", reset, 10),
                                  ("reload, process_control_timeout = 0", reload, 0),
                                  ("reload, process_control_timeout = 10s", reload, 10)]:
            self.pools(pct)
            log(f"components: {name} x{n}")
            with Load(h.health_url, rate=0, connections=8) as load:
                action()
                time.sleep(0.5)
            out[name] = load.result
        tmp = root / ".current.bench"
        os.symlink(live, tmp)
        os.replace(tmp, root / "current")
        return out

    def run(self):
        lab.down(self.args.root, purge=True)
        self.hosts = lab.up(HOSTS, root=self.args.root, inventory=str(self.inventory), ssh_base=self.args.ssh_base,
                            http_base=self.args.http_base)
        results = {}
        # Warm-up, not measured: the first deploy (composer, shared/) and one after it.
        self.fab(self.pipelines["default"], "deploy", "--release", "warm1")
        self.fab(self.pipelines["default"], "deploy", "--release", "warm2")
        for rnd in range(1, self.args.rounds + 1):
            for key, (name, _, pipe, pct) in zip("xyz", CONFIGS):
                log(f"round {rnd}: {name}")
                rows = results.setdefault(name, {op: [] for op in OPERATIONS})
                self.round(key, self.pipelines[pipe], pct, rnd, rows)
        return results, self.components(self.args.events)


def breakdown(results):
    """What the failed requests got: '3 x HTTP 502, 1 no answer (read)'."""
    codes, errors = {}, {}
    for r in results:
        for status, n in r.statuses.items():
            if not 200 <= status < 300:
                codes[status] = codes.get(status, 0) + n
        for kind, n in r.errors.items():
            if n:
                errors[kind] = errors.get(kind, 0) + n
    parts = [f"{n} x HTTP {status}" for status, n in sorted(codes.items())]
    parts += [f"{n} no answer ({kind})" for kind, n in sorted(errors.items())]
    return ", ".join(parts)


def summary(runs):
    """One operation of one configuration: every host's load of every run."""
    flat = [r for run in runs for r in run]
    return {
        "runs": len(runs),
        "requests": sum(r.requests for r in flat),
        "failed": sum(r.failed for r in flat),
        "non_2xx": sum(r.non_2xx for r in flat),
        "no_answer": sum(r.socket_errors for r in flat),
        "runs_with_failures": sum(1 for run in runs if any(r.failed for r in run)),
        "p50_ms": statistics.median(r.p50_ms for r in flat),
        "p99_ms": statistics.median(r.p99_ms for r in flat),
        "p99_max_ms": max(r.p99_ms for r in flat),
        "per_run_failed": [sum(r.failed for r in run) for run in runs],
        "breakdown": breakdown(flat),
    }


def machine_info():
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "when": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "load_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "wrk": subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0:1],
    }


def component_table(components, args):
    lines = [
        "",
        f"Each moment alone, on one host, wrk without pauses (8 connections), {args.events} events each:",
        "",
        "| moment | events | requests sent | failed | p50 latency | p99 latency |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in components.items():
        failed = f"**{r.failed}**" + (f" ({breakdown([r])})" if r.failed else "")
        lines.append(f"| {name} | {args.events} | {r.requests} | {failed} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms |")
    return "\n".join(lines)


def table(results, info, args):
    lines = [
        f"Machine: {info['cpus']} CPU, Linux {info['kernel']}, Python {info['python']}, "
        f"{(info['wrk'] or ['wrk'])[0].split(' Copyright')[0]}; {info['when']}; load average at start "
        f"{info['load_start']}, at end {info['load_end']}. {HOSTS} hosts, {args.rounds} rounds; per host ~{RATE} "
        "requests/s on /version during each command.",
        "",
        "| configuration | operation | runs | requests sent | failed | runs with a failure | p50 latency | p99 latency (median / worst) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _, _ in CONFIGS:
        for op in OPERATIONS:
            s = summary(results[name][op])
            failed = f"**{s['failed']}**" + (f" ({s['breakdown']})" if s["failed"] else "")
            lines.append(f"| {name} | {op} | {s['runs']} | {s['requests']} | {failed} | {s['runs_with_failures']} of "
                         f"{s['runs']} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} / {s['p99_max_ms']:.1f} ms |")
    lines.append("")
    lines.append("Configurations: " + "; ".join(f"**{n}**: {d}" for n, d, _, _ in CONFIGS) + ".")
    return "\n".join(lines)


def write_doc(text):
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        raise BenchError(f"{DOC} has no {START} ... {END} markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + START + "\n" + text + "\n" + END + tail)
    log(f"wrote {DOC.relative_to(PROJECT)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--events", type=int, default=20, help="switches, resets and reloads in the moments table")
    p.add_argument("--root", default="/srv/labload")
    p.add_argument("--ssh-base", type=int, default=2660)
    p.add_argument("--http-base", type=int, default=8660)
    p.add_argument("--write", action="store_true", help=f"write the table into {DOC.relative_to(PROJECT)}")
    p.add_argument("--json", help="also write every run's counts to this file")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir (fab output of every command)")
    p.add_argument("--table-from", metavar="FILE", help="no run: print (and --write) the tables of a --json file")
    args = p.parse_args(argv)
    if args.table_from:
        results, components, info, args.rounds, args.events = from_json(Path(args.table_from).read_text())
        return report(results, components, info, args)
    if os.geteuid() != 0:
        print("bench-load: must run as root (the sandbox hosts need it)", file=sys.stderr)
        return 2
    if Path(args.root).resolve() == Path(lab.DEFAULT_ROOT).resolve():
        print(f"bench-load: refusing to use {lab.DEFAULT_ROOT}: that is the shared lab; pick another --root",
              file=sys.stderr)
        return 2
    if not FAB.exists():
        print(f"bench-load: {FAB} not found (make the venv first)", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench-load: wrk is not installed (make deps)", file=sys.stderr)
        return 2
    os.environ.setdefault("LAB_QUIET", "1")
    lab.ensure_packages()
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="deploy-bench-load-"))
    code, results, components = 0, None, None
    try:
        results, components = Bench(args, work).run()
    except (BenchError, lab.LabError) as exc:
        print(f"\nbench-load FAILED: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\nbench-load interrupted", file=sys.stderr)
        code = 130
    finally:
        log(f"stopping the lab under {args.root}")
        lab.down(args.root, purge=True)
        if args.keep_work or code:
            log(f"fab output kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if code:
        return code
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.json:
        Path(args.json).write_text(to_json(results, components, info, args))
    return report(results, components, info, args)


def report(results, components, info, args):
    text = table(results, info, args) + "\n" + component_table(components, args)
    print()
    print(text)
    if args.write:
        write_doc(text)
    return 0


def to_json(results, components, info, args):
    return json.dumps({
        "info": info, "rounds": args.rounds, "events": args.events,
        "operations": {name: {op: [[r.__dict__ for r in run] for run in runs] for op, runs in ops.items()}
                       for name, ops in results.items()},
        "moments": {name: r.__dict__ for name, r in components.items()}}, indent=1)


def from_json(text):
    data = json.loads(text)

    def result(d):
        return LoadResult(**{**d, "statuses": {int(k): v for k, v in d["statuses"].items()}})

    results = {name: {op: [[result(r) for r in run] for run in runs] for op, runs in ops.items()}
               for name, ops in data["operations"].items()}
    components = {name: result(r) for name, r in data["moments"].items()}
    return results, components, data["info"], data["rounds"], data["events"]


if __name__ == "__main__":
    sys.exit(main())
