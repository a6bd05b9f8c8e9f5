#!/bin/sh
# vendor.sh: get vendor/ ready in a new release before `composer install` runs there.
#
# usage: vendor.sh LIVE_DIR NEW_DIR hardlink|copy|none
#
#   LIVE_DIR  the live release (<deploy_path>/current); may not exist yet (first deploy)
#   NEW_DIR   the release being built; the same directory as LIVE_DIR in place
#   mode      hardlink: reuse the live vendor/ as hard links, with vendor/composer/ and the
#             files directly in vendor/ (autoload.php) copied; copy: a full copy;
#             none: never reuse (composer installs from scratch)
#
# vendor/ is reused only when NEW_DIR/composer.lock is byte for byte the live one. composer
# then runs anyway (it checks composer.json and rewrites the autoloader), so what it writes
# must never be a file shared with the live release: composer rewrites vendor/autoload.php and
# vendor/composer/*.php IN PLACE (it does not write a new file and rename it), and through a
# hard link that would change the live release. Those files are therefore always made the new
# release's own, also when vendor/ came with the source (sync hard-links unchanged files from
# the live release) and in place (where the live tree's files are shared with the snapshot).
#
# Prints one line saying what it did. Exit 0, or 1 when a copy failed (nothing half-made is
# left under NEW_DIR/vendor), 2 on bad usage.
set -u

die() { echo "vendor.sh: $*" >&2; exit 2; }
[ $# -eq 3 ] || die "usage: vendor.sh LIVE_DIR NEW_DIR hardlink|copy|none"
live=$1 new=$2 mode=$3
case $mode in hardlink|copy|none) ;; *) die "unknown mode '$mode' (hardlink, copy or none)";; esac
[ -d "$new" ] || die "no release directory $new"

# Give every file composer rewrites in place an inode of its own (copy, then rename over: a
# process reading the old name sees the old or the new file, never half of one). Only files
# that are hard links (more than one name) need it.
unshare() {
    vendor=$1 list="$new/.vendor-unshare.$$" unshared=0 failed=0
    {
        find "$vendor" -maxdepth 1 -type f -links +1
        [ ! -d "$vendor/composer" ] || find "$vendor/composer" -type f -links +1
    } >"$list" || { rm -f "$list"; return 1; }
    while IFS= read -r f; do
        if cp -p "$f" "$f.unshare.$$" && mv -f "$f.unshare.$$" "$f"; then
            unshared=$((unshared + 1))
        else
            rm -f "$f.unshare.$$"
            failed=1
            break
        fi
    done <"$list"
    rm -f "$list"
    return $failed
}

if [ -d "$new/vendor" ] && [ ! -L "$new/vendor" ]; then
    unshare "$new/vendor" || { echo "vendor.sh: could not copy the files composer rewrites in $new/vendor" >&2; exit 1; }
    echo "vendor/ is already in the release: $unshared shared file(s) composer rewrites made its own copies"
    exit 0
fi
if [ "$mode" = none ]; then
    echo "reuse_vendor is off: composer installs vendor/ from scratch"
    exit 0
fi
if [ ! -d "$live/vendor" ]; then
    echo "no live vendor/ to reuse: composer installs vendor/ from scratch"
    exit 0
fi
if [ ! -f "$new/composer.lock" ] || [ ! -f "$live/composer.lock" ] || ! cmp -s "$live/composer.lock" "$new/composer.lock"; then
    echo "composer.lock differs from the live release's: composer installs vendor/ from scratch"
    exit 0
fi

tmp="$new/.vendor.tmp.$$"
rm -rf "$tmp"
if [ "$mode" = hardlink ]; then
    cp -al "$live/vendor" "$tmp" && unshare "$tmp"
else
    cp -a "$live/vendor" "$tmp"
fi || { rm -rf "$tmp"; echo "vendor.sh: could not copy $live/vendor" >&2; exit 1; }
mv "$tmp" "$new/vendor" || { rm -rf "$tmp"; exit 1; }
files=$(find "$new/vendor" -type f | wc -l | tr -d ' ')
if [ "$mode" = hardlink ]; then
    echo "composer.lock unchanged: reused the live vendor/ ($files files, hard links; $unshared file(s) composer rewrites copied)"
else
    echo "composer.lock unchanged: reused the live vendor/ ($files files, copied)"
fi
