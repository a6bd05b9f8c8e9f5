"""Health checks of one host: the incident's eight check categories and the app's own (its .env,
database and Redis, migrations, workers), each a Finding.

    ev = evidence.gather(runner, host, pipeline)      # one SSH session: deploy/remote/gather.sh
    findings = evaluate(ev, host, pipeline)           # pure: one module per check (checks/)

The package:
  model.py      Finding, PASS/WARN/FAIL, the order of remedies, Items (a check's findings)
  evidence.py   the gather command, running it (installing the tool's PHP programs when the
                host's copies differ), parsing its output
  sections.py   one parser per section of that output (pure)
  facts.py      what several checks read: the layout, the live release, the pool's answers,
                the pipeline's dirs, caches, keys
  nginx.py      `nginx -T` parsing and the analysis of the server that serves the deploy path (pure)
  logs.py       Laravel and PHP log lines, the history's last change (pure)
  checks/       one module per check, discovered (a new check is one file)

What is checked, and why, follows docs/why.md (not the incident report's explanations):
ownership never decides OPCache freshness; it breaks Laravel (500 "must be present and
writable"). `php -r opcache_reset()` never reaches the pool. A changed file is never re-read by
the pool with opcache.validate_timestamps=0 until a reset or reload.
"""

from __future__ import annotations

from .. import remote
from . import checks as _checks
from .evidence import gather, gather_command, parse
from .facts import (AUTO, CACHE_FILES, DEFAULT_ARTISAN, IN_PLACE, RELEASES, artisan_commands, in_place, layout_mode,
                    live, resolve_layout, status_data, step_settings, writable_dirs)
from .logs import LOG_TAIL_LINES, PERMISSION_PATTERNS, last_change, laravel_entries, php_entries
from .model import EVIDENCE_MAX, FAIL, PASS, REMEDIES, WARN, Finding, Items, worst
from .nginx import REALPATH_LINES, analyse_nginx, nginx_files, nginx_tree
from .nginx import tokens as _tokens  # noqa: F401 (tests tokenise through the package)

CHECKS = _checks.CHECKS
TITLES = _checks.TITLES
# The pool-side program of fpmctl.php (it holds the stale-script rule, for both scopes).
POOL_PROBE = remote.local_path("probe.php").read_text()


def _fpmctl_sha():
    return remote.digest("fpmctl.php")


# Names older callers use.
_status_data, _live, _artisan_commands = status_data, live, artisan_commands


def evaluate(ev, host, pipeline, release=None, layout=None):
    """Evidence -> one Finding per check, in CHECKS order. Pure: no I/O (but fills in
    ev["layout"]["layout"] when the evidence does not name the layout; see resolve_layout).
    `release`: the release that should be live (None: whatever is live)."""
    resolve_layout(ev, pipeline, layout)
    if (layout_mode(pipeline, layout) == AUTO and pipeline is not None and ev["layout"].get("layout")
            and layout_mode(pipeline) != ev["layout"]["layout"]):
        # The default pipeline (no --pipeline) is for the other layout: it does not describe this
        # host, so its cache commands and resets are no evidence about it.
        pipeline = None
    missing = ev["layout"].get("deploy") == "missing"
    out = []
    for name, module in _checks.MODULES.items():
        if missing and module.CHECK.needs_live:
            out.append(Finding(name, WARN, "not checked: nothing deployed", "deploy a release"))
        else:
            out.append(module.check(ev, host, pipeline, release))
    return out


def run_checks(runner, host, pipeline, release=None, layout=None):
    """Gather evidence on the host (one SSH session; two when the tool's programs must be
    installed first) and evaluate it. `release`: the release that should be live."""
    ev = gather(runner, host, pipeline, release, layout)
    return evaluate(ev, host, pipeline, release, layout)


__all__ = [
    "AUTO", "CACHE_FILES", "CHECKS", "DEFAULT_ARTISAN", "EVIDENCE_MAX", "FAIL", "IN_PLACE", "LOG_TAIL_LINES", "PASS",
    "PERMISSION_PATTERNS", "POOL_PROBE", "REALPATH_LINES", "RELEASES", "REMEDIES", "TITLES", "WARN", "Finding", "Items",
    "analyse_nginx", "artisan_commands", "evaluate", "gather", "gather_command", "in_place", "laravel_entries",
    "last_change", "layout_mode", "live", "nginx_files", "nginx_tree", "parse", "php_entries", "resolve_layout",
    "run_checks", "status_data", "step_settings", "worst", "writable_dirs",
]
