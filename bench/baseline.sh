#!/usr/bin/env bash
# bench/baseline.sh - the tool's default pipeline (playbooks/laravel.yml), written by hand for
# ONE host over ONE multiplexed OpenSSH connection. It is the yardstick of bench/bench.py:
# the same steps, the same commands on the host, no framework.
#
#   bench/baseline.sh --host 127.0.0.1 --port 2601 --path /srv/labbench/lab1/app \
#       --socket /srv/labbench/lab1/php-fpm.sock --pid-file /srv/labbench/lab1/fpm.pid \
#       --health-url http://127.0.0.1:8601/version --release r42 --source sample-app \
#       --key /srv/labbench/ssh/id_ed25519 --known-hosts /srv/labbench/ssh/known_hosts
#
# Optional: --user root (default), --web-user www-data, --keep 5, --php php,
#           --remote deploy/remote (the tool's pool programs: fpmctl.php, fastcgi.php, probe.php).
#
# Sessions on the host (each one pays the login shell's start-up):
#   1. prepare: layout, lock (mkdir), read current, drop a leftover build, upload the pool programs (a tar on stdin)
#   -  rsync --link-dest=current/ over the same control connection
#   2. build:   shared links, ACLs, the four artisan cache commands one by one
#   3. go live: RELEASE + atomic switch, OPCache reset in the pool, FPM reload + wait, HTTP check
#               of /version, the pool's own check (fpmctl verify), prune, history line, unlock
# A failure in 1-2 removes the half-built release and unlocks; a failure in 3 exits non-zero and
# leaves the lock (a human looks; the tool would roll back, this script does not).
# The remote scripts are built here on purpose: values are quoted with q() before they go.
# shellcheck disable=SC2029
set -euo pipefail

user=root web_user=www-data keep=5 php=php
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
remote_dir="$here/../deploy/remote"
host='' port=22 path='' socket='' pidfile='' url='' release='' source='' key='' known_hosts=''

while [ $# -gt 0 ]; do
    case $1 in
        --host) host=$2 ;; --port) port=$2 ;; --user) user=$2 ;; --path) path=$2 ;;
        --socket) socket=$2 ;; --pid-file) pidfile=$2 ;; --health-url) url=$2 ;;
        --release) release=$2 ;; --source) source=$2 ;; --key) key=$2 ;;
        --known-hosts) known_hosts=$2 ;; --web-user) web_user=$2 ;; --keep) keep=$2 ;;
        --php) php=$2 ;; --remote) remote_dir=$2 ;;
        *) echo "baseline.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in host path socket pidfile url release source key known_hosts; do
    [ -n "${!v}" ] || { echo "baseline.sh: --${v//_/-} is required" >&2; exit 2; }
done

q() { printf '%q' "$1"; }   # quote a value for the remote shell
log() { printf '%s %s:%s %s\n' "$(date +%T.%3N)" "$host" "$port" "$*" >&2; }
log "start $release"

cm_dir=$(mktemp -d /tmp/baseline-cm.XXXXXX)
ctl="$cm_dir/cm"
ssh_opts=(-p "$port" -i "$key" -o IdentitiesOnly=yes -o BatchMode=yes
          -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known_hosts" -o ConnectTimeout=10
          -o ControlMaster=auto -o "ControlPath=$ctl" -o ControlPersist=60)
target="$user@$host"
cleanup() { ssh "${ssh_opts[@]}" -O exit "$target" 2>/dev/null || true; rm -rf "$cm_dir"; }
trap cleanup EXIT

# The one TCP/SSH connection: a master with no session; every ssh and rsync below rides on it.
ssh "${ssh_opts[@]}" -fN "$target"
log "connected"

R=$(q "$path") REL=$(q "$release") RD=$(q "$path/releases/$release")
token="$(id -un)@$(hostname):$$"

