#!/bin/sh
# prune.sh releases DEPLOY_PATH KEEP     keep the KEEP newest releases
# prune.sh snapshots DEPLOY_PATH KEEP    in place: keep the KEEP-1 newest snapshots
#
# Most recently live first (the mtime of each release's RELEASE file, written whenever it is
# made live; a build that never went live: its dir's), as state.sh lists them. Never the live
# release, and always the newest good (not marked bad) release besides it: the rollback target.
set -u
mode=$1 root=$2 keep=$3
case $mode in
releases)
    cd "$root/releases" || exit 0
    cur=$(readlink "$root/current" 2>/dev/null)
    cur=${cur##*/}
    n=0 good=
    for r in *; do
        [ -d "$r" ] || continue
        if [ -f "$r/RELEASE" ]; then t=$(stat -c %Y "$r/RELEASE"); else t=$(stat -c %Y "$r"); fi
        echo "$t $r"
    done | sort -rn -k1,1 | while read -r _ r; do
        [ "$r" = "$cur" ] && continue
        n=$((n + 1))
        if [ "$n" -lt "$keep" ]; then
            [ -e "$root/.deploy/bad/$r" ] || good=1
            continue
        fi
        if [ -z "$good" ] && [ ! -e "$root/.deploy/bad/$r" ]; then
            good=1
            continue
        fi
        rm -rf -- "$r" && rm -f -- "$root/.deploy/bad/$r" "$root/.deploy/manifests/$r" && echo "pruned $r"
    done
    ;;
snapshots)
    # The live tree counts as one version.
    cd "$root/.deploy/snapshots" 2>/dev/null || exit 0
    n=0
    # shellcheck disable=SC2012
    ls -1t | while IFS= read -r r; do
        n=$((n + 1))
        if [ "$n" -ge "$keep" ]; then
            rm -rf -- "$r" && echo "pruned snapshot $r"
        fi
    done
    ;;
*)
    echo "prune.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
