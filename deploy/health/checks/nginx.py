"""nginx: the nginx that serves the deploy path passes `nginx -t`, passes PHP to the pool's
socket and, when current is a symlink, passes $realpath_root (else workers keep resolving
current/ to the old release). The tool never edits web server configuration: no remedy."""

from .. import facts
from .. import nginx as conf
from ..model import FAIL, WARN, Items
from . import Check

CHECK = Check("nginx", "nginx", order=60, needs_live=False)


def check(ev, host, pipeline, release):
    items = Items("nginx")
    ngx = ev["nginx"]
    symlinked = ev["layout"].get("symlink") == "yes"
    if ngx["none"]:
        items.add(WARN, "nginx is not installed on the host: the web server was not checked",
                  "human: check the web server's PHP handler passes the resolved path of current")
        return items.finding("")
    master = ngx["master"]
    if master is None:
        if ngx["dump"] is None:
            if ngx["default_rc"] == 126 and ev["meta"].get("root") == "no":
                items.add(WARN, f"cannot run nginx -T as {ev['meta'].get('user') or host.user} (needs root or sudo)",
                          "human: run `nginx -T` as root, or give the deploy user sudo rights for it")
            else:
                items.add(WARN, f"no running nginx serves {host.deploy_path}" +
                          (f" ({len(ngx['others'])} other nginx master(s) checked)" if ngx["others"] else ""),
                          "human: check which web server serves the app")
            return items.finding("")
        items.add(WARN, "nginx is configured for the app but no nginx master is running", "human: start nginx")
    rc = master["rc"] if master else ngx["default_rc"]
    path = master["conf"] if master else "/etc/nginx/nginx.conf"
    if rc not in (0, None):
        errors = conf.test_errors(ngx["dump"])
        items.add(FAIL, f"nginx -t fails for {path}: " + (" ".join(errors[:2]) or f"exit {rc}"),
                  "human: fix the config, then nginx -t && nginx -s reload")
        return items.finding("")
    res = conf.analyse_nginx(ngx["dump"], host.deploy_path, host.fpm.socket, symlinked, facts.in_place(ev))
    for status, evidence, fix in res["problems"]:
        items.add(status, evidence, fix)
    items.details.update({"conf": path, "location": res["location"], "pid": (master or {}).get("pid")})
    if not res["problems"] and not res["ok"]:
        items.add(WARN, f"no PHP location of {path} passes to {host.fpm.socket}", "human: check fastcgi_pass")
    return items.finding(f"nginx -t ok ({path}, master pid {(master or {}).get('pid')}); " + "; ".join(res["ok"][:1]))
