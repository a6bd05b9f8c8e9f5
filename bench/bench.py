#!/usr/bin/env python3
"""Benchmark: the tool (`fab deploy`) against a hand-written bash + ssh + rsync script
(bench/baseline.sh: the same steps over one multiplexed OpenSSH connection per host), on K real
sandbox hosts (deploy/lab.py), in the same run.

For each K (default 1, 8, 32) it starts K lab hosts under its own root (never /srv/lab), warms
them up (one deploy with each, not measured), then per round deploys a fresh release to all K
hosts with the tool and with the script (the script runs for all hosts at once through
`xargs -P`, the same parallelism the tool gets with --parallel), alternating which goes first.
Before each deploy exactly one file of the source changes, so both send the same delta.
After each deploy every host's /version must answer the new release id, or the run fails.

Reported per K: median wall time of each, their ratio, and the tool's own CPU time per host
(the Python process itself, read from /proc/PID/stat while it is a zombie, so rsync/ssh
children are not counted; the total with children is shown too). Also: `fab plan` wall time
for a generated 500-host inventory on unreachable addresses (plan must not connect).

    .venv/bin/python bench/bench.py                      # K = 1, 8, 32; 3 rounds
    .venv/bin/python bench/bench.py --hosts 1,8 --rounds 3 --write   # also docs/benchmark.md

Must run as root (the lab does). Everything is stopped and removed at the end
(deploy.lab.down(root, purge=True)), also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
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

FAB = PROJECT / ".venv" / "bin" / "fab"
BASELINE = PROJECT / "bench" / "baseline.sh"
DOC = PROJECT / "docs" / "benchmark.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")
RUN_TIMEOUT = 900
TARGET_RATIO = 1.5
PLAN_TARGET = 2.0
NOTES_MARK = "<!-- notes: text below this line is kept by bench.py --write -->"


class BenchError(RuntimeError):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- running things


def run_measured(argv, stdout_path, stdin_path=None, timeout=RUN_TIMEOUT):
    """Run argv; return (exit code, wall s, own CPU s, CPU s incl. waited-for children).

    Own CPU comes from /proc/PID/stat read while the process is a zombie (WNOWAIT), before
    wait4() reaps it and returns the total with its children (rsync, ssh).
    """
    with open(stdout_path, "wb") as out, open(stdin_path or os.devnull, "rb") as inp:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=inp, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT)
        deadline = time.monotonic() + timeout
        while True:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            if info is not None:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise BenchError(f"{argv[0]} took more than {timeout}s; output in {stdout_path}")
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        own = None
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            own = (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, own, ru.ru_utime + ru.ru_stime


def tail(path, n=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def http_body(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace").strip()
    except Exception as exc:  # noqa: BLE001 - reported as a failure below
        return None, f"{type(exc).__name__}: {exc}"


def check_live(hosts, release, who):
    bad = []
    for h in hosts:
        status, body = http_body(h["health_url"])
        if status != 200 or release not in body:
            bad.append(f"{h['name']}: HTTP {status}, body {body[:120]!r} (want {release})")
    if bad:
        raise BenchError(f"{who} deploy of {release} did not take effect on {len(bad)} host(s):\n  " + "\n  ".join(bad))


# ----------------------------------------------------------------------------- the two sides


def tool_deploy(inv, release, parallel, work, hosts, source):
    report = work / f"report-{release}.json"
    out = work / f"tool-{release}.log"
    argv = [str(FAB), "deploy", "--host", "lab", "--inventory", str(inv), "--release", release,
            "--source", source, "--parallel", str(parallel), "--report", str(report)]
    code, wall, own, total = run_measured(argv, out)
    if code != 0:
        raise BenchError(f"fab deploy {release} exited {code}:\n{tail(out)}")
    check_live(hosts, release, "tool")
    data = json.loads(report.read_text())
    states = {h["host"]: h["state"] for h in data["hosts"]}
    if set(states.values()) != {"deployed"}:
        raise BenchError(f"fab deploy {release}: not every host deployed: {states}")
    return {"wall": wall, "cpu_own": own, "cpu_total": total, "report": data}


def script_deploy(hosts, release, parallel, work, source):
    lines = []
    for h in hosts:
        args = ["--host", h["address"], "--port", h["ssh_port"], "--path", h["deploy_path"],
                "--socket", h["socket"], "--pid-file", h["fpm_pid_file"], "--health-url", h["health_url"],
                "--release", release, "--source", source, "--key", h["key"], "--known-hosts", h["known_hosts"]]
        lines.append(" ".join(shlex.quote(str(a)) for a in [str(BASELINE)] + args))
    argfile = work / f"script-{release}.args"
    argfile.write_text("\n".join(lines) + "\n")
    out = work / f"script-{release}.log"
    # xargs: at most `parallel` scripts at once, one host per line, like the tool's --parallel.
    argv = ["xargs", "-P", str(parallel), "-L", "1", "bash"]
    code, wall, _own, total = run_measured(argv, out, stdin_path=argfile)
    if code != 0:
        raise BenchError(f"baseline.sh for {release} exited {code}:\n{tail(out)}")
    check_live(hosts, release, "script")
    return {"wall": wall, "cpu_total": total}


def touch_source(source, stamp):
    """Change exactly one file of the source, so the next deploy sends one file."""
    (Path(source) / "resources" / "bench-stamp.txt").write_text(f"{stamp} {time.time_ns()}\n")


# ---------------------------------------------------------------------------- per-K session


def bench_k(k, args, work_root, source):
    parallel = min(args.parallel or k, k)
    work = work_root / f"k{k}"
    work.mkdir()
    log(f"K={k}: starting {k} lab host(s) under {args.root}")
    t0 = time.monotonic()
    all_hosts = lab.up(k, args.root, None, args.ssh_base, args.http_base)
    hosts = [h for h in all_hosts if h["index"] <= k]
    inv = work / "inventory.yml"
    inv.write_text(lab.inventory_yaml(args.root, hosts))
    log(f"K={k}: hosts up in {time.monotonic() - t0:.1f}s; warm-up deploys (not measured)")

    touch_source(source, f"w{k}")
    tool_deploy(inv, f"warm-t{k}", parallel, work, hosts, source)
    touch_source(source, f"ws{k}")
    script_deploy(hosts, f"warm-s{k}", parallel, work, source)

    rounds = []
    for n in range(1, args.rounds + 1):
        order = ("tool", "script") if n % 2 else ("script", "tool")
        row = {}
        for side in order:
            touch_source(source, f"{side}{k}-{n}")
            if side == "tool":
                r = tool_deploy(inv, f"t{k}-r{n}", parallel, work, hosts, source)
                files = [h["rsync_files_transferred"] for h in r["report"]["hosts"]]
                if any(f != 1 for f in files):
                    raise BenchError(f"t{k}-r{n}: rsync sent {files} files per host, expected 1 (--link-dest broken?)")
            else:
                r = script_deploy(hosts, f"s{k}-r{n}", parallel, work, source)
            row[side] = r
        log(f"K={k} round {n} ({order[0]} first): tool {row['tool']['wall']:.2f}s "
            f"(cpu own {row['tool']['cpu_own']:.2f}s, with children {row['tool']['cpu_total']:.2f}s), "
            f"script {row['script']['wall']:.2f}s, ratio {row['tool']['wall'] / row['script']['wall']:.2f}")
        rounds.append(row)
    return summarize(k, parallel, rounds)


def summarize(k, parallel, rounds):
    med = statistics.median
    tool_wall = med(r["tool"]["wall"] for r in rounds)
    script_wall = med(r["script"]["wall"] for r in rounds)
    steps, commands, host_dur = {}, {}, []
    for r in rounds:
        for h in r["tool"]["report"]["hosts"]:
            host_dur.append(h["duration"])
            for s in h["steps"]:
                steps.setdefault(s["name"], []).append(s["duration"])
                for c in s["commands"]:
                    commands.setdefault((s["name"], c["command"].split()[0]), []).append(c["duration"])
    return {
        "k": k, "parallel": parallel, "rounds": len(rounds),
        "tool_wall": tool_wall, "script_wall": script_wall, "ratio": tool_wall / script_wall,
        "tool_walls": [r["tool"]["wall"] for r in rounds], "script_walls": [r["script"]["wall"] for r in rounds],
        "tool_cpu_own_per_host": med(r["tool"]["cpu_own"] for r in rounds) / k,
        "tool_cpu_total_per_host": med(r["tool"]["cpu_total"] for r in rounds) / k,
        "script_cpu_per_host": med(r["script"]["cpu_total"] for r in rounds) / k,
        "host_duration_median": med(host_dur),
        "host_duration_max": med(max(h["duration"] for h in r["tool"]["report"]["hosts"]) for r in rounds),
        "steps": {name: med(v) for name, v in steps.items()},
    }


# ------------------------------------------------------------------------------ fab plan x500


def plan_bench(n, work_root, repeats=3):
    inv = work_root / f"plan-{n}.yml"
    lines = ["defaults:", "  user: deploy", "  key: ~/.ssh/id_ed25519", "  known_hosts: ~/.ssh/known_hosts",
             "  deploy_path: /var/www/app", "  web_user: www-data", "  fpm:",
             "    socket: /run/php/php8.2-fpm.sock", "    reload: sudo systemctl reload php8.2-fpm", "hosts:"]
    names = []
    for i in range(1, n + 1):
        # TEST-NET-1/2/3 (RFC 5737): never routed; a plan that tried to connect would hang or fail.
        net = ("192.0.2", "198.51.100", "203.0.113")[i % 3]
        name = f"web{i:03d}"
        names.append(name)
        lines.append(f"  {name}: {{address: {net}.{i % 250 + 1}, port: {22 + i % 3}, "
                     f"health_url: 'http://{net}.{i % 250 + 1}/version'}}")
    lines += ["groups:", f"  fleet: [{', '.join(names)}]"]
    inv.write_text("\n".join(lines) + "\n")
    walls = []
    for r in range(repeats):
        out = work_root / f"plan-{n}-{r}.txt"
        # --verbose: every host's plan in full (alike hosts are otherwise shown once).
        code, wall, own, _ = run_measured([str(FAB), "plan", "--verbose", "--host", "fleet", "--inventory", str(inv),
                                           "--release", "plan-bench"], out, timeout=120)
        if code != 0:
            raise BenchError(f"fab plan for {n} hosts exited {code}:\n{tail(out)}")
        planned = sum(1 for line in out.read_text().splitlines() if line.startswith("# host "))
        if planned != n:
            raise BenchError(f"fab plan printed {planned} host plans, expected {n}")
        walls.append(wall)
    return {"hosts": n, "wall": statistics.median(walls), "walls": walls}


# ----------------------------------------------------------------------------------- output


def other_sandbox_hosts(root):
    """FPM masters of sandbox hosts that are not ours (other labs on this machine add noise)."""
    mine, n = str(Path(root).resolve()) + "/", 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("php-fpm: master process") and mine not in cmd:
                n += 1
    return n


def machine_info():
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def tables(results, plan, info, args):
    out = []
    out.append(f"Machine: {info['nproc']} CPU ({info['cpu']}), Linux {info['kernel']}, Python {info['python']}; "
               f"{info['date']}; load average at start {info['load']}, at end {info.get('load_end', '?')}; "
               f"other sandbox hosts running on the machine (not ours): {info.get('others', '?')} at start, "
               f"{info.get('others_end', '?')} at end. Rounds per K: {args.rounds}.")
    out.append("")
    out.append("| K hosts | parallel | tool wall (median) | script wall (median) | tool / script | "
               "tool CPU per host (own process) | tool CPU per host (with rsync/ssh children) | script CPU per host |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        flag = "" if r["ratio"] <= TARGET_RATIO else " (over 1.5x)"
        out.append(f"| {r['k']} | {r['parallel']} | {r['tool_wall']:.2f} s | {r['script_wall']:.2f} s | "
                   f"**{r['ratio']:.2f}x**{flag} | {r['tool_cpu_own_per_host']:.3f} s | "
                   f"{r['tool_cpu_total_per_host']:.3f} s | {r['script_cpu_per_host']:.3f} s |")
    out.append("")
    out.append("Every round, per K: " + "; ".join(
        f"K={r['k']}: tool " + ", ".join(f"{w:.2f}" for w in r["tool_walls"]) +
        " / script " + ", ".join(f"{w:.2f}" for w in r["script_walls"]) for r in results) + " (seconds).")
    if plan:
        ok = "within" if plan["wall"] < PLAN_TARGET else "OVER"
        out.append("")
        out.append(f"`fab plan` for a {plan['hosts']}-host inventory (unreachable addresses): "
                   f"**{plan['wall']:.2f} s** median of {len(plan['walls'])} "
                   f"({', '.join(f'{w:.2f}' for w in plan['walls'])}); target {PLAN_TARGET:.0f} s: {ok}.")
    if results:
        names = list(results[0]["steps"])
        out.append("")
        out.append("Where the tool's time goes (median per host, seconds, from `--report`; step times start at "
                   "the step's first command, so SSH session start-up shows up in no step):")
        out.append("")
        out.append("| K | host total | " + " | ".join(names) + " |")
        out.append("|---:|---:|" + "---:|" * len(names))
        for r in results:
            out.append(f"| {r['k']} | {r['host_duration_median']:.2f} | " +
                       " | ".join(f"{r['steps'].get(n, 0):.2f}" for n in names) + " |")
    return "\n".join(out)


def write_doc(text, args):
    notes = ""
    if DOC.exists():
        old = DOC.read_text()
        if NOTES_MARK in old:
            notes = old.split(NOTES_MARK, 1)[1]
    hosts = ",".join(str(k) for k in args.hosts)
    doc = f"""# Benchmark: the tool against a hand-written script

