"""Results of bench.py: stored as JSON per label (bench/results/<label>.json, e.g. "before" and
"after"), rendered as the tables of docs/benchmark.md. A run with --write replaces, under its
label, only the phases it ran, so a phase can be re-run on its own.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "benchmark.md"
RESULTS = HERE / "results"
NOTES_MARK = "<!-- notes: text below this line is kept by bench.py --write -->"
NAMES = {"tool": "tool", "lean": "lean.sh", "baseline": "baseline.sh", "fabric": "fabric_plain.py"}

# (key, text, target test) for the targets table
LOOPBACK_TARGET = 1.2
WAN_TARGET = 1.1
WAN_FABRIC_TARGET = 2.0
CPU_FLAT_TARGET = 1.2
PLAN_TARGET = 1.0
BYTES_TARGET = 0.01
RSYNC_TARGET = 1.2


def results_path(label):
    return RESULTS / f"{label}.json"


def store(label, results):
    path = results_path(label)
    data = json.loads(path.read_text()) if path.exists() else {"label": label, "phases": {}}
    data["phases"].update(results)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")  # key order kept: steps stay in pipeline order


def load_all():
    out = {}
    files = sorted(RESULTS.glob("*.json"), key=lambda p: (p.stem != "before", p.stat().st_mtime)) if RESULTS.exists() else []
    for p in files:
        out[p.stem] = json.loads(p.read_text())["phases"]
    return out


# ------------------------------------------------------------------------ formatting


def s(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f} s"


def x_(v, target=None, above=False):
    if v is None:
        return "-"
    ok = "" if target is None else (" ✓" if (v >= target if above else v <= target) else " ✗")
    return f"**{v:.2f}x**{ok}"


def num(v, digits=1):
    if v is None:
        return "-"
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.{digits}f}"


def mb(kb):
    return "-" if not kb else f"{kb / 1024:.0f} MB"


def ratio(a, b):
    return a / b if a and b else None


def table(head, rows, align=None):
    align = align or ["---:"] * len(head)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def info_line(info):
    return (f"{info['date']}, commit {info['commit']}; {info['nproc']} CPU ({info['cpu']}), Linux {info['kernel']}, "
            f"Python {info['python']}; load average at the end {info['load']}; other sandbox hosts on the machine "
            f"(not ours): {info['others']}; phase took {info['seconds']:.0f} s.")


# ------------------------------------------------------------------------- per phase


def _contender_table(rows_by_setting, setting_name, setting_fmt):
    """rows_by_setting: [(setting, summary)] where summary = {"contenders": {...}, "k": ...}."""
    whos = [w for w in NAMES if any(w in r["contenders"] for _, r in rows_by_setting)]
    head = [setting_name] + [f"{NAMES[w]} (median)" for w in whos] + \
        ["tool / lean", "tool / baseline", "fabric / tool", "tool / lean, fastest rounds", "tool CPU per host (own)"]
    rows = []
    for setting, r in rows_by_setting:
        c = r["contenders"]
        wall = {w: c[w]["wall"] for w in whos if w in c}
        rows.append([setting_fmt(setting, r)] + [s(wall.get(w)) for w in whos] + [
            x_(ratio(wall.get("tool"), wall.get("lean"))),
            x_(ratio(wall.get("tool"), wall.get("baseline"))),
            x_(ratio(wall.get("fabric"), wall.get("tool"))),
            x_(ratio(min(c["tool"]["walls"]), min(c["lean"]["walls"]))) if "lean" in c else "-",
            s(c["tool"]["cpu_own_per_host"], 3)])
    return table(head, rows)


def _counts_table(rows_by_setting, setting_name, setting_fmt, relay=False):
    head = [setting_name, "contender", "SSH connections", "sessions (channels)"]
    if relay:
        head += ["turns (round trips)", "KB sent", "KB received"]
    rows = []
    for setting, r in rows_by_setting:
        for w in NAMES:
            if w not in r["contenders"]:
                continue
            ph = r["contenders"][w]["per_host"]
            sftp = f" ({num(ph['sftp'])} SFTP)" if ph.get("sftp") else ""
            row = [setting_fmt(setting, r), NAMES[w], num(ph.get("connections")), num(ph.get("sessions")) + sftp]
            if relay:
                row += [num(ph.get("relay_turns"), 0), num((ph.get("relay_bytes_up") or 0) / 1024, 0),
                        num((ph.get("relay_bytes_down") or 0) / 1024, 0)]
            rows.append(row)
    return table(head, rows, ["---:", ":---"] + ["---:"] * (len(head) - 2))


def _steps_table(rows_by_setting, setting_name, setting_fmt):
    names = []
    for _, r in rows_by_setting:
        for n in r["contenders"]["tool"].get("steps", {}):
            if n not in names:
                names.append(n)
    head = [setting_name, "host total"] + names
    rows = []
    for setting, r in rows_by_setting:
        t = r["contenders"]["tool"]
        rows.append([setting_fmt(setting, r), f"{t.get('host_duration', 0):.2f}"] +
                    [f"{t['steps'].get(n, 0):.2f}" for n in names])
    return table(head, rows)


def render_loopback(p):
    out = ["### Loopback: 1, 3, 8 hosts, no added latency", ""]
    k_fmt = lambda k, r: f"{k} (parallel {r['parallel']})"  # noqa: E731
    for i, run in enumerate(p["runs"], 1):
        rows = [(r["k"], r) for r in run]
        out += [f"Run {i} of {len(p['runs'])}, median of {run[0]['rounds']} rounds per K:", "",
                _contender_table(rows, "K hosts", k_fmt), ""]
        out += ["Every round (seconds): " + "; ".join(
            f"K={r['k']}: " + ", ".join(f"{NAMES[w]} " + "/".join(f"{x:.2f}" for x in c["walls"])
                                         for w, c in r["contenders"].items()) for r in run), ""]
    last = [(r["k"], r) for r in p["runs"][-1]]
    out += ["Per host and deploy (sshd's log: `Accepted publickey` and `Starting session` lines; run "
            f"{len(p['runs'])}):", "", _counts_table(last, "K", lambda k, r: str(k)), ""]
    out += ["Where the tool's time goes per host (median seconds, from `--report`; a step's time starts at its "
            "first command, so connecting and session start-up before it show in no step):", "",
            _steps_table(last, "K", lambda k, r: str(k)), ""]
    return out


def render_wan(p):
    out = ["### WAN: 3 hosts behind latency relays, 0 and 30 ms round trip", ""]
    rtt_fmt = lambda rtt, r: f"{rtt} ms"  # noqa: E731
    for i, run in enumerate(p["runs"], 1):
        rows = [(r["rtt_ms"], r) for r in run]
        out += [f"Run {i} of {len(p['runs'])}, {run[0]['k']} hosts, parallel {run[0]['parallel']}, "
                f"median of {run[0]['rounds']} rounds per round trip:", "",
                _contender_table(rows, "round trip", rtt_fmt), ""]
        out += ["Every round (seconds): " + "; ".join(
            f"{r['rtt_ms']} ms: " + ", ".join(f"{NAMES[w]} " + "/".join(f"{x:.2f}" for x in c["walls"])
                                              for w, c in r["contenders"].items()) for r in run), ""]
        lo, hi = min(run, key=lambda r: r["rtt_ms"]), max(run, key=lambda r: r["rtt_ms"])
        if hi["rtt_ms"] > lo["rtt_ms"]:
            extra = hi["rtt_ms"] - lo["rtt_ms"]
            cells = []
            for w in NAMES:
                if w in hi["contenders"] and w in lo["contenders"]:
                    # paired by round: the two round trips of a round ran a few seconds apart
                    d = statistics.median(b - a for a, b in zip(lo["contenders"][w]["walls"], hi["contenders"][w]["walls"]))
                    cells.append(f"{NAMES[w]} {d:+.2f} s = {d * 1000 / extra:.0f} round trips")
            out += [f"Latency cost (median over the rounds of the wall at {hi['rtt_ms']} ms minus the wall at "
                    f"{lo['rtt_ms']} ms in the same round, divided by the {extra} ms added per round trip: the round "
                    f"trips on the critical path of the whole deploy; negative values mean the machine's noise was "
                    f"larger than the latency): " + "; ".join(cells) + ".", ""]
    last = [(r["rtt_ms"], r) for r in p["runs"][-1]]
    out += [f"Per host and deploy (run {len(p['runs'])}): connections and sessions from sshd's log; turns and "
            "bytes from the relay (a turn: the client sends after the server has sent since the client's last "
            "chunk, i.e. an exchange that changes direction; an upper bound on the round trips waited for):", "",
            _counts_table(last, "round trip", rtt_fmt, relay=True), ""]
    out += ["Where the tool's time goes per host at each round trip (median seconds, from `--report`):", "",
            _steps_table(last, "round trip", rtt_fmt), ""]
    return out


def render_scale(p):
    out = [f"### Scale: {p['hosts']} light hosts, `--parallel {p['parallel']}`, and rolling batches", "",
           f"Light lab hosts (one FPM worker each, real sshd, PHP-FPM and nginx): {p['hosts']} started in "
           f"{p['lab_up_s']:.1f} s, {p['lab_memory_mb']:.0f} MB of memory (PSS) for all their daemons. "
           "Each deploy ships one changed file to every host (after a warm-up deploy to all).", ""]
    rows = []
    for r in p["runs"]:
        rows.append([r["k"], r["serial"] or "-", r["parallel"], s(r["wall"], 1), s(r["cpu_own_per_host"], 3),
                     s(r["cpu_total_per_host"], 3), mb(r["maxrss_kb"]), f"{r['open_max']} (parallel {r['parallel']})",
                     num(r["per_host"].get("connections")), num(r["per_host"].get("sessions")),
                     f"{r['host_duration']:.2f}"])
    out += [table(["K hosts", "serial", "parallel", "wall", "tool CPU per host (own)", "with children",
                   "peak RSS (fab)", "open SSH connections, most at once", "connections per host",
                   "sessions per host", "host deploy (median)"], rows), ""]
    base = next((r for r in p["runs"] if not r["serial"]), None)
    top = max((r for r in p["runs"] if not r["serial"]), key=lambda r: r["k"], default=None)
    if base and top and top is not base:
        out += [f"Tool CPU per host at K={top['k']} / at K={base['k']}: "
                f"{x_(ratio(top['cpu_own_per_host'], base['cpu_own_per_host']), CPU_FLAT_TARGET)}. The fixed part "
                "(start-up, planning) is shared by more hosts at larger K; the CPU each additional host costs, "
                f"(CPU at K={top['k']} - CPU at K={base['k']}) / {top['k'] - base['k']}: "
                f"**{marginal_cpu(base, top):.3f} s** per host.", ""]
    for r in p["runs"]:
        if r["k"] == p["hosts"]:
            series = ", ".join(f"{t:g}s: {n}" for t, n in r["open_series"])
            server = (f" The hosts' side: at most {r['open_max_server']} at once."
                      if r.get("open_max_server") is not None else "")
            out += [f"Open SSH connections over time, K={r['k']}" + (f" serial {r['serial']}" if r["serial"] else "")
                    + f" (most open in each slice of the run, sampled every 0.1 s from /proc/net/tcp): {series}."
                    + server, ""]
    return out


def marginal_cpu(lo, hi):
    return (hi["cpu_own_per_host"] * hi["k"] - lo["cpu_own_per_host"] * lo["k"]) / (hi["k"] - lo["k"])


def render_plan(p):
    return ["### Plan and start-up", "",
            f"`fab plan` for a {p['hosts']}-host inventory (unreachable addresses): **{p['wall']:.2f} s** median of "
            f"{len(p['walls'])} ({', '.join(f'{w:.2f}' for w in p['walls'])}); target {PLAN_TARGET:g} s. "
            f"The tool's start-up (`fab --list`: Python, Fabric, Invoke, the tool's modules): "
            f"**{p['startup']:.2f} s** ({', '.join(f'{w:.2f}' for w in p['startups'])}).", ""]


def render_bigapp(p):
    t = p["tree"]
    out = [f"### Real-sized app: {t['files']} files, {t['bytes'] / 1e6:.0f} MB, and {p['storage_files']} files "
           "in shared storage", "",
           "One host. \"rsync alone\" is the tool's own rsync command line (taken from its plan) run on its own "
           "over a plain OpenSSH connection into a scratch dir on the same host, with the same `--link-dest`, "
           "just before the tool's deploy of the same case.", ""]
    rows = []
    for i, rnd in enumerate(p["rounds"], 1):
        first_sent = rnd["first"]["tool_sent"]
        for case in ("first", "unchanged", "one-file"):
            c = rnd[case]
            rows.append([i, case, s(c["tool_wall"]), s(c["tool_sync"]), s(c["steps"].get("ownership")),
                         s(c["alone_wall"]), x_(ratio(c["tool_sync"], c["alone_wall"])),
                         x_(ratio(c["tool_wall"], c["alone_wall"])), f"{c['tool_sent']:,}",
                         f"{c['tool_sent'] / first_sent:.2%}" if first_sent else "-",
                         f"{c['alone_sent']:,}", num(c["tool_files"]), num(c["sessions"]), s(c.get("lean_wall"))])
    out += [table(["round", "case", "tool deploy", "tool sync step", "tool ownership step", "rsync alone",
                   "sync / rsync alone", "deploy / rsync alone", "tool bytes sent", "of the first deploy",
                   "rsync alone bytes sent", "files sent", "sessions", "lean.sh deploy"], rows,
                 ["---:", ":---"] + ["---:"] * 12), ""]
    return out


RENDER = {"loopback": render_loopback, "wan": render_wan, "scale": render_scale, "plan": render_plan,
          "bigapp": render_bigapp}


def render_results(phases, label):
    out = [f"## Results: {label}", ""]
    for name in RENDER:
        if name in phases:
            out += RENDER[name](phases[name]) + [f"<sub>{info_line(phases[name]['info'])}</sub>", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- targets


def target_values(ph):
    """{target row: text} for one label's phases."""
    v = {}
    if "loopback" in ph:
        for run in ph["loopback"]["runs"]:
            for r in run:
                c = r["contenders"]
                key = f"loopback, {r['k']} host{'s' if r['k'] > 1 else ''}: tool / lean <= {LOOPBACK_TARGET}x"
                if "lean" in c:
                    v.setdefault(key, []).append(x_(ratio(c["tool"]["wall"], c["lean"]["wall"]), LOOPBACK_TARGET))
    if "wan" in ph:
        for run in ph["wan"]["runs"]:
            for r in run:
                if r["rtt_ms"] == 0:
                    continue
                c = r["contenders"]
                if "lean" in c:
                    v.setdefault(f"{r['rtt_ms']} ms round trip: tool / lean <= {WAN_TARGET}x", []).append(
                        x_(ratio(c["tool"]["wall"], c["lean"]["wall"]), WAN_TARGET))
                if "fabric" in c:
                    v.setdefault(f"{r['rtt_ms']} ms round trip: fabric / tool >= {WAN_FABRIC_TARGET}x", []).append(
                        x_(ratio(c["fabric"]["wall"], c["tool"]["wall"]), WAN_FABRIC_TARGET, above=True))
    if "scale" in ph:
        runs = [r for r in ph["scale"]["runs"] if not r["serial"]]
        if len(runs) > 1:
            lo, hi = min(runs, key=lambda r: r["k"]), max(runs, key=lambda r: r["k"])
            v[f"tool CPU per host, {hi['k']} vs {lo['k']} hosts: within {CPU_FLAT_TARGET}x"] = [
                x_(ratio(hi["cpu_own_per_host"], lo["cpu_own_per_host"]), CPU_FLAT_TARGET)
                + f" (marginal {marginal_cpu(lo, hi):.3f} s vs {lo['cpu_own_per_host']:.3f} s per host)"]
        top = max(ph["scale"]["runs"], key=lambda r: r["k"])
        v[f"peak RSS of fab, {top['k']} hosts (reported)"] = [mb(max(r["maxrss_kb"] for r in ph["scale"]["runs"]))]
        for r in ph["scale"]["runs"]:
            if r["k"] == top["k"]:
                ok = "✓" if r["open_max"] <= r["parallel"] else "✗"
                v.setdefault(f"open SSH connections, {top['k']} hosts: at most the parallelism", []).append(
                    f"{r['open_max']} (parallel {r['parallel']}{', serial ' + r['serial'] if r['serial'] else ''}) {ok}")
    if "plan" in ph:
        p = ph["plan"]
        v[f"`fab plan`, {p['hosts']} hosts: < {PLAN_TARGET:g} s"] = [
            f"**{p['wall']:.2f} s** {'✓' if p['wall'] < PLAN_TARGET else '✗'}"]
    if "bigapp" in ph:
        for rnd in ph["bigapp"]["rounds"]:
            first, same = rnd["first"], rnd["unchanged"]
            frac = same["tool_sent"] / first["tool_sent"] if first["tool_sent"] else None
            v.setdefault(f"real-sized app, unchanged redeploy: bytes sent < {BYTES_TARGET:.0%} of the first", []).append(
                "-" if frac is None else f"**{frac:.2%}** {'✓' if frac < BYTES_TARGET else '✗'}")
            v.setdefault(f"real-sized app, unchanged redeploy: sync step / rsync alone <= {RSYNC_TARGET}x", []).append(
                x_(ratio(same["tool_sync"], same["alone_wall"]), RSYNC_TARGET))
            v.setdefault(f"real-sized app, unchanged redeploy: whole deploy / rsync alone <= {RSYNC_TARGET}x",
                         []).append(x_(ratio(same["tool_wall"], same["alone_wall"]), RSYNC_TARGET))
    return {k: " / ".join(vals) for k, vals in v.items()}