# ---- 1. prepare (the pool programs come in on stdin, as a tar)
previous=$(ssh "${ssh_opts[@]}" "$target" "
set -e
mkdir -p $R/releases $R/shared $R/.deploy/bad $R/.deploy/bin && chmod 0755 $R/.deploy
if ! mkdir $R/.deploy/lock 2>/dev/null; then echo LOCKED >&2; cat $R/.deploy/lock/info >&2; exit 75; fi
{ printf '%s\n' $(q "$token $release"); date -u +%Y-%m-%dT%H:%M:%SZ; } > $R/.deploy/lock/info
[ \"\$(readlink $R/current || true)\" = releases/$REL ] && { echo 'release is already live' >&2; rm -rf $R/.deploy/lock; exit 76; }
rm -rf $RD $R/.deploy/bad/$REL
tar -C $R/.deploy/bin -xf - >/dev/null
readlink $R/current || true
" < <(tar -C "$remote_dir" -cf - fpmctl.php fastcgi.php probe.php))
log "prepare ok (previous: ${previous:-none})"

discard() {
    log "FAILED before the switch: removing $release, unlocking"
    ssh "${ssh_opts[@]}" "$target" "rm -rf $RD $R/.deploy/lock" || true
    exit 1
}

# ---- sync: same flags and excludes as deploy/steps/sync.py, over the control connection
rsync --archive --no-owner --no-group --delete --secluded-args --stats --chmod=go-w,Dgo+rx,Fgo+r \
    --link-dest="$path/current/" \
    --exclude=/RELEASE --exclude='/bootstrap/cache/*.php' --exclude=.git --exclude=node_modules \
    --exclude=/.env --exclude='/storage/logs/*.log' \
    -e "ssh ${ssh_opts[*]}" "${source%/}/" "$target:$path/releases/$release/" >/dev/null || discard
log "sync ok"

# ---- 2. build
ssh "${ssh_opts[@]}" "$target" "
set -e
if [ ! -e $R/shared/storage ]; then if [ -d $RD/storage ]; then cp -a $RD/storage $R/shared/storage; else mkdir -p $R/shared/storage; fi; fi
rm -rf $RD/storage && ln -s $R/shared/storage $RD/storage
if [ ! -e $R/shared/.env ]; then if [ -f $RD/.env ]; then cp -p $RD/.env $R/shared/.env; else touch $R/shared/.env; fi; chmod 0640 $R/shared/.env; fi
rm -rf $RD/.env && ln -s $R/shared/.env $RD/.env
mkdir -p $RD/storage $RD/bootstrap/cache
setfacl -L -R -m u:$web_user:rwX,d:u:$web_user:rwX $RD/storage $RD/bootstrap/cache
setfacl -m u:$web_user:r $R/shared/.env
cd $RD
for c in config:cache route:cache view:cache event:cache; do $php artisan \$c --no-interaction >/dev/null; done
" || discard
log "build ok"

# ---- 3. go live
ssh "${ssh_opts[@]}" "$target" "
set -e
printf '%s\n' $REL > $RD/RELEASE && ln -sfn releases/$REL $R/.current.tmp && mv -fT $R/.current.tmp $R/current
$php $R/.deploy/bin/fpmctl.php reset --socket=$(q "$socket") --deploy-path=$R >/dev/null
kill -USR2 \"\$(cat $(q "$pidfile"))\"
$php $R/.deploy/bin/fpmctl.php wait --socket=$(q "$socket") --deploy-path=$R --timeout=30 >/dev/null
i=0
until [ \"\$(curl -sS --max-time 5 $(q "$url") 2>/dev/null)\" = $REL ] || { i=\$((i+1)); [ \$i -ge 40 ]; }; do sleep 0.5; done
[ \$i -lt 40 ] || { echo 'verify failed' >&2; exit 1; }
$php $R/.deploy/bin/fpmctl.php verify --socket=$(q "$socket") --deploy-path=$R --release=$REL >/dev/null
cd $R/releases
ls -1t | grep -vxF $REL | tail -n +$keep | while IFS= read -r r; do rm -rf -- \"\$r\" $R/.deploy/bad/\"\$r\"; done
printf '{\"time\": \"%s\", \"action\": \"deploy\", \"release\": \"%s\", \"state\": \"deployed\", \"by\": \"%s\"}\n' \
    \"\$(date -u +%Y-%m-%dT%H:%M:%SZ)\" $REL $(q "$token") >> $R/.deploy/history.jsonl
rm -rf $R/.deploy/lock
"
log "deployed $release"
