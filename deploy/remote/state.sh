#!/bin/sh
# state.sh DEPLOY_PATH releases|in-place
#
# What is on the host, one tagged line each (parsed by deploy/operations/state.py):
#   NOPATH                         the deploy path does not exist
#   CURRENT <link or id>           releases: what current points to; in place: the RELEASE file
#   NOTALINK                       releases: current is a real directory (a server laid out by hand)
#   RELEASE <id> <when> complete|incomplete   most recently live first (in place: the snapshots)
#   BAD <id> <reason>
#   LOCK <info...> AGE <seconds>s
#   HISTORY <json line>            the last 20 lines of .deploy/history.jsonl
set -u
root=$1 layout=$2
cd "$root" 2>/dev/null || { echo NOPATH; exit 0; }
if [ "$layout" = in-place ]; then
    echo "CURRENT $(cat RELEASE 2>/dev/null)"
    dir=.deploy/snapshots
else
    echo "CURRENT $(readlink current)"
    if [ -d current ] && [ ! -L current ]; then echo "NOTALINK"; fi
    dir=releases
fi
# Most recently live first: a release's RELEASE file is written each time it is made live
# (activate), so its mtime says when; a build that never went live has none (its dir's mtime).
# Not the dir's own mtime: deleting or adding a file at the top of a release changes that.
for r in "$dir"/*; do
    [ -d "$r" ] || continue
    if [ -f "$r/RELEASE" ]; then
        echo "$(stat -c %Y "$r/RELEASE") ${r##*/} complete"
    else
        echo "$(stat -c %Y "$r") ${r##*/} incomplete"
    fi
done | sort -rn -k1,1 | while read -r when id complete; do
    echo "RELEASE $id $when $complete"
done
for b in .deploy/bad/*; do
    [ -f "$b" ] || continue
    echo "BAD ${b##*/} $(head -c 200 "$b" | tr '\n' ' ')"
done
if [ -f .deploy/lock/info ]; then
    echo "LOCK $(tr '\n' ' ' < .deploy/lock/info) AGE $(( $(date +%s) - $(stat -c %Y .deploy/lock) ))s"
fi
tail -n 20 .deploy/history.jsonl 2>/dev/null | sed 's/^/HISTORY /'
exit 0
