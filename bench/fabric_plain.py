#!/usr/bin/env python3
"""A plain Fabric deploy script: what a team writes on its own with Fabric, one `c.run` per
command, hosts in threads. The same steps as bench/lean.sh; bench/bench.py measures it.

    python bench/fabric_plain.py --hosts-file HOSTS --release r42 --source DIR \\
        --key /srv/lab/ssh/id_ed25519 --known-hosts /srv/lab/ssh/known_hosts [--parallel 10]

HOSTS has one line per host: ADDRESS PORT DEPLOY_PATH FPM_PID_FILE HEALTH_URL (as lean.sh).

Per host: one Fabric Connection (paramiko) for the commands, host keys checked against
known_hosts (Fabric's default would trust any key), and rsync over its own OpenSSH
connection (`c.local`), as a Fabric user does it. Exit 1 if any host failed.
"""

import argparse
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import paramiko
from fabric import Connection

EXCLUDES = ["/RELEASE", "/bootstrap/cache/*.php", ".git", "node_modules", "/.env", "/storage/logs/*.log"]


def connect(args, host, port):
    c = Connection(host, user=args.user, port=port,
                   connect_kwargs={"key_filename": args.key, "look_for_keys": False, "allow_agent": False})
    c.client.load_host_keys(args.known_hosts)
    c.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return c


def deploy(args, host, port, path, pidfile, url):
    rel = args.release
    r = f"{path}/releases/{rel}"
    web = args.web_user
    c = connect(args, host, port)
    try:
        c.run(f"mkdir -p {path}/releases {path}/shared", hide=True)
        ssh = (f"ssh -p {port} -i {args.key} -o IdentitiesOnly=yes -o BatchMode=yes "
               f"-o StrictHostKeyChecking=yes -o UserKnownHostsFile={args.known_hosts}")
        c.local("rsync --archive --no-owner --no-group --delete --chmod=go-w,Dgo+rx,Fgo+r "
                f"--link-dest={path}/current/ " + " ".join(f"--exclude={shlex.quote(e)}" for e in EXCLUDES)
                + f" -e {shlex.quote(ssh)} {shlex.quote(args.source.rstrip('/') + '/')} {args.user}@{host}:{r}/",
                hide=True)
        try:
            if c.run(f"test -e {path}/shared/storage", warn=True, hide=True).failed:
                c.run(f"cp -a {r}/storage {path}/shared/storage", hide=True)
            acl = c.run(f"getfacl -p {path}/shared/storage", hide=True).stdout
            if f"default:user:{web}:rwx" not in acl:
                c.run(f"setfacl -R -m u:{web}:rwX,d:u:{web}:rwX {path}/shared/storage", hide=True)
            if c.run(f"test -e {path}/shared/.env", warn=True, hide=True).failed:
                c.run(f"touch {path}/shared/.env", hide=True)
                c.run(f"chmod 0640 {path}/shared/.env", hide=True)
                c.run(f"setfacl -m u:{web}:r {path}/shared/.env", hide=True)
            c.run(f"rm -rf {r}/storage {r}/.env", hide=True)
            c.run(f"ln -s {path}/shared/storage {r}/storage", hide=True)
            c.run(f"ln -s {path}/shared/.env {r}/.env", hide=True)
            c.run(f"mkdir -p {r}/bootstrap/cache", hide=True)
            c.run(f"setfacl -R -m u:{web}:rwX,d:u:{web}:rwX {r}/bootstrap/cache", hide=True)
            with c.cd(r):
                for command in ("config:cache", "route:cache", "view:cache", "event:cache"):
                    c.run(f"{args.php} artisan {command} --no-interaction", hide=True)
            c.run(f"printf '%s\\n' {rel} > {r}/RELEASE", hide=True)
            c.run(f"ln -sfn releases/{rel} {path}/.current.tmp", hide=True)
            c.run(f"mv -fT {path}/.current.tmp {path}/current", hide=True)
        except Exception:
            c.run(f"rm -rf {r}", warn=True, hide=True)  # never switched: drop the half-built release
            raise
        c.run(f'kill -USR2 "$(cat {pidfile})"', hide=True)
        deadline = time.monotonic() + 20
        while c.run(f"curl -s --max-time 5 {url}", warn=True, hide=True).stdout.strip() != rel:
            if time.monotonic() > deadline:
                raise RuntimeError(f"verify failed: {url} does not answer {rel}")
            time.sleep(0.1)
        old = c.run(f"ls -1t {path}/releases", hide=True).stdout.split()[args.keep:]
        for name in old:
            c.run(f"rm -rf {path}/releases/{name}", hide=True)
    finally:
        c.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--hosts-file", "--release", "--source", "--key", "--known-hosts"):
        p.add_argument(name, required=True)
    p.add_argument("--user", default="root")
    p.add_argument("--web-user", default="www-data")
    p.add_argument("--keep", type=int, default=5)
    p.add_argument("--php", default="php")
    p.add_argument("--parallel", type=int, default=10)
    args = p.parse_args(argv)
    hosts = [line.split() for line in open(args.hosts_file) if line.strip()]

    def one(h):
        address, port, path, pidfile, url = h
        try:
            deploy(args, address, int(port), path, pidfile, url)
            return None
        except Exception as exc:  # noqa: BLE001 - reported per host below
            return f"{address}:{port}: {type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, min(args.parallel, len(hosts)))) as pool:
        failures = [f for f in pool.map(one, hosts) if f]
    for f in failures:
        print(f"fabric_plain: FAILED {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"fabric_plain: {args.release} deployed to {len(hosts)} host(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