`bench/bench.py` deploys the sample app to K real sandbox hosts (own sshd, PHP-FPM and nginx
each, `deploy/lab.py`) with the tool (`fab deploy --parallel P`) and with `bench/baseline.sh`, a
hand-written bash script doing the same steps as `playbooks/laravel.yml` over one multiplexed
OpenSSH connection per host (ControlMaster; rsync rides on it too), run for all K hosts through
`xargs -P P`. Both run in the same session, alternating which goes first each round; each deploy
ships a fresh release id and a source in which exactly one file changed (the tool's report
confirms rsync sent 1 file per host). After every deploy each host's `/version` must answer the
new release id, or the run fails. The sandbox hosts share this machine's CPUs with the tool, so
wall time grows with K for both sides; the ratio and the tool's CPU per host are what must not.

Targets (issue 2, issue 4 item 8): tool within 1.5x of the script at every K; the tool's CPU per
host flat from K=8 to K=32; `fab plan` for 500 hosts under 2 s.

Run it (as root; it uses its own lab root {args.root}, ssh ports {args.ssh_base}+i, http
{args.http_base}+i, and removes everything when done):

    .venv/bin/python bench/bench.py --hosts {hosts} --rounds {args.rounds} --write

(`--hosts`, `--rounds`, `--parallel P` (default: K), `--plan-hosts N` (0 skips), `--keep-work`.)

