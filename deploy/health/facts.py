"""What several checks (and remediation) read from the evidence or the pipeline, in one place:
the layout, the live release, what the pool answered, the pipeline's dirs, caches and keys.
Pure functions of plain data.
"""

from __future__ import annotations

import posixpath

from .. import steps
from .. import yamlfile

IN_PLACE, RELEASES, AUTO = "in-place", "releases", "auto"

# artisan command -> the bootstrap/cache file it writes (Laravel 8+ names)
CACHE_FILES = {"config:cache": "config.php", "route:cache": "routes-v7.php", "event:cache": "events.php"}
DEFAULT_REQUIRED_ENV = ["APP_KEY"]


# ---------------------------------------------------------------------------- the pipeline

def step_settings(pipeline, kind):
    """The settings of the pipeline's first `kind` step, else that kind's own defaults (what
    `- kind` with no settings would give): remediation plans with the steps' own builders."""
    step = pipeline.first(kind) if pipeline is not None else None
    if step is not None:
        return step.settings
    return steps.KINDS[kind].parse(yamlfile.Section(yamlfile.LineDict(), "(defaults)", kind))


def writable_dirs(pipeline):
    return list(step_settings(pipeline, "ownership")["writable"])


DEFAULT_ARTISAN = list(steps.KINDS["artisan"].DEFAULT)


def artisan_commands(pipeline):
    """The cache commands the pipeline runs ([] when it has no artisan step); the defaults
    when there is no pipeline at all."""
    if pipeline is None:
        return list(DEFAULT_ARTISAN)
    step = pipeline.first("artisan")
    return list(step.settings["commands"]) if step else []


def required_env(pipeline):
    """The .env keys the live release must set (pipeline `health: {required_env: [...]}`)."""
    settings = getattr(pipeline, "health", None) or {}
    return list(settings.get("required_env", DEFAULT_REQUIRED_ENV))


def workers_expected(host, pipeline):
    """Does this host run long-running workers? The same rule as the workers step's `expect`
    (deploy/steps/workers.py): the step's own setting, else the inventory's `workers:`; without
    either, workers found are checked, none is fine."""
    from ..steps import workers as step
    found = pipeline.first("workers") if pipeline is not None else None
    return step.expected(found.settings if found else {}, host) > 0


# ---------------------------------------------------------------------------- the layout

def layout_mode(pipeline, layout=None):
    """The layout the checks assume: `layout` when given ("in-place", "releases" or "auto");
    else the pipeline's strategy; "auto" (decided on the host: no current and a RELEASE file
    directly under the deploy path = in place, the rule fpmctl status uses) without a pipeline."""
    if layout in (IN_PLACE, RELEASES, AUTO):
        return layout
    if layout is not None:
        raise ValueError(f"unknown layout {layout!r}")
    if pipeline is None:
        return AUTO
    return IN_PLACE if getattr(pipeline, "strategy", RELEASES) == IN_PLACE else RELEASES


def in_place(ev):
    """Does the evidence describe an in-place host (code directly under the deploy path)?"""
    return (ev.get("layout") or {}).get("layout") == IN_PLACE


def resolve_layout(ev, pipeline=None, layout=None):
    """Fill ev["layout"]["layout"] when the evidence does not say (canned evidence, an old
    gather): from the mode, else from the host's files and what the pool reported."""
    lay = ev["layout"]
    if lay.get("deploy") != "ok" or lay.get("layout") in (IN_PLACE, RELEASES):
        return ev
    mode = layout_mode(pipeline, layout)
    if mode == AUTO:
        st = status_data(ev) or {}
        host_says = st.get("layout") == IN_PLACE or (lay.get("symlink") == "no" and not lay.get("link")
                                                     and lay.get("current") != "yes" and bool(lay.get("release_present")))
        mode = IN_PLACE if host_says else RELEASES
    lay["layout"] = mode
    return ev


def live(ev):
    """The live release id: in place the deploy path's RELEASE file, else where current points."""
    if in_place(ev):
        return ev["layout"].get("release_file") or None
    link = ev["layout"].get("link") or ""
    return posixpath.basename(link.rstrip("/")) if link else None


def short_path(path, host):
    """A path as the app knows it: relative to the release (or the deploy path)."""
    for root in (host.deploy_path + "/releases/", host.deploy_path + "/"):
        if path.startswith(root):
            rest = path[len(root):]
            return rest.split("/", 1)[1] if root.endswith("releases/") and "/" in rest else rest
    return path


def fmt_files(items, n=3):
    return ", ".join(f"{i['owner']} {i['mode']} {i['path']}" for i in items[:n])


# ---------------------------------------------------------------------------- what the pool said

def status_data(ev):
    """fpmctl status of the pool, when it answered."""
    st = ev.get("status") or {}
    return st.get("data") if st.get("rc") == 0 and isinstance(st.get("data"), dict) else None


def pool_data(ev):
    """What the pool reported about every script it cached, and its error log (ev["pool"])."""
    p = ev.get("pool") or {}
    return p.get("data") if isinstance(p.get("data"), dict) else None


def probe_error(ev):
    """(kind, message) of the pool probe's failure, or None when it answered."""
    for key in ("ping", "status"):
        r = ev.get(key)
        if r is None:
            continue
        if r.get("rc") not in (0, None) or (r.get("data") or {}).get("ok") is False:
            d = r.get("data") or {}
            return d.get("error_kind") or f"exit {r.get('rc')}", d.get("error") or d.get("reason") or f"fpmctl {key} exit {r.get('rc')}"
    return None


def writable_now(ev):
    """True/False when known: are storage and bootstrap/cache writable by the pool user now?"""
    st = status_data(ev)
    if st and isinstance(st.get("writable"), dict) and st["writable"]:
        probe_ok = all(st["writable"].values())
    else:
        probe_ok = None
    own = ev.get("owner") or {}
    if own.get("checked") and not own.get("noweb"):
        deep_ok = not any(own["notw_count"].values()) and not own["missing"]
        return deep_ok if probe_ok is None else (deep_ok and probe_ok)
    return probe_ok
