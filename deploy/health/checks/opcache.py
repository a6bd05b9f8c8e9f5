"""OPCache: the pool's cache cannot serve old code (FACTS: with validate_timestamps=0 a changed
file is never re-read until a reset or reload; the CLI's opcache_reset() never reaches the pool)."""

from datetime import datetime, timezone

from .. import facts
from ..model import FAIL, PASS, WARN, Items
from . import Check

CHECK = Check("opcache", "OPCache", order=30)


def check(ev, host, pipeline, release):
    items = Items("opcache")
    st = facts.status_data(ev)
    pool = facts.pool_data(ev)
    reset_fix = ("tool: OPCache reset inside the pool (FastCGI to its socket, proven by its restart counters),"
                 " then an FPM reload if that is not enough; human: fab heal --host " + host.name +
                 " (never `php -r opcache_reset()`: the CLI has its own cache)")
    if not st:
        items.add(WARN, "not checked: the pool probe did not answer (see PHP-FPM)", "fix PHP-FPM first")
        return items.finding("")
    o = st["opcache"]
    if not o.get("enabled"):
        if o.get("api_restricted"):
            items.add(WARN, "opcache.restrict_api keeps the probe from reading or resetting OPCache",
                      "tool: resets fall back to FPM reloads; human: allow the deploy path in opcache.restrict_api")
            return items.finding("")
        return items.finding(f"OPCache is off in the pool ({o.get('reason')}): nothing cached, nothing to reset")
    vt, freq = o.get("validate_timestamps"), o.get("revalidate_freq")
    resets = pipeline is not None and any(s.spec.resets_pool for s in pipeline.steps)
    if vt is False and not resets:
        tail = (" changed code is never picked up until verify's probe catches it and remediation resets the pool"
                if pipeline is not None and facts.in_place(ev) else " changed code is never picked up")
        items.add(WARN, "validate_timestamps=0 and " + ("no pipeline was given to tell whether deploys reset the pool"
                                                        if pipeline is None else "the pipeline neither resets nor reloads:"
                                                        + tail),
                  "human: keep `- opcache_reset` (or `- fpm_reload`) after `- activate` in the pipeline")
    changed = (pool or {}).get("opcache") or {}
    if changed.get("changed_count"):
        files = changed.get("changed") or []
        epoch = changed.get("epoch") or 0
        when = datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%SZ") if epoch else "?"
        names = ", ".join(facts.short_path(c["path"], host) + ("" if c["why"] == "modified" else " (deleted)")
                          for c in files[:3])
        text = (f"{changed['changed_count']} cached script(s) changed on disk after the pool's OPCache was last"
                f" cleared ({when}): {names}")
        if changed.get("validate_timestamps"):
            items.add(PASS, text + f" (validate_timestamps=1: re-read within {changed.get('revalidate_freq')}s)")
        else:
            items.add(FAIL, text + "; with validate_timestamps=0 the pool keeps running the old code", reset_fix,
                      "opcache_reset")
        items.details["changed"] = files
    fc = o.get("file_cache") or ""
    if fc:
        hint = ("" if host.fpm.file_cache == fc
                else f"; human: set fpm: {{file_cache: {fc}}} in the inventory so every deploy's reset clears it")
        items.add(WARN, f"opcache.file_cache={fc} survives resets and reloads",
                  "tool: clears that directory with every reset it makes" + hint)
    stale = o.get("stale_scripts") or 0
    if stale:
        by = o.get("cached_by_release") or {}
        live = st.get("release_dir")
        others = ", ".join(f"{k}: {v}" for k, v in by.items() if k != live)
        items.add(WARN, f"{stale} scripts of other releases still cached ({others}): memory only while the pool"
                        " resolves the live release", "tool: an OPCache reset (fab heal, or the next deploy) drops them")
    under = o.get("cached_under_current") or 0
    if under:
        items.add(WARN, f"{under} scripts cached under the symlink path current/: after the next switch the pool may"
                        " serve them from the old release (nginx passes the symlink path?)",
                  "human: use $realpath_root in nginx (see the nginx check); tool: the deploy's reset clears them")
    mem = o.get("memory") or {}
    if mem.get("cache_full") or (o.get("oom_restarts") or 0) > 0:
        items.add(WARN, f"OPCache memory is full (oom_restarts={o.get('oom_restarts')})",
                  "human: raise opcache.memory_consumption / opcache.max_accelerated_files")
    if o.get("restart_pending") and not o.get("restart_in_progress"):
        items.add(WARN, "a reset is pending (a long request holds the cache?)", "tool: an FPM reload completes it")
    return items.finding(f"enabled; validate_timestamps={int(bool(vt))}, revalidate_freq={freq};"
                         f" {o.get('num_cached_scripts')} scripts cached, none changed on disk since the last clear"
                         + (", the deploys reset the pool" if resets and vt is False else ""))
