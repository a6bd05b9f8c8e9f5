"""Running code: the pool executes the live release, and serves the code that is on disk.

Three views that must agree: what the pool says it runs (fpmctl status: where it resolves
current; in place, the RELEASE it reads and whether any cached script changed on disk since),
what the health URL answers, and what a fresh run of the code on disk answers (php-cli as the
web user, OPcache off: deploy/remote/diskrun.php).
"""

from .. import facts
from ..model import FAIL, WARN, Items, clip
from . import Check

CHECK = Check("running_code", "running code", order=80, needs_live=False)


def _disk_answer(ev):
    """The answer of the fresh run(s) through the code on disk, or None when unknown or unstable.

    The script runs the code a second time only when the first answer differs from the pool's:
    two equal runs make a stable answer, two different ones a health URL that is not deterministic.
    """
    runs = ev.get("disk") or []
    if not runs or runs[0]["status"] is None:
        return None
    if len(runs) == 1 or runs[0] == runs[1]:
        return runs[0]
    return None


def check(ev, host, pipeline, release):
    items = Items("running_code")
    layout = ev["layout"]
    if layout.get("deploy") == "missing":
        items.add(FAIL, f"deploy path {host.deploy_path} does not exist", "human: deploy a release first (fab deploy --host " + host.name + ")")
        return items.finding("")
    live = facts.live(ev)
    ip = facts.in_place(ev)
    if ip and (not live or not layout.get("real")):
        why = (f"{host.deploy_path}/RELEASE is missing or empty" if layout.get("real")
               else f"nothing deployed under {host.deploy_path}")
        items.add(FAIL, f"no live release (in place): {why}",
                f"human: deploy (fab deploy --host {host.name}), or fab rollback --host {host.name} to restore a snapshot")
        return items.finding("")
    if not live or not layout.get("real"):
        hint = ""
        if layout.get("inplace_hint"):
            hint = (f"; {host.deploy_path}/RELEASE exists: the host looks laid out in place (code directly under"
                    " the deploy path): check it with a pipeline that has strategy: in-place")
        items.add(FAIL, "no live release: current is missing or dangling" + (f" ({layout.get('link')})" if layout.get("link") else "")
                + hint, "human: fab rollback --host " + host.name + " (or deploy)")
        return items.finding("")
    items.details["live"] = live
    items.details["layout"] = facts.IN_PLACE if ip else facts.RELEASES
    if ip and layout.get("current") == "yes":
        items.add(FAIL, f"the checks assume the in-place layout, but {host.deploy_path}/current exists"
                      + (f" (-> {layout.get('link')})" if layout.get("link") else "")
                      + ": the host has the releases layout, or a move between layouts is half done",
                "human: use the pipeline that matches the host (strategy: releases when current -> releases/<id>),"
                " or finish the move (docs/remediation.md, in-place strategy)")
    if release and release != live:
        items.add(FAIL, (f"{host.deploy_path}/RELEASE says {live}" if ip else f"current points to {live}")
                + f", expected {release}", "the deploy/rollback decides; nothing healed")
    reset_fix = ("tool: OPCache reset inside the pool, then an FPM reload if still stale; human: fab heal --host "
                 + host.name + " (never `php -r opcache_reset()`)")
    st = facts.status_data(ev)
    if st and ip:
        # In place nothing is switched: the pool runs the live code when it reads this RELEASE
        # and none of the scripts it cached changed on disk since (fpmctl verify's rule).
        items.details["pool_release"] = st.get("release")
        if st.get("layout") not in (None, facts.IN_PLACE):
            items.add(FAIL, f"the pool sees the releases layout ({host.deploy_path}/current resolves to"
                          f" {st.get('current_realpath')}), not code in place", "human: see the first finding above")
        elif st.get("release") != live:
            # RELEASE is read with file_get_contents, not through OPCache: a reset cannot change this.
            items.add(FAIL, f"the pool reads release {st.get('release')!r}, {host.deploy_path}/RELEASE says {live}",
                    "human: the pool sees another file than the deploy user (a chroot, another mount namespace,"
                    " or a deploy path that is a symlink resolved differently): fix the pool's view of the path")
        o = st.get("opcache") or {}
        n = o.get("changed_scripts") or 0
        items.details["changed_scripts"] = n
        if n:
            ex = ", ".join(facts.short_path(p, host) for p in (o.get("changed_examples") or [])[:3])
            items.add(FAIL, f"the pool runs stale code: {n} cached script(s) changed on disk after it cached them ({ex})"
                    + ("; validate_timestamps=0: never re-read until a reset" if o.get("validate_timestamps") is False
                       else f"; re-read only after revalidate_freq={o.get('revalidate_freq')}s"),
                    reset_fix, "opcache_reset")
    elif st:
        pool_dir = st.get("release_dir")
        items.details["pool_release"] = pool_dir
        if pool_dir != live:
            items.add(FAIL, f"the pool resolves current to {pool_dir}, current is {live}", reset_fix, "opcache_reset")
        rfile = layout.get("release_file")
        if rfile and rfile != live:
            items.add(WARN, f"releases/{live}/RELEASE says {rfile!r}", "human: the RELEASE file should hold the release id")
        rc = st.get("realpath_cache_current") or {}
        if rc.get("stale"):
            items.add(WARN, f"a worker's realpath cache still maps current to {rc.get('realpath')}"
                          " (harmless with $realpath_root in nginx)", reset_fix)
    else:
        err = facts.probe_error(ev)
        items.add(FAIL, "the pool could not be asked what it runs" + (f": {err[1][:160]}" if err else ""),
                "see the PHP-FPM and FastCGI socket checks")
    http, disk = ev.get("http"), _disk_answer(ev)
    if not host.health_url:
        items.add(WARN, "no health_url for this host: only the pool's probe was checked",
                "human: set health_url in the inventory (a URL that answers the release id, e.g. /version)")
    elif http is not None:
        code, body = http["code"], http["body"]
        items.details.update({"http_code": code, "http_body": body[:200]})
        shown = clip(body, 80)
        if code == 0:
            items.add(FAIL, f"no HTTP answer from {host.health_url}", "human: is the web server running? (see nginx)")
        elif code in (502, 503, 504):
            items.add(FAIL, f"HTTP {code} from {host.health_url}: the web server cannot get an answer from the pool",
                    "tool: reload FPM; human: see the socket and PHP-FPM checks", "fpm_reload")
        elif code != 200:
            items.add(FAIL, f"HTTP {code} from {host.health_url}" + (f": {shown}" if shown else ""),
                    "tool: fixes of the other failed checks, then an FPM reload; human: read the Laravel/PHP logs",
                    "fpm_reload")
        else:
            others = [r for r in layout.get("releases", []) if r != live and r in body.split()]
            if live not in body and others:
                items.add(FAIL, f"HTTP 200 from {host.health_url} shows release {others[0]}, live is {live}: stale code",
                        reset_fix, "opcache_reset")
            elif disk is not None and disk["status"] == 200 and disk["body"].strip() != body.strip():
                items.add(FAIL, f"the pool answers {shown!r} but the code on disk answers {clip(disk['body'], 80)!r}"
                              " (fresh php-cli run, OPCache off): the pool runs stale code", reset_fix, "opcache_reset")
            elif live not in body:
                items.add(WARN, f"HTTP 200 from {host.health_url} but the body does not show the release id {live}: {shown!r}",
                        "human: let the health URL answer the release id so the tool can prove which code runs")
        if disk is None and ev.get("disk"):
            items.details["disk_unstable"] = True
    ok = (f"the pool executes {live} in place ({host.deploy_path}/RELEASE), no cached script changed on disk"
          if ip else f"the pool executes releases/{live}")
    if http and http["code"] == 200:
        ok += f"; HTTP 200 {clip(http['body'], 40)!r} from {host.health_url}"
        if disk and disk["status"] == 200:
            ok += ", the same as a fresh run of the code on disk"
    return items.finding(ok)
