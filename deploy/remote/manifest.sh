#!/bin/sh
# manifest.sh record DEPLOY_PATH ID   once a release is verified: remember its files
# manifest.sh check DEPLOY_PATH ID    before switching back to it: are they still there?
#
# The manifest is the sha256 of the sorted list of (size, path) of the release's files, with
# their count, in .deploy/manifests/ID. bootstrap/cache (rebuilt in place by artisan and by
# healing) and the shared links are left out. A release whose code was deleted or changed on
# disk after it went live fails the check, so a rollback never switches to a gutted release.
# check exits 0 when the files match or the release has no manifest (deployed before
# manifests existed: said so), 1 when they differ.
set -u
action=$1 root=$2 id=$3
dir=$root/releases/$id
store=$root/.deploy/manifests
files() {
    (cd "$dir" && find . -path ./bootstrap/cache -prune -o -path ./storage -prune -o -type f -printf '%s %p\n' \
        | LC_ALL=C sort)
}
summary() {
    list=$(files) || return 1
    printf '%s %s\n' "$(printf '%s\n' "$list" | sha256sum | cut -d' ' -f1)" "$(printf '%s\n' "$list" | grep -c .)"
}
case $action in
record)
    mkdir -p "$store" && summary > "$store/$id.tmp" && mv -f "$store/$id.tmp" "$store/$id"
    ;;
check)
    if [ ! -d "$dir" ]; then
        echo "release $id is not on the host"
        exit 1
    fi
    if [ ! -f "$store/$id" ]; then
        echo "release $id has no manifest (deployed before manifests were kept): not checked"
        exit 0
    fi
    read -r want_sum want_count < "$store/$id"
    now=$(summary)
    if [ "${now%% *}" != "$want_sum" ]; then
        echo "release $id changed on disk since it was verified: $want_count files then, ${now##* } now"
        exit 1
    fi
    echo "release $id: the $want_count files it was verified with are all there"
    ;;
*)
    echo "manifest.sh: unknown action $action" >&2
    exit 2
    ;;
esac
