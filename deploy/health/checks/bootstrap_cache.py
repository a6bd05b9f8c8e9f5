"""Bootstrap cache: bootstrap/cache exists, the pool user may write it, it holds the caches the
pipeline builds, built for this release and after their sources last changed."""

import posixpath

from .. import facts
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("bootstrap_cache", "bootstrap cache", order=40)


def check(ev, host, pipeline, release):
    items = Items("bootstrap_cache")
    web = host.web_user
    boot = ev["bootstrap"]
    rel = ev["layout"].get("real")
    live = facts.live(ev)
    ip = facts.in_place(ev)
    rebuild = ("tool: artisan " + ", ".join(facts.artisan_commands(pipeline) or facts.DEFAULT_ARTISAN) +
               " one by one as the deploy user in the live " + ("tree" if ip else "release") +
               ", each exit code checked, then an OPCache reset in the pool (cached config/routes are loaded"
               " through OPCache)")
    acl_fix = f"tool: setfacl -R -m u:{web}:rwX,d:u:{web}:rwX on bootstrap/cache; human: the same as root"
    if not rel:
        items.add(WARN, "not checked: no live release", "deploy a release")
        return items.finding("")
    if boot["nodir"]:
        items.add(FAIL, "bootstrap/cache is missing: Laravel answers 500 (\"must be present and writable\")",
                  acl_fix + " (creates it)", "acl")
        return items.finding("")
    st = facts.status_data(ev)
    writable, err = None, None
    if st and isinstance(st.get("writable"), dict) and "bootstrap/cache" in st["writable"]:
        writable = st["writable"]["bootstrap/cache"]
        err = ((st.get("writable_dirs") or {}).get("bootstrap/cache") or {}).get("error")
    own = ev["owner"]
    if own["checked"] and not own["noweb"] and own["notw_count"].get("bootstrap/cache"):
        writable = False
        err = f"{own['notw_count']['bootstrap/cache']} entries not writable"
    files = boot["files"]
    if writable is False:
        missing_rt = [f for f in ("packages.php", "services.php") if f not in files]
        items.add(FAIL, f"not writable by the pool user {web} ({err})" +
                  (f"; {' and '.join(missing_rt)} missing: Laravel answers 500 (\"must be present and writable\")"
                   if missing_rt else ""), acl_fix, "acl" + ("+artisan" if missing_rt else ""))
    expected = [facts.CACHE_FILES[c] for c in facts.artisan_commands(pipeline) if c in facts.CACHE_FILES]
    for name in expected:
        present = name in files or (name == "routes-v7.php" and "routes.php" in files)
        if not present and pipeline is not None:
            items.add(FAIL, f"{name} missing (the pipeline caches it)", rebuild, "artisan")
        elif not present:
            # No pipeline tells which caches this app builds: a missing one is not a fault by itself.
            items.add(WARN, f"{name} missing (the default cache commands build it; no pipeline describes this host)",
                      "human: pass --pipeline with the host's own pipeline to check against its cache commands")
    refs = boot["configref"]
    if ip:
        # In place the cache must hold paths under the deploy path itself: not under a snapshot
        # (built there, then copied back), not another base path (copied from another server).
        snaps = sorted(posixpath.basename(k) for k in refs if "/.deploy/snapshots/" in k)
        if snaps:
            items.add(FAIL, f"config.php was built in the snapshot of {', '.join(snaps)}: its paths point into"
                            " .deploy/snapshots", rebuild, "artisan")
        elsewhere = sorted(b for b in boot["basepath"] if b != rel and not b.startswith(rel + "/"))
        if elsewhere:
            items.add(FAIL, f"config.php was built for another directory ({', '.join(elsewhere[:2])}), not {rel}:"
                            " its paths point there", rebuild, "artisan")
    other = {k: v for k, v in refs.items() if "/releases/" in k and posixpath.basename(k) != live}
    if other:
        names = ", ".join(sorted(posixpath.basename(k) for k in other))
        items.add(FAIL, f"config.php was built for another release ({names}): its paths point there", rebuild, "artisan")
    if boot["newer_env"]:
        items.add(FAIL, f"{boot['newer_env']} changed after config:cache: the change is not applied", rebuild, "artisan")
    if boot["newer_config"]:
        items.add(FAIL, f"config changed after config:cache ({', '.join(facts.short_path(p, host) for p in boot['newer_config'][:3])}):"
                        " not applied", rebuild, "artisan")
    if boot["newer_routes"]:
        items.add(FAIL, f"routes changed after route:cache ({', '.join(facts.short_path(p, host) for p in boot['newer_routes'][:3])}):"
                        " not registered", rebuild, "artisan")
    items.details["files"] = sorted(files)
    if ip:
        built = f"built for {rel} (in place)" if rel in refs else ""
    else:
        built = (f"built for release {live}" if any(posixpath.basename(k) == live for k in refs)
                 else "built through current/" if refs else "")
    return items.finding(f"{', '.join(sorted(files)) or 'no cache files'} present" + (f", {built}" if built else "") +
                         (f"; writable by {web}" if writable else ""))
