#!/bin/sh
# snapshot.sh take DEPLOY_PATH            in place: hard-link snapshot of the live tree
# snapshot.sh restore DEPLOY_PATH ID      in place: put snapshot ID back into the live tree
#
# The snapshot hard-links every file (cheap), except bootstrap/cache/*.php, which artisan
# rewrites in place (a hard link would change the snapshot too). sync replaces changed files
# by rename, so the snapshot keeps the old content. The tool's own dir, storage/ and .env
# belong to the host, not to a version: never in a snapshot, never touched by a restore.
set -u
action=$1 root=$2
snaps=$root/.deploy/snapshots
case $action in
take)
    if [ ! -f "$root/RELEASE" ]; then
        echo 'nothing live yet: no snapshot'
        exit 0
    fi
    prev=$(cat "$root/RELEASE")
    case $prev in ''|*[!A-Za-z0-9._-]*) prev=unknown ;; esac
    tmp=$snaps/.tmp
    mkdir -p "$snaps"
    rm -rf "$tmp"
    rsync -a --link-dest="$root/" --exclude=/.deploy --exclude=/storage --exclude=/.env \
        --exclude='/bootstrap/cache/*.php' "$root/" "$tmp/" || exit 1
    mkdir -p "$tmp/bootstrap/cache"
    for f in "$root"/bootstrap/cache/*.php; do
        [ -e "$f" ] && cp -p "$f" "$tmp/bootstrap/cache/"
    done
    rm -rf "${snaps:?}/$prev" && mv "$tmp" "$snaps/$prev" && echo "snapshot of $prev taken"
    ;;
restore)
    id=$3
    test -f "$snaps/$id/RELEASE" || { echo "no complete snapshot $id"; exit 1; }
    # --checksum: a file changed in the same second and to the same size must still go back.
    rsync -a --checksum --delete --exclude=/.deploy --exclude=/storage --exclude=/.env "$snaps/$id/" "$root/"
    ;;
*)
    echo "snapshot.sh: unknown action $action" >&2
    exit 2
    ;;
esac
