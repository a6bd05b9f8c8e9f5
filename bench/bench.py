#!/usr/bin/env python3
"""Benchmark: the tool (`fab deploy`) side by side with hand-written deploys, on real sandbox
hosts (deploy/lab/: own sshd, PHP-FPM and nginx each), in the same run. docs/benchmark.md
says what each phase measures and holds the results.

Phases (--phase, comma-separated; default all):
  loopback  K = 1, 3, 8 hosts on loopback: tool, lean.sh, baseline.sh, fabric_plain.py
  wan       3 hosts behind latency relays, at 0 and 30 ms round trip: the same four, with
            SSH connections, sessions, turns (round trips) and bytes per host
  scale     8, 32, 100 light hosts, tool with --parallel 20, and 100 in rolling batches:
            CPU per host, peak RSS, open SSH connections over time
  plan      `fab plan` for 500 hosts, and the tool's start-up (`fab --list`)
  bigapp    a real-sized app (10,000 files, 100 MB, vendor/) and 100,000 files in shared
            storage: first deploy, unchanged redeploy, one-file change, against rsync alone

    .venv/bin/python bench/bench.py                              # everything, ~20 min
    .venv/bin/python bench/bench.py --phase wan --rounds 3       # one phase
    .venv/bin/python bench/bench.py --write --label after        # results into docs/benchmark.md

Must run as root (the lab does). Each phase starts its own lab under --root-prefix and
removes it when done (deploy.lab.down(root, purge=True)), also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(PROJECT))
sys.path.insert(0, str(HERE))

from deploy import lab  # noqa: E402

import bigapp  # noqa: E402
import doc  # noqa: E402
from contenders import CONTENDERS, FAB, PIPELINE, Deployer, rsync_stats, step_times, tool_sync  # noqa: E402
from measure import (BenchError, ConnectionSampler, RelayCounters, SshdLogs, log, other_sandbox_hosts,  # noqa: E402
                     ports_in_use, run_measured, tail)

PHASES = ("loopback", "wan", "scale", "plan", "bigapp")
BLOCK = 2000  # ports one layout of all phases takes: BASE .. BASE+1999
med = statistics.median


# ----------------------------------------------------------------------------- helpers


def touch_source(source, stamp):
    """Change exactly one file of the source, so the next deploy sends one file."""
    (Path(source) / "resources" / "bench-stamp.txt").write_text(f"{stamp} {time.time_ns()}\n")


def rotated(items, n):
    n %= len(items)
    return list(items[n:]) + list(items[:n])


def start_lab(root, count, ctx, phase, **kw):
    """Start `count` lab hosts for a phase, on the phase's ports, moved to the next free block of
    ports when a socket of some other process holds one of them (ports above 32768 are also the
    kernel's ephemeral range, so a long-lived outgoing connection may sit on one)."""
    lab.down(root, purge=True)  # from nothing: releases left by an earlier run change what rsync sends
    t0 = time.monotonic()
    bases = ctx["ports"][phase]
    for block in range(ctx["blocks"]):
        shifted = [b + block * BLOCK for b in bases]
        wanted = {b + i for b in shifted for i in range(1, count + 1)}
        busy = wanted & ports_in_use()
        if not busy:
            break
        log(f"{phase}: ports {sorted(busy)[:5]} are in use by other sockets; trying the next block of ports")
    else:
        raise BenchError(f"{phase}: no free block of ports from --port-base {ctx['port_base']} (--port-span)")
    if kw.get("latency_ms"):
        kw["proxy_base"] = shifted[2]
    hosts = lab.up(count, root, None, shifted[0], shifted[1], **kw)
    hosts = sorted((h for h in hosts if h.index <= count), key=lambda h: h.index)
    log(f"{count} lab host(s) up under {root} in {time.monotonic() - t0:.1f}s")
    return hosts, time.monotonic() - t0


def per_host(counts):
    """{host: {key: n}} -> {key: mean over hosts} (and max), the per-host figure of one deploy."""
    keys = sorted({k for c in counts.values() for k in c})
    return {k: statistics.fmean(c[k] for c in counts.values()) for k in keys} | \
        {f"{k}_max": max(c[k] for c in counts.values()) for k in keys}


def measured_deploy(dep, who, release, source, sshd, relays=None, **kw):
    sshd.mark()
    if relays:
        relays.mark()
    r = dep.deploy(who, release, source, **kw)
    counts = sshd.counts()
    if relays:
        for name, c in relays.counts().items():
            counts[name].update({f"relay_{k}": v for k, v in c.items()})
    r["per_host"] = per_host(counts)
    return r


def summarize(runs, k):
    """runs: {who: [result, ...]} -> medians per contender."""
    out = {}
    for who, rs in runs.items():
        keys = rs[0]["per_host"].keys()
        out[who] = {
            "walls": [r["wall"] for r in rs],
            "wall": med(r["wall"] for r in rs),
            "cpu_own_per_host": med(r["cpu_own"] or 0 for r in rs) / k,
            "cpu_total_per_host": med(r["cpu_total"] for r in rs) / k,
            "maxrss_kb": max(r["maxrss_kb"] for r in rs),
            "per_host": {key: med(r["per_host"][key] for r in rs) for key in keys},
        }
        if "report" in rs[0]:
            steps = {}
            for r in rs:
                for host_steps in step_times(r["report"]).values():
                    for name, d in host_steps.items():
                        steps.setdefault(name, []).append(d)
            out[who]["steps"] = {name: med(v) for name, v in steps.items()}
            out[who]["host_duration"] = med(h["duration"] for r in rs for h in r["report"]["hosts"])
    return out


def rounds_of(dep, contenders, rounds, tag, source, sshd, relays=None, before_round=None):
    runs = {who: [] for who in contenders}
    for n in range(rounds):
        if before_round:
            before_round(n)
        order = rotated(contenders, n)
        walls = []
        for who in order:
            release = f"{tag}-{who[0]}{n + 1}"
            touch_source(source, release)
            r = measured_deploy(dep, who, release, source, sshd, relays)
            if who == "tool":
                files = [s["files"] for s in tool_sync(r["report"]).values()]
                if any(f != 1 for f in files):
                    raise BenchError(f"{release}: rsync sent {files} files per host, expected 1 (--link-dest broken?)")
            runs[who].append(r)
            walls.append(f"{who} {r['wall']:.2f}s")
        log(f"{tag} round {n + 1}: " + ", ".join(walls))
    return runs


def warm_up(dep, contenders, tag, source):
    for who in contenders:
        release = f"{tag}-warm-{who[0]}"
        touch_source(source, release)
        dep.deploy(who, release, source)


# ------------------------------------------------------------------------------ phases


def phase_loopback(args, ctx):
    ks = sorted(set(args.hosts))
    hosts, _ = start_lab(ctx["roots"]["loopback"], max(ks), ctx, "loopback")
    runs = []
    try:
        log(f"loopback: warm-up deploys on {max(ks)} hosts (not measured)")
        warm_up(Deployer(ctx["roots"]["loopback"], hosts, ctx["work"] / "loop-warm", len(hosts)),
                args.contenders, "lw", ctx["source"])
        for rep in range(args.repeat):
            per_k = []
            for k in ks:
                sub = hosts[:k]
                dep = Deployer(ctx["roots"]["loopback"], sub, ctx["work"] / f"loop{rep}-k{k}", args.parallel or k)
                r = rounds_of(dep, args.contenders, args.rounds, f"l{rep + 1}k{k}", ctx["source"], SshdLogs(sub))
                per_k.append({"k": k, "parallel": dep.parallel, "rounds": args.rounds, "contenders": summarize(r, k)})
            runs.append(per_k)
    finally:
        lab.down(ctx["roots"]["loopback"], purge=True)
    return {"runs": runs}


def phase_wan(args, ctx):
    root = ctx["roots"]["wan"]
    rtts = sorted(set(args.wan_rtt))
    hosts, _ = start_lab(root, args.wan_hosts, ctx, "wan", latency_ms=max(rtts) / 2 or 0.001)
    runs = []
    try:
        dep = Deployer(root, hosts, ctx["work"] / "wan", args.parallel or len(hosts))
        log(f"wan: warm-up deploys on {len(hosts)} hosts (not measured)")
        lab.set_latency(0, root)
        warm_up(dep, args.contenders, "ww", ctx["source"])
        sshd, relays = SshdLogs(hosts), RelayCounters(hosts)
        for rep in range(args.repeat):
            by_rtt = {rtt: {who: [] for who in args.contenders} for rtt in rtts}
            for n in range(args.rounds):
                # Round trips alternate within each round, so drift on the machine hits both.
                for rtt in rotated(rtts, n):
                    lab.set_latency(rtt / 2, root)
                    r = rounds_of(dep, rotated(args.contenders, n), 1, f"w{rep + 1}r{rtt}n{n + 1}", ctx["source"],
                                  sshd, relays)
                    for who, rs in r.items():
                        by_rtt[rtt][who] += rs
            runs.append([{"rtt_ms": rtt, "k": len(hosts), "parallel": dep.parallel, "rounds": args.rounds,
                          "contenders": summarize(by_rtt[rtt], len(hosts))} for rtt in rtts])
    finally:
        lab.down(root, purge=True)
    return {"runs": runs}


def phase_scale(args, ctx):
    root = ctx["roots"]["scale"]
    ks = sorted(set(args.scale_hosts))
    hosts, up_time = start_lab(root, max(ks), ctx, "scale", light=True)
    out = {"lab_up_s": up_time, "hosts": max(ks), "parallel": args.scale_parallel, "serial": args.scale_serial,
           "runs": []}
    try:
        mem = _lab_memory(hosts)
        out["lab_memory_mb"] = mem
        log(f"scale: {len(hosts)} light hosts use {mem:.0f} MB (PSS); warm-up deploy (not measured)")
        warm = Deployer(root, hosts, ctx["work"] / "scale-warm", args.scale_parallel)
        touch_source(ctx["source"], "sw")
        warm.deploy("tool", "sw-warm", ctx["source"])
        plan = [(k, None) for k in ks]
        if args.scale_serial:
            plan.append((max(ks), args.scale_serial))
        for n in range(args.scale_rounds):
            for k, serial in plan:
                sub = hosts[:k]
                dep = Deployer(root, sub, ctx["work"] / f"scale-k{k}-{serial or 'p'}-{n}", args.scale_parallel)
                release = f"s{n + 1}k{k}" + ("-serial" if serial else "")
                touch_source(ctx["source"], release)
                sshd = SshdLogs(sub)
                sshd.mark()
                with ConnectionSampler([h.ssh_port for h in sub]) as sampler:
                    r = dep.deploy("tool", release, ctx["source"], serial=serial, on_start=sampler.watch)
                counts = sshd.counts()
                row = {"k": k, "parallel": dep.parallel, "serial": serial, "wall": r["wall"],
                       "cpu_own_per_host": (r["cpu_own"] or 0) / k, "cpu_total_per_host": r["cpu_total"] / k,
                       "maxrss_kb": r["maxrss_kb"], "hwm_kb": sampler.hwm_kb,
                       "open_max": sampler.peak(), "open_max_server": sampler.peak_server(),
                       "open_series": sampler.series(),
                       "samples": len(sampler.samples), "per_host": per_host(counts),
                       "host_duration": med(h["duration"] for h in r["report"]["hosts"])}
                out["runs"].append(row)
                log(f"scale K={k}{' serial ' + serial if serial else ''}: {r['wall']:.1f}s, "
                    f"CPU/host {row['cpu_own_per_host']:.3f}s, peak RSS {r['maxrss_kb'] / 1024:.0f} MB, "
                    f"open SSH connections max {row['open_max']} (server side {row['open_max_server']})")
    finally:
        lab.down(root, purge=True)
    return out


def _lab_memory(hosts):
    """PSS of every daemon process of the lab hosts, in MB."""
    total = 0
    pids = []
    for h in hosts:
        info = lab.host_info(h.name, h.root)
        pids += [p for p in (info.pids.sshd, info.pids.fpm, info.pids.nginx) if p]
        pids += info.pids.fpm_workers + info.pids.nginx_workers
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def phase_plan(args, ctx):
    work = ctx["work"]
    inv = work / f"plan-{args.plan_hosts}.yml"
    lines = ["defaults:", "  user: deploy", "  key: ~/.ssh/id_ed25519", "  known_hosts: ~/.ssh/known_hosts",
             "  deploy_path: /var/www/app", "  web_user: www-data", "  fpm:",
             "    socket: /run/php/php8.2-fpm.sock", "    reload: sudo systemctl reload php8.2-fpm", "hosts:"]
    names = []
    for i in range(1, args.plan_hosts + 1):
        # TEST-NET-1/2/3 (RFC 5737): never routed; a plan that tried to connect would hang or fail.
        net = ("192.0.2", "198.51.100", "203.0.113")[i % 3]
        names.append(f"web{i:03d}")
        lines.append(f"  web{i:03d}: {{address: {net}.{i % 250 + 1}, port: {22 + i % 3}, "
                     f"health_url: 'http://{net}.{i % 250 + 1}/version'}}")
    lines += ["groups:", f"  fleet: [{', '.join(names)}]"]
    inv.write_text("\n".join(lines) + "\n")
    walls = []
    for r in range(3):
        out = work / f"plan-{r}.txt"
        # --verbose: every host's plan in full (alike hosts are otherwise shown once).
        res = run_measured([str(FAB), "plan", "--verbose", "--host", "fleet", "--inventory", str(inv),
                            "--release", "plan-bench", "--source", str(ctx["source"])], out, timeout=120, cwd=PROJECT)
        if res["code"] != 0:
            raise BenchError(f"fab plan for {args.plan_hosts} hosts exited {res['code']}:\n{tail(out)}")
        planned = sum(1 for line in out.read_text().splitlines() if line.startswith("# host "))
        if planned != args.plan_hosts:
            raise BenchError(f"fab plan printed {planned} host plans, expected {args.plan_hosts}")
        walls.append(res["wall"])
    starts = []
    for r in range(3):
        res = run_measured([str(FAB), "--list"], work / f"start-{r}.txt", timeout=60, cwd=PROJECT)
        if res["code"] != 0:
            raise BenchError(f"fab --list exited {res['code']}:\n{tail(work / f'start-{r}.txt')}")
        starts.append(res["wall"])
    log(f"plan: {args.plan_hosts} hosts {med(walls):.2f}s; fab start-up {med(starts):.2f}s")
    return {"hosts": args.plan_hosts, "wall": med(walls), "walls": walls, "startup": med(starts), "startups": starts}


def phase_bigapp(args, ctx):
    root = ctx["roots"]["bigapp"]
    work = ctx["work"] / "bigapp"
    work.mkdir()
    log(f"bigapp: generating the app ({args.big_files} files, {args.big_mb} MB)")
    src = work / "src"
    tree = bigapp.make_app(ctx["source"], src, files=args.big_files, total_mb=args.big_mb)
    hosts, _ = start_lab(root, 1, ctx, "bigapp")
    h = hosts[0]
    out = {"tree": tree, "storage_files": args.big_storage, "rounds": []}
    try:
        shared = Path(h.deploy_path) / "shared"
        t0 = time.monotonic()
        bigapp.make_storage(shared / "storage", src / "storage", files=args.big_storage)
        log(f"bigapp: {args.big_storage} files in {shared / 'storage'} in {time.monotonic() - t0:.1f}s")
        dep = Deployer(root, hosts, work, 1)
        sshd = SshdLogs(hosts)
        ssh = shlex.join(lab.ssh_command(h.name, root)[:-1])
        scratch = Path(h.dir) / "rsync-alone"
        rsync_cmd = _tool_rsync_command(dep, src)
        for n in range(args.big_rounds):
            row = {}
            _wipe_releases(h)
            for case in ("first", "unchanged", "one-file"):
                if case == "one-file":
                    touch_source(src, f"b{n}-{case}")
                release = f"b{n + 1}-{case}"
                alone = _rsync_alone(rsync_cmd, ssh, h, scratch / release, work / f"alone-{release}.log")
                r = measured_deploy(dep, "tool", release, src, sshd)
                sync = tool_sync(r["report"])[h.name]
                row[case] = {"tool_wall": r["wall"], "tool_sync": sync["duration"], "tool_sent": sync["sent"],
                             "tool_files": sync["files"], "steps": step_times(r["report"])[h.name],
                             "sessions": r["per_host"]["sessions"], "alone_wall": alone["wall"],
                             "alone_sent": alone["sent"], "alone_files": alone["files"]}
                if case != "first" and "lean" in args.contenders:
                    if case == "one-file":
                        touch_source(src, f"b{n}-{case}-lean")
                    lean = dep.deploy("lean", release + "-lean", src)
                    row[case]["lean_wall"] = lean["wall"]
                shutil.rmtree(scratch, ignore_errors=True)
                log(f"bigapp round {n + 1} {case}: tool {r['wall']:.2f}s (sync {sync['duration']:.2f}s, "
                    f"sent {sync['sent']} B), rsync alone {alone['wall']:.2f}s (sent {alone['sent']} B)"
                    + (f", lean {row[case]['lean_wall']:.2f}s" if "lean_wall" in row[case] else ""))
            out["rounds"].append(row)
    finally:
        lab.down(root, purge=True)
    return out


def _tool_rsync_command(dep, src):
    """The rsync command line the tool runs (from its own plan), as an argv."""
    res = subprocess.run([str(FAB), "plan", "--host", "lab", "--inventory", str(dep.inventory), "--pipeline",
                          str(PIPELINE), "--source", str(src), "--release", "PLANNED"], capture_output=True, text=True, cwd=PROJECT)
    for line in res.stdout.splitlines():
        line = line.strip()
        if line.startswith("local$ rsync "):
            return shlex.split(line[len("local$ "):])
    raise BenchError(f"no rsync command in the tool's plan:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


def _rsync_alone(argv, ssh, h, dest, logfile):
    """The tool's rsync command on its own: its own OpenSSH connection (-e ssh ...), into a
    scratch dir on the same host, --link-dest the same `current`."""
    argv = list(argv)
    i = argv.index("-e")
    argv[i + 1] = ssh
    argv[-1] = argv[-1].split(":", 1)[0] + ":" + str(dest) + "/"
    subprocess.run(lab.ssh_command(h.name, h.root) + [f"mkdir -p {shlex.quote(str(dest.parent))}"], check=True)
    r = run_measured(argv, logfile)
    if r["code"] != 0:
        raise BenchError(f"rsync alone exited {r['code']}:\n{tail(logfile)}")
    r.update(rsync_stats(Path(logfile).read_text(errors="replace")))
    return r


def _wipe_releases(h):
    """A first deploy again: no releases, no current, no tool state; shared/ is kept."""
    app = Path(h.deploy_path)
    for name in ("releases", ".deploy"):
        shutil.rmtree(app / name, ignore_errors=True)
    for name in ("current", ".current.tmp"):
        if (app / name).is_symlink():
            (app / name).unlink()


# --------------------------------------------------------------------------------- main


def machine_info(roots):
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "?"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=PROJECT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "deploy", "playbooks", "fabfile.py"],
                           capture_output=True, text=True, cwd=PROJECT)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit.stdout.strip() + ("+changes" if dirty.stdout.strip() else ""),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "others": other_sandbox_hosts(roots),
    }


