#!/bin/sh
# state.sh DEPLOY_PATH releases|in-place
#
# What is on the host, one tagged line each (parsed by deploy/operations/state.py):
#   NOPATH                         the deploy path does not exist
#   CURRENT <link or id>           releases: what current points to; in place: the RELEASE file
#   RELEASE <id> <mtime> complete|incomplete   newest first (in place: the snapshots)
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
    dir=releases
fi
# shellcheck disable=SC2012 # newest first by mtime: only ls sorts so
ls -1t "$dir" 2>/dev/null | while IFS= read -r r; do
    if [ -f "$dir/$r/RELEASE" ]; then done=complete; else done=incomplete; fi
    echo "RELEASE $r $(stat -c %Y "$dir/$r") $done"
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
