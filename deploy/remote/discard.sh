#!/bin/sh
# discard.sh DEPLOY_PATH RELEASE
#
# Remove a half-built release. The host decides, here: a release that current points to is
# never removed, whatever the tool believes happened (a session cut off after the switch).
# Exit 77 (and nothing removed) when RELEASE is live.
set -u
root=$1 release=$2
if [ "$(readlink "$root/current" 2>/dev/null)" = "releases/$release" ]; then
    echo "release $release is live: not removed"
    exit 77
fi
rm -rf -- "$root/releases/$release"
