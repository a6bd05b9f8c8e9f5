#!/bin/sh
# keep_assets.sh DEPLOY_PATH RELEASE DIR...
#
# Right after sync: the files under each DIR (e.g. public/build) of the live release that the
# new release lacks are hard-linked into it, so a page rendered by the live release just
# before the switch still loads its assets (app.<old hash>.js) after it. A file the new
# release has is never touched.
#
# One release back only: the files kept this way are listed in the new release's
# .kept-assets, and a file the live release itself only kept from an older one is not kept
# again, so old assets do not pile up from release to release.
#
# Exit 0 (also with no live release: nothing to keep); 1 when a file could not be kept.
set -u
root=$1 release=$2
shift 2
new=$root/releases/$release
list=$new/.kept-assets
link=$(readlink "$root/current" 2>/dev/null) || { echo "no live release: no assets to keep"; exit 0; }
old=$root/$link
if [ "$link" = "releases/$release" ] || [ ! -d "$old" ]; then
    echo "no other live release: no assets to keep"
    exit 0
fi
: > "$list.tmp" || exit 1
for dir in "$@"; do
    [ -d "$old/$dir" ] || continue
    (cd "$old" && find "$dir" -type f) | while IFS= read -r f; do
        if [ -e "$new/$f" ] || [ -L "$new/$f" ]; then
            continue
        fi
        if [ -f "$old/.kept-assets" ] && grep -qxF -- "$f" "$old/.kept-assets"; then
            continue
        fi
        mkdir -p "$new/${f%/*}" || exit 1
        # A hard link costs no space; another filesystem (or protected_hardlinks) falls back to a copy.
        ln "$old/$f" "$new/$f" 2>/dev/null || cp -p "$old/$f" "$new/$f" || exit 1
        printf '%s\n' "$f" >> "$list.tmp"
    done || exit 1
done
n=$(grep -c . "$list.tmp")
if [ "$n" -eq 0 ]; then
    rm -f "$list.tmp"
else
    mv -f "$list.tmp" "$list"
fi
echo "kept $n file(s) of ${link##*/} that $release lacks, under: $*"