def prepare_source(work):
    """A copy of sample-app; a composer app gets `composer install` first, so vendor/ ships
    like a CI-built artifact for every contender."""
    source = work / "src"
    shutil.copytree(PROJECT / "sample-app", source, symlinks=True, ignore=shutil.ignore_patterns("*.php.cache"))
    for f in (source / "bootstrap" / "cache").glob("*.php"):
        f.unlink()
    if (source / "composer.json").exists() and (source / "composer.lock").exists():
        log("composer install --no-dev in the bench's copy of sample-app")
        res = subprocess.run(["composer", "install", "--no-dev", "--no-interaction", "--no-progress"], cwd=source,
                             capture_output=True, text=True, env=dict(os.environ, COMPOSER_ALLOW_SUPERUSER="1"))
        if res.returncode != 0:
            raise BenchError(f"composer install failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return source


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ints = lambda s: [int(x) for x in str(s).replace(" ", ",").split(",") if x.strip()]  # noqa: E731
    p.add_argument("--phase", default=",".join(PHASES), help=f"comma-separated, of: {', '.join(PHASES)}")
    p.add_argument("--hosts", type=ints, default=[1, 3, 8], help="loopback: host counts (default 1,3,8)")
    p.add_argument("--rounds", type=int, default=3, help="loopback/wan: rounds per setting (median; default 3)")
    p.add_argument("--repeat", type=int, default=1, help="loopback/wan: run the whole phase N times (default 1)")
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="loopback/wan: of tool,lean,baseline,fabric")
    p.add_argument("--parallel", type=int, default=0, help="loopback/wan: hosts at once (default: all)")
    p.add_argument("--wan-hosts", type=int, default=3)
    p.add_argument("--wan-rtt", type=ints, default=[0, 30], help="round trips in ms (default 0,30)")
    p.add_argument("--scale-hosts", type=ints, default=[8, 32, 100])
    p.add_argument("--scale-parallel", type=int, default=20)
    p.add_argument("--scale-serial", default="5%,25%", help="rolling batches of the last run ('' skips it)")
    p.add_argument("--scale-rounds", type=int, default=1)
    p.add_argument("--plan-hosts", type=int, default=500)
    p.add_argument("--big-files", type=int, default=10000)
    p.add_argument("--big-mb", type=int, default=100)
    p.add_argument("--big-storage", type=int, default=100000, help="files in the shared storage dir")
    p.add_argument("--big-rounds", type=int, default=1)
    p.add_argument("--root-prefix", default="/srv/labbench", help="lab roots: PREFIX-loop, -wan, -scale, -big")
    p.add_argument("--port-base", type=int, default=20000, help="ports used: BASE .. BASE+1999")
    p.add_argument("--port-span", type=int, default=BLOCK,
                   help="ports the bench may use from BASE; a phase moves by 2000 when a port is busy")
    p.add_argument("--write", action="store_true", help="store results under --label and rewrite docs/benchmark.md")
    p.add_argument("--label", default="latest", help="results set to write (default 'latest'; e.g. 'before', 'after')")
    p.add_argument("--keep-work", action="store_true", help="keep the temp dir (logs, JSON reports)")
    a = p.parse_args(argv)
    a.phase = [x.strip() for x in a.phase.split(",") if x.strip()]
    a.contenders = [x.strip() for x in a.contenders.split(",") if x.strip()]
    bad = [x for x in a.phase if x not in PHASES] + [x for x in a.contenders if x not in CONTENDERS]
    if bad:
        p.error(f"unknown phase/contender: {', '.join(bad)}")
    if "tool" not in a.contenders:
        p.error("--contenders must include tool")
    if a.scale_hosts and max(a.scale_hosts) > 250:
        p.error("--scale-hosts: at most 250 (ports)")
    return a


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: must run as root (the sandbox hosts need it)", file=sys.stderr)
        return 2
    prefix = args.root_prefix.rstrip("/")
    if Path(prefix).resolve() == Path(lab.DEFAULT_ROOT).resolve():
        print(f"bench: refusing {lab.DEFAULT_ROOT}: that is the shared lab; pick another --root-prefix", file=sys.stderr)
        return 2
    if not FAB.exists():
        print(f"bench: {FAB} not found (make the venv first)", file=sys.stderr)
        return 2
    os.environ.setdefault("LAB_QUIET", "1")
    b = args.port_base
    ctx = {
        "roots": {"loopback": f"{prefix}-loop", "wan": f"{prefix}-wan", "scale": f"{prefix}-scale",
                  "bigapp": f"{prefix}-big"},
        # (ssh base, http base[, relay base]); every host i adds i
        "ports": {"loopback": (b, b + 200), "wan": (b + 400, b + 600, b + 500), "scale": (b + 1000, b + 1300),
                  "bigapp": (b + 1700, b + 1800)},
        "port_base": b, "blocks": max(1, args.port_span // BLOCK),
    }
    info = machine_info(ctx["roots"].values())
    ctx["work"] = Path(tempfile.mkdtemp(prefix="deploy-bench-"))
    results, code = {}, 0
    t_start = time.monotonic()
    try:
        ctx["source"] = prepare_source(ctx["work"])
        for phase in [p for p in PHASES if p in args.phase]:
            t0 = time.monotonic()
            log(f"phase {phase}")
            res = globals()[f"phase_{phase}"](args, ctx)
            res["info"] = dict(info, date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                               load=" ".join(f"{x:.2f}" for x in os.getloadavg()),
                               others=other_sandbox_hosts(ctx["roots"].values()), seconds=time.monotonic() - t0,
                               args={k: v for k, v in vars(args).items() if k not in ("write", "keep_work")})
            results[phase] = res
            log(f"phase {phase} done in {time.monotonic() - t0:.0f}s")
    except BenchError as exc:
        print(f"\nbench FAILED: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("\nbench interrupted", file=sys.stderr)
        code = 130
    finally:
        for root in ctx["roots"].values():
            lab.down(root, purge=True)
        if args.keep_work or code:
            log(f"logs and reports kept in {ctx['work']}")
        else:
            shutil.rmtree(ctx["work"], ignore_errors=True)
    log(f"total {time.monotonic() - t_start:.0f}s")
    if results:
        print(doc.render_results(results, args.label))
    if results and args.write:
        doc.store(args.label, results)
        doc.write_doc()
        log(f"wrote {doc.DOC} and {doc.results_path(args.label)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