"Tool CPU (own process)" is the `fab` Python process alone (utime+stime from /proc/PID/stat read
while it is a zombie); "with children" adds the rsync and ssh processes it started. "Script CPU"
is bash, ssh and rsync of the scripts (the detached ssh control masters are not counted).

## Results

{text}

{NOTES_MARK}{notes if notes else chr(10)}"""
    DOC.write_text(doc)
    log(f"wrote {DOC}")


# ------------------------------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", default="1,8,32", help="comma-separated K values (default 1,8,32)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--parallel", type=int, default=0, help="hosts at once for both sides (default: K)")
    p.add_argument("--root", default="/srv/labbench")
    p.add_argument("--ssh-base", type=int, default=2600)
    p.add_argument("--http-base", type=int, default=8600)
    p.add_argument("--plan-hosts", type=int, default=500, help="hosts in the fab plan timing (0: skip)")
    p.add_argument("--write", action="store_true", help=f"write the results to {DOC.relative_to(PROJECT)}")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir (logs, JSON reports)")
    args = p.parse_args(argv)
    args.hosts = [int(x) for x in str(args.hosts).replace(" ", ",").split(",") if x.strip()]
    if os.geteuid() != 0:
        print("bench: must run as root (the sandbox hosts need it)", file=sys.stderr)
        return 2
    if Path(args.root).resolve() == Path(lab.DEFAULT_ROOT).resolve():
        print(f"bench: refusing to use {lab.DEFAULT_ROOT}: that is the shared lab; pick another --root", file=sys.stderr)
        return 2
    if not FAB.exists():
        print(f"bench: {FAB} not found (make the venv first)", file=sys.stderr)
        return 2
    os.environ.setdefault("LAB_QUIET", "1")

    info = machine_info()
    info["others"] = other_sandbox_hosts(args.root)
    work_root = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    source = work_root / "src"
    shutil.copytree(PROJECT / "sample-app", source, ignore=shutil.ignore_patterns("*.php.cache"))
    for f in (source / "bootstrap" / "cache").glob("*.php"):
        f.unlink()
    results, plan, code = [], None, 0
    # Start from nothing: releases and shared/ left by an earlier run would change what rsync sends.
    lab.down(args.root, purge=True)
    try:
        if args.plan_hosts:
            log(f"fab plan for {args.plan_hosts} hosts")
            plan = plan_bench(args.plan_hosts, work_root)
            log(f"fab plan: {plan['wall']:.2f}s median")
        for k in sorted(set(args.hosts)):
            results.append(bench_k(k, args, work_root, str(source)))
    except BenchError as exc:
        print(f"\nbench FAILED: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\nbench interrupted", file=sys.stderr)
        code = 130
    finally:
        log(f"stopping the lab under {args.root}")
        lab.down(args.root, purge=True)
        if args.keep_work or code:
            log(f"logs and reports kept in {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    info["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["others_end"] = other_sandbox_hosts(args.root)
    text = tables(results, plan, info, args)
    print()
    print(text)
    if code == 0 and args.write:
        write_doc(text, args)
    if code == 0:
        over = [r for r in results if r["ratio"] > TARGET_RATIO]
        if over:
            print(f"\nnote: tool over {TARGET_RATIO}x the script at K=" + ",".join(str(r["k"]) for r in over),
                  file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