def targets_table(all_labels):
    cols = {label: target_values(ph) for label, ph in all_labels.items()}
    keys = []
    for vals in cols.values():
        for k in vals:
            if k not in keys:
                keys.append(k)
    return table(["target (issue \"Speed and scale\")"] + list(cols),
                 [[k] + [cols[label].get(k, "-") for label in cols] for k in keys],
                 [":---"] + [":---"] * len(cols))


# ------------------------------------------------------------------------------ doc


METHOD = """\
# Benchmark: the tool against hand-written deploys

`bench/bench.py` (`make bench`) deploys the sample app to real sandbox hosts (`deploy/lab/`:
own sshd, PHP-FPM with OPCache and nginx per host, on loopback) with the tool and with
hand-written deploys, in the same run, and writes the tables below (`--write`).

## The contenders

| name | what it is | per host |
|---|---|---|
| tool | `fab deploy --parallel P` with the default pipeline (`playbooks/laravel.yml`) | what the tool does today (see the counts below) |
| lean.sh | `bench/lean.sh`: the leanest correct hand-written script, what users compare with | 1 OpenSSH connection (ControlMaster), 2 sessions: rsync `--link-dest`, then one script (shared links, ACLs, the four artisan cache commands one by one, atomic switch, FPM reload, curl until the new release id answers, prune) |
| baseline.sh | `bench/baseline.sh`: hand-written, doing the tool's own extra work too (lock, the pool programs sent as a tar in its first session, OPCache reset in the pool, pool probe, history): like for like | 1 OpenSSH connection, 4 sessions |
| fabric_plain.py | `bench/fabric_plain.py`: a plain Fabric script, one `c.run` per command, hosts in threads, rsync by `c.local` | 2 connections (paramiko + rsync's ssh), a session per command |

All four run the same remote work that matters (rsync with `--link-dest`, the same excludes,
shared `storage/` and `.env`, ACLs for the web user, `config:cache`, `route:cache`,
`view:cache`, `event:cache`, atomic switch, FPM reload, HTTP check of the release id). After
every deploy each host's `/version` must answer the new release id, or the run fails. Before
each deploy exactly one file of the source changes (the tool's report must say rsync sent 1
file per host). Hosts deploy in parallel (all at once unless `--parallel`).

## Method

- **Same run, alternating order.** Each round runs every contender once; the order rotates
  every round; a table cell is the median of the rounds. The machine has 2 cores shared with
  other sessions and with the sandbox hosts themselves, so absolute times are noisy; ratios of
  the same run are what counts. `--repeat 2` runs the loopback and WAN phases twice.
- **Warm-up.** One unmeasured deploy per contender first (shared dirs, OPCache, disk cache).
- **Latency.** The WAN phase puts a relay (`deploy/lab/latency.py`) in front of each host's
  sshd that delays every chunk 15 ms each way (30 ms round trip; netem is not available here);
  HTTP is not delayed (the tool's checks run on the host). Round trips 0 and 30 ms alternate
  within each round through the same relays, so the relay's own cost is in both.
- **Counts per host and deploy.** SSH connections: sshd's `Accepted publickey` lines (the lab's
  sshd logs at `LogLevel VERBOSE`). Sessions (channels: a command, a subsystem such as SFTP, or
  rsync's remote side): sshd's `Starting session:` lines. Turns and bytes: the relay's counters
  (a turn is a chunk from the client arriving after the server sent something since the
  client's previous chunk; over a WAN each turn the client waits on costs a round trip, so it
  is an upper bound on the round trips waited for). The latency cost line divides the extra wall
  time at 30 ms by the 30 ms added per round trip: the round trips on the deploy's critical path.
- **CPU and memory.** "Tool CPU per host (own)" is the `fab` process alone (utime+stime from
  /proc/PID/stat read while it is a zombie) divided by the hosts; "with children" adds the rsync
  and ssh processes it ran. Peak RSS is the kernel's `ru_maxrss` of the `fab` process tree
  (the `fab` process is its largest).
- **Open connections over time** (scale phase): every 0.1 s, from /proc/net/tcp, the
  ESTABLISHED sockets whose peer is a lab sshd port: the client side of each connection, what
  the tool holds (nothing else connects to those ports meanwhile), and the hosts' side of the
  same connections. The kernel builds the table page by page as it is read, so a connection
  closed and the next one opened between two pages can both be in one read: each sample reads
  the table twice in a row and keeps the lower count.
- **Scale** uses light lab hosts (`lab.up(light=True)`: one FPM worker, fewer nginx
  connections; still real sshd, PHP-FPM and nginx), started in parallel.
- **Real-sized app**: `bench/bigapp.py` adds a generated `vendor/` (PHP files, log-normal
  sizes) to the sample app, and fills the host's `shared/storage` with 100,000 files before the
  first deploy. "Bytes sent" is rsync's `Total bytes sent` (`--stats`).
- The bench's source is a copy of `sample-app/`; when it has `composer.json` and
  `composer.lock`, `composer install --no-dev` runs in the copy first, so `vendor/` ships like
  a CI-built artifact for every contender.

## Run it

As root, on this kind of machine (`make bench` = every phase with `--write --label latest`,
about 15 minutes on a quiet 2-core machine, 20 when it is shared):

    make bench                                              # everything, label "latest"
    make bench BENCH_LABEL=after BENCH_ARGS="--phase wan"   # one phase, under "after"
    .venv/bin/python bench/bench.py --phase loopback,wan --repeat 2 --write --label before

| option | default | what |
|---|---|---|
| `--phase` | all | `loopback`, `wan`, `scale`, `plan`, `bigapp`, comma-separated |
| `--hosts` / `--rounds` / `--repeat` | 1,3,8 / 3 / 1 | loopback host counts; rounds per setting (loopback, WAN); whole-phase repeats (loopback, WAN) |
| `--contenders` | tool,lean,baseline,fabric | which deploys to compare |
| `--wan-hosts` / `--wan-rtt` | 3 / 0,30 | WAN phase hosts and round trips (ms) |
| `--scale-hosts` / `--scale-parallel` / `--scale-serial` / `--scale-rounds` | 8,32,100 / 20 / 5%,25% / 1 | scale phase |
| `--plan-hosts` | 500 | `fab plan` size |
| `--big-files` / `--big-mb` / `--big-storage` / `--big-rounds` | 10000 / 100 / 100000 / 1 | real-sized app |
| `--root-prefix` / `--port-base` / `--port-span` | /srv/labbench / 20000 / 2000 | lab roots PREFIX-loop, -wan, -scale, -big; ports BASE..BASE+1999; with a larger span a phase moves to the next 2000 ports when another socket holds one of its ports |
| `--write` / `--label` | off / latest | store results as `bench/results/LABEL.json` (only the phases run are replaced) and rewrite this file |
| `--keep-work` | off | keep logs and JSON reports |

Every label stored in `bench/results/` gets a column in the targets table and its own section
below; "before" is the tool as it was before the speed work, "after" the tool with it.
"""


def write_doc():
    all_labels = load_all()
    notes = ""
    if DOC.exists():
        old = DOC.read_text()
        if NOTES_MARK in old:
            notes = old.split(NOTES_MARK, 1)[1]
    parts = [METHOD, "## Targets", "",
             "Ratios measured in one run (\" / \" separates the runs of `--repeat`); ✓ meets the target. "
             "\"before\" is the tool as it was before the speed work, \"after\" the tool with it.", "",
             targets_table(all_labels), ""]
    for label, phases in all_labels.items():
        parts += [render_results(phases, label), ""]
    DOC.write_text("\n".join(parts) + "\n" + NOTES_MARK + (notes if notes.strip() else "\n"))
