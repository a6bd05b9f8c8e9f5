"""Evidence of one host's health: deploy/remote/gather.sh planned as one Command, run in one
SSH session, its output parsed section by section (sections.py) into plain data.

gather.sh runs the tool's PHP programs installed under <deploy_path>/.deploy/bin (fpmctl.php
and the pool probe it copies, diskrun.php, appcheck.php) only when the host's copies are the
tool's: when they are not, gather() installs them over the same connection and gathers again.
"""

from __future__ import annotations

import re
import time

from .. import remote
from ..commands import PlannedStep
from ..context import StepContext
from ..transport import InstallError
from . import facts, sections
from .logs import LOG_TAIL_LINES

# The inputs of gather.sh, in the order the command sets them (the deploy path first: a
# reviewer reading a log sees at once which host tree the evidence is about).
INPUTS = ("D", "MODE", "WEB", "DUSER", "SOCK", "PHP", "BIN", "WANT", "URL", "URI", "PORT", "WRITABLE", "LOGLINES",
          "ENVKEYS", "WPATTERN", "WORKERS_SH")


def _url_path(url):
    if not url:
        return ""
    m = re.match(r"^https?://[^/?#]*([^#]*)", url)
    path = m.group(1) if m else "/"
    return path if path.startswith("/") else "/" + path


def _url_port(url):
    m = re.match(r"^(https?)://(\[[^\]]*\]|[^/:?#]*)(?::(\d+))?", url or "")
    if not m:
        return ""
    return m.group(3) or ("443" if m.group(1) == "https" else "80")


def wanted_programs():
    """`sha256sum` lines of the PHP programs as the tool has them (what the host must have)."""
    return "".join(f"{remote.digest(n)}  {n}\n" for n in remote.names(remote.PHP))


def gather_command(host, pipeline, release="-", layout=None):
    """gather.sh as one Command (its whole output is kept under runner.facts['health']).

    layout: see facts.layout_mode (None: the pipeline decides; "auto" without one). The inputs
    are shell variables set and exported before the script; the script's text travels inline
    as the argument of `sh -c`, so the host always runs this very version."""
    ctx = StepContext(host, pipeline, release or "-")
    values = {
        "D": host.deploy_path, "MODE": facts.layout_mode(pipeline, layout), "WEB": host.web_user, "DUSER": host.user,
        "SOCK": host.fpm.socket, "PHP": ctx.php(), "BIN": remote.bin_dir(ctx.paths), "WANT": wanted_programs(),
        "URL": host.health_url or "", "URI": _url_path(host.health_url), "PORT": _url_port(host.health_url),
        "WRITABLE": " ".join(facts.writable_dirs(pipeline)), "LOGLINES": str(LOG_TAIL_LINES),
        "ENVKEYS": " ".join(facts.required_env(pipeline)), "WPATTERN": host.workers.processes or "",
        "WORKERS_SH": remote.local_path("workers.sh").read_text(),
    }
    template = "".join(f"{name}={{}}; " for name in INPUTS) + "export " + " ".join(INPUTS) + "; sh -c {} gather.sh"
    return ctx.cmd(template, *(values[n] for n in INPUTS), remote.local_path("gather.sh").read_text(),
                   capture="health", desc="gather health evidence (one session)")


def gather(runner, host, pipeline, release=None, layout=None):
    """Run gather.sh (installing the tool's PHP programs first when the host's copies differ).

    Returns the parsed evidence dict. Raises TransportError when the host is lost."""
    cmd = gather_command(host, pipeline, release, layout)
    t0 = time.monotonic()
    runner.run([PlannedStep("health", "health", [cmd])])
    ev = parse(runner.facts.get("health", ""))
    missing = ev["programs"]["missing"]
    if ev["layout"].get("deploy") == "ok" and missing:
        try:
            runner.install(missing)
            res = runner.run([PlannedStep("health", "health", [cmd])])
        except InstallError:
            res = None
        if res and res[0].status == "ok":
            ev = parse(runner.facts.get("health", ""))
        else:
            ev["upload_failed"] = True
    ev["gather_seconds"] = round(time.monotonic() - t0, 3)
    return ev


def parse(text):
    """Gather output -> evidence dict (plain data, so unit tests can build it from canned text)."""
    s, times = sections.split(text)
    ev = {"complete": "end" in s, "raw_sections": sorted(s),
          # seconds spent per section on the host (where a slow host spends its time)
          "section_seconds": {a[0]: round(b[1] - a[1], 3) for a, b in zip(times, times[1:])}}
    ev["meta"] = sections.meta(s.get("meta"))
    ev["layout"] = sections.layout(s.get("layout"))
    ev["history"] = sections.history(s.get("history"))
    ev["programs"] = sections.programs(s.get("programs"))
    ev["ping"] = sections.json_with_rc(s.get("ping"))
    ev["status"] = sections.json_with_rc(s.get("status"))
    ev["pool"] = sections.pool(ev["status"])
    ev["http"] = sections.http(s.get("http"))
    ev["disk"] = sections.disk(s.get("disk"))
    ev["fpm"] = sections.fpm(s.get("fpm"))
    ev["nginx"] = sections.nginx(s.get("nginx"))
    ev["owner"] = sections.owner(s.get("owner"))
    ev["bootstrap"] = sections.bootstrap(s.get("bootstrap"))
    ev["log"] = sections.log(s.get("log"))
    ev["env"] = sections.env(s.get("env"))
    ev["app"] = sections.app(s.get("app"))
    mig = (ev["app"]["data"] or {}).get("migrations")
    ev["migrations"] = sections.migrate_status(mig.get("output"), mig.get("rc")) if isinstance(mig, dict) else None
    ev["workers"] = sections.workers(s.get("workers"))
    return ev
