"""The four ways the benchmark deploys the same release to the same lab hosts.

- tool:     `fab deploy` (this project), with bench/pipeline.yml: the same steps the others run
- lean:     bench/lean.sh, the leanest correct hand-written script (what users compare with)
- baseline: bench/baseline.sh, hand-written but doing the tool's own extra work too
            (lock, pool reset and probe, history), like for like; xargs -P for the hosts
- fabric:   bench/fabric_plain.py, a plain Fabric script, one `c.run` per command

Every deploy must end with every host's /version answering the new release id.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from deploy import lab
from measure import BenchError, check_live, run_measured, tail

PROJECT = Path(__file__).resolve().parent.parent
FAB = PROJECT / ".venv" / "bin" / "fab"
PYTHON = PROJECT / ".venv" / "bin" / "python"
LEAN = PROJECT / "bench" / "lean.sh"
BASELINE = PROJECT / "bench" / "baseline.sh"
PIPELINE = PROJECT / "bench" / "pipeline.yml"
FABRIC = PROJECT / "bench" / "fabric_plain.py"
CONTENDERS = ("tool", "lean", "baseline", "fabric")


class Deployer:
    """Deploys to a fixed set of lab hosts; one instance per (phase, host set)."""

    def __init__(self, root, hosts, work, parallel):
        self.root = root
        self.hosts = hosts
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.parallel = max(1, min(parallel, len(hosts)))
        self.inventory = self.work / "inventory.yml"
        self.inventory.write_text(lab.inventory_yaml(root, hosts))
        self.hosts_file = self.work / "hosts.txt"
        self.hosts_file.write_text("".join(
            f"127.0.0.1 {h.port} {h.deploy_path} {h.fpm_pid_file} {h.health_url}\n" for h in hosts))
        self.key = hosts[0].key
        self.known_hosts = hosts[0].known_hosts

    def deploy(self, who, release, source, serial=None, on_start=None):
        """One deploy of `release` by `who` to every host; returns the measurements."""
        out = self.work / f"{who}-{release}.log"
        report = None
        stdin = None
        if who == "tool":
            report = self.work / f"report-{release}.json"
            argv = [str(FAB), "deploy", "--host", "lab", "--inventory", str(self.inventory), "--release", release,
                    "--pipeline", str(PIPELINE), "--source", str(source), "--parallel", str(self.parallel), "--report", str(report)]
            if serial:
                argv += ["--serial", serial]
        elif who == "lean":
            argv = ["bash", str(LEAN), *self._common(release, source)]
        elif who == "fabric":
            argv = [str(PYTHON), str(FABRIC), *self._common(release, source)]
        elif who == "baseline":
            stdin = self._baseline_args(release, source)
            # xargs: at most `parallel` scripts at once, one host per line, like the tool's --parallel.
            argv = ["xargs", "-P", str(self.parallel), "-L", "1", "bash"]
        else:
            raise ValueError(f"unknown contender {who!r}")
        r = run_measured(argv, out, stdin_path=stdin, cwd=PROJECT, on_start=on_start)
        if r["code"] != 0:
            raise BenchError(f"{who} deploy of {release} exited {r['code']}:\n{tail(out)}")
        check_live(self.hosts, release, who)
        if report is not None:
            data = json.loads(report.read_text())
            states = {h["host"]: h["state"] for h in data["hosts"]}
            if set(states.values()) != {"deployed"}:
                raise BenchError(f"tool deploy {release}: not every host deployed: {states}")
            r["report"] = data
        return r

    def _common(self, release, source):
        return ["--hosts-file", str(self.hosts_file), "--release", release, "--source", str(source),
                "--key", self.key, "--known-hosts", self.known_hosts, "--parallel", str(self.parallel)]

    def _baseline_args(self, release, source):
        lines = []
        for h in self.hosts:
            args = ["--host", "127.0.0.1", "--port", h.port, "--path", h.deploy_path,
                    "--socket", h.socket, "--pid-file", h.fpm_pid_file, "--health-url", h.health_url,
                    "--release", release, "--source", source, "--key", h.key, "--known-hosts", h.known_hosts]
            lines.append(" ".join(shlex.quote(str(a)) for a in [str(BASELINE)] + args))
        path = self.work / f"baseline-{release}.args"
        path.write_text("\n".join(lines) + "\n")
        return path


def rsync_stats(text):
    """rsync --stats figures of interest from its output (None where absent)."""
    keys = {"Number of regular files transferred": "files", "Total bytes sent": "sent",
            "Total bytes received": "received", "Total file size": "size", "Number of files": "entries"}
    out = dict.fromkeys(keys.values())
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in keys:
            try:
                out[keys[name.strip()]] = int(value.split()[0].replace(",", ""))
            except (IndexError, ValueError):
                pass
    return out


def tool_sync(report):
    """Per host of a tool report: the sync step's rsync command, output stats and duration."""
    out = {}
    for h in report["hosts"]:
        for s in h["steps"]:
            for c in s["commands"]:
                if c.get("local") and c["command"].startswith("rsync "):
                    out[h["host"]] = {"command": c["command"], "duration": c["duration"],
                                      **rsync_stats(c.get("output") or "")}
    return out


def step_times(report):
    """{host: {step: seconds}} from a tool report."""
    return {h["host"]: {s["name"]: s["duration"] for s in h["steps"]} for h in report["hosts"]}
