"""File ownership: the writable dirs are writable by the web user (tested as that user, ACLs
included), nothing of the code is, and no file has an unexpected owner."""

from .. import facts
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("ownership", "file ownership", order=10)


def check(ev, host, pipeline, release):
    items = Items("ownership")
    web, user = host.web_user, host.user
    own = ev["owner"]
    writable = facts.writable_dirs(pipeline)
    ip = facts.in_place(ev)
    acl_fix = (f"tool: setfacl -R -m u:{web}:rwX,d:u:{web}:rwX on {', '.join(writable)} (the real dirs, not the"
               f" symlinks; never chown -R of the code); human, if the tool cannot: the same command as root")
    if not ev["layout"].get("real"):
        items.add(WARN, "not checked: no live release (" + ("nothing deployed in place under " + host.deploy_path
                                                            if ip else "current is missing or dangling") + ")",
                  "deploy a release")
        return items.finding("")
    if not own["checked"] or own["noweb"]:
        st = facts.status_data(ev)
        why = f"cannot test files as {web} (needs root or sudo -u {web})"
        if st and isinstance(st.get("writable"), dict):
            bad = [k for k, v in st["writable"].items() if not v]
            if bad:
                items.add(FAIL, f"the pool user cannot write {', '.join(bad)} (probe)", acl_fix, "acl")
            else:
                items.add(WARN, f"{why}; the pool can write the top of {', '.join(st['writable'])}",
                          f"give the deploy user sudo rights to run as {web} for a full check")
        else:
            items.add(WARN, why, f"give the deploy user sudo rights to run as {web}")
    else:
        for m in own["missing"]:
            items.add(FAIL, f"writable dir {m['name']} is missing ({m['path'] or 'dangling symlink'})", acl_fix, "acl")
        for name, count in own["notw_count"].items():
            if count:
                under = [i for i in own["notw"] if i["path"].startswith(ev["layout"]["writable"].get(name) or "\0")]
                items.add(FAIL, f"{count} entr{'y' if count == 1 else 'ies'} in {name} not writable by {web}"
                                f" (e.g. {facts.fmt_files(under or own['notw'], 2)})", acl_fix, "acl")
        codew = own["codew_count"] + len(own["codew_top"])
        if codew:
            ex = ", ".join(own["codew_top"][:2] + [i["path"] for i in own["codew"][:3]])
            rel = ev["layout"]["real"]
            text = f"{codew} code path(s) writable by the web user {web} (e.g. {ex}): PHP could rewrite code"
            if ip:
                keep = " and ".join(writable + [".deploy"])
                items.add(FAIL, text,
                          f"human (the tool never changes code ownership): in {rel}, except {keep}: chown {user}:,"
                          f" chmod go-w and setfacl -x u:{web} (e.g. find {rel} \\( -path {rel}/storage -o -path"
                          f" {rel}/bootstrap/cache -o -path {rel}/.deploy \\) -prune -o -exec chmod go-w {{}} +)")
            else:
                items.add(FAIL, text,
                          f"human (the tool never changes code ownership): chown -R {user}: {rel} and chmod -R go-w {rel},"
                          f" then setfacl -R -x u:{web} on it, leaving {' and '.join(writable)} alone; or deploy a new"
                          f" release (built read-only for {web})")
        items.details["checked_as"] = web
    if own["odd_count"]:
        items.add(WARN, f"{own['odd_count']} file(s) owned by neither {user} nor {web} (e.g. {facts.fmt_files(own['odd'], 2)}):"
                        " edited on the server by hand?",
                  f"human: chown them to {user} (code) or let the ACLs cover them (writable dirs); ship changes with a deploy")
    return items.finding(f"{' and '.join(writable)} writable by {web} (every file checked as {web});"
                         f" code not writable by {web}; owners {user}/{web} only"
                         + (" (in place: the live tree, .deploy/ and its snapshots not counted)" if ip else ""))
