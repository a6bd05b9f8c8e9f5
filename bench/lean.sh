#!/usr/bin/env bash
# bench/lean.sh - the leanest correct hand-written deploy of a Laravel release to many hosts:
# what an engineer writes when speed is all that matters. It is the yardstick of bench/bench.py
# ("lean"); bench/baseline.sh is the other one, doing the tool's extra work too.
#
#   bench/lean.sh --hosts-file HOSTS --release r42 --source DIR \
#       --key /srv/lab/ssh/id_ed25519 --known-hosts /srv/lab/ssh/known_hosts [--parallel 10]
#
# HOSTS has one line per host, fields separated by spaces:
#   ADDRESS PORT DEPLOY_PATH FPM_PID_FILE HEALTH_URL
# Optional: --user root (default), --web-user www-data, --keep 5, --php php.
#
# Per host, ONE SSH connection (an OpenSSH ControlMaster) and two sessions on it:
#   1. rsync --link-dest=current/ into releases/<id> (its remote side creates releases/ first)
#   2. one script: shared storage/ and .env links, ACLs (shared storage only when it lacks
#      them, bootstrap/cache every time), the four artisan cache commands one by one (each
#      exit code checked), RELEASE, atomic switch of current, FPM reload (a graceful reload
#      clears OPCache), curl of the health URL until it answers the new release id, prune.
# No lock, no history, no pool probe, no rollback: a failure before the switch removes the
# half-built release; a failure after it exits non-zero and leaves the host for a human.
# Hosts run in parallel (at most --parallel at once); exit 1 if any host failed.
# The remote scripts are built here on purpose: values are quoted with q() before they go.
# shellcheck disable=SC2029
set -euo pipefail

user=root web_user=www-data keep=5 php=php parallel=10
hosts_file='' release='' source='' key='' known_hosts=''

while [ $# -gt 0 ]; do
    case $1 in
        --hosts-file) hosts_file=$2 ;; --release) release=$2 ;; --source) source=$2 ;;
        --key) key=$2 ;; --known-hosts) known_hosts=$2 ;; --user) user=$2 ;;
        --web-user) web_user=$2 ;; --keep) keep=$2 ;; --php) php=$2 ;; --parallel) parallel=$2 ;;
        *) echo "lean.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift 2
done
for v in hosts_file release source key known_hosts; do
    [ -n "${!v}" ] || { echo "lean.sh: --${v//_/-} is required" >&2; exit 2; }
done

q() { printf '%q' "$1"; }   # quote a value for the remote shell
work=$(mktemp -d /tmp/lean.XXXXXX)
trap 'rm -rf "$work"' EXIT

deploy_host() {   # ADDRESS PORT DEPLOY_PATH FPM_PID_FILE HEALTH_URL
    local host=$1 port=$2 path=$3 pidfile=$4 url=$5
    local ctl="$work/cm-$host-$port" target="$user@$host"
    local ssh_opts=(-p "$port" -i "$key" -o IdentitiesOnly=yes -o BatchMode=yes
                    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known_hosts"
                    -o ConnectTimeout=10 -o "ControlPath=$ctl")
    ssh "${ssh_opts[@]}" -o ControlMaster=yes -o ControlPersist=yes -fN "$target"
    # shellcheck disable=SC2064  # expand now: the values are this host's
    trap "ssh ${ssh_opts[*]} -O exit $target 2>/dev/null || true" EXIT

    local P R REL
    P=$(q "$path") R=$(q "$path/releases/$release") REL=$(q "$release")
    rsync --archive --no-owner --no-group --delete --chmod=go-w,Dgo+rx,Fgo+r \
        --link-dest="$path/current/" \
        --exclude=/RELEASE --exclude='/bootstrap/cache/*.php' --exclude=.git --exclude=node_modules \
        --exclude=/.env --exclude='/storage/logs/*.log' \
        --rsync-path="mkdir -p $P/releases && rsync" \
        -e "ssh ${ssh_opts[*]}" "${source%/}/" "$target:$path/releases/$release/"

    ssh "${ssh_opts[@]}" "$target" "
set -e
trap 'rm -rf $R' EXIT
if [ ! -e $P/shared/storage ]; then mkdir -p $P/shared && cp -a $R/storage $P/shared/storage; fi
getfacl -p $P/shared/storage 2>/dev/null | grep -q '^default:user:$web_user:rwx' \
    || setfacl -R -m u:$web_user:rwX,d:u:$web_user:rwX $P/shared/storage
if [ ! -e $P/shared/.env ]; then touch $P/shared/.env && chmod 0640 $P/shared/.env && setfacl -m u:$web_user:r $P/shared/.env; fi
rm -rf $R/storage $R/.env && ln -s $P/shared/storage $R/storage && ln -s $P/shared/.env $R/.env
mkdir -p $R/bootstrap/cache && setfacl -R -m u:$web_user:rwX,d:u:$web_user:rwX $R/bootstrap/cache
cd $R
$php artisan config:cache --no-interaction >/dev/null
$php artisan route:cache --no-interaction >/dev/null
$php artisan view:cache --no-interaction >/dev/null
$php artisan event:cache --no-interaction >/dev/null
printf '%s\n' $REL > RELEASE
ln -sfn releases/$REL $P/.current.tmp && mv -fT $P/.current.tmp $P/current
trap - EXIT
kill -USR2 \"\$(cat $(q "$pidfile"))\"
i=0
until [ \"\$(curl -s --max-time 5 $(q "$url"))\" = $REL ]; do
    i=\$((i+1)); [ \$i -lt 200 ] || { echo 'verify failed: '$(q "$url")' does not answer '$REL >&2; exit 1; }
    sleep 0.1
done
cd $P/releases && ls -1t | tail -n +$((keep + 1)) | while IFS= read -r r; do rm -rf -- \"\$r\"; done
"
}

n=0
while read -r host port path pidfile url; do
    [ -n "$host" ] || continue
    n=$((n + 1))
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
    ( deploy_host "$host" "$port" "$path" "$pidfile" "$url" > "$work/$n.log" 2>&1
      echo $? > "$work/$n.rc" ) &
    echo "$host:$port" > "$work/$n.name"
done < "$hosts_file"
wait

failed=0
for i in $(seq 1 "$n"); do
    if [ "$(cat "$work/$i.rc" 2>/dev/null)" != 0 ]; then
        failed=$((failed + 1))
        echo "lean.sh: $(cat "$work/$i.name") FAILED:" >&2
        sed 's/^/  /' "$work/$i.log" >&2
    fi
done
[ "$failed" -eq 0 ] || { echo "lean.sh: $failed of $n host(s) failed" >&2; exit 1; }
echo "lean.sh: $release deployed to $n host(s)"
