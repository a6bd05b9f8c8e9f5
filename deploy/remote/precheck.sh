#!/bin/sh
# precheck.sh DEPLOY_PATH RELEASE PHP FPMCTL SOCKET FRONT URI HOST HTTPS STATUS EXPECT TIMEOUT GRACEFUL
#
# Before the switch: the host's live PHP-FPM pool runs the NEW release's front controller
# (releases/RELEASE/FRONT, by its real path) for the health URI, with the params nginx would
# send (fpmctl.php request: DOCUMENT_ROOT, SCRIPT_NAME, REQUEST_URI, QUERY_STRING, HTTP_HOST...),
# and must answer STATUS with EXPECT in the body (empty: any body). No user request can reach
# the release meanwhile: current is not touched and the request goes to the pool's socket,
# not through nginx.
#
# The app reads its id from RELEASE, which also marks a build complete (activate writes it;
# rollback only picks releases that have it). So RELEASE exists only while the check runs,
# and a bad mark covers that window: if this program is killed before it can remove RELEASE,
# the leftover build carries a bad mark and no rollback ever picks it. Both are removed on
# every exit this program sees.
#
# GRACEFUL=1 (the pipeline always reloads PHP-FPM after the switch): the pool's master must
# also let the requests in flight finish on a reload (fpmctl.php graceful).
#
# Exit 0 passed; 1 the release does not answer as expected (or a reload would drop requests);
# 2 bad arguments; 3 the pool could not be asked.
set -u
if [ $# -ne 13 ]; then
    echo "usage: precheck.sh DEPLOY_PATH RELEASE PHP FPMCTL SOCKET FRONT URI HOST HTTPS STATUS EXPECT TIMEOUT GRACEFUL" >&2
    exit 2
fi
root=$1 release=$2 php=$3 fpmctl=$4 socket=$5 front=$6 uri=$7 host=$8 https=$9
shift 9
status=$1 expect=$2 timeout=$3 graceful=$4

dir=$root/releases/$release
if ! real=$(cd "$dir" 2>/dev/null && pwd -P); then
    echo "pre-switch check failed: release $release is not built ($dir is missing)"
    exit 1
fi
if [ ! -f "$real/$front" ]; then
    echo "pre-switch check failed: release $release has no front controller $front"
    exit 1
fi
case $front in
*/*) docroot=$real/${front%/*} ;;
*) docroot=$real ;;
esac
live=$(readlink "$root/current" 2>/dev/null) && live=${live##*/} || live=nothing
bad=$root/.deploy/bad/$release

# Only what this program wrote is removed again (a fresh build has neither).
made_release='' made_bad=''
cleanup() {
    [ -n "$made_release" ] && rm -f "$real/RELEASE"
    [ -n "$made_bad" ] && rm -f "$bad"
    return 0
}
trap cleanup EXIT
trap 'exit 3' INT TERM HUP
if [ ! -e "$real/RELEASE" ]; then
    if [ ! -e "$bad" ]; then
        mkdir -p "$root/.deploy/bad"
        printf '%s\n' "pre-switch check did not finish (interrupted deploy): never live" > "$bad"
        made_bad=1
    fi
    printf '%s\n' "$release" > "$real/RELEASE"
    made_release=1
fi

# The JSON answer goes to our stdout (the log); fpmctl's one-line reason is kept for ours.
{ said=$("$php" "$fpmctl" request --socket="$socket" --script="$real/$front" --document-root="$docroot" \
    --uri="$uri" --host="$host" --https="$https" --timeout="$timeout" --expect-status="$status" \
    --expect-body="$expect" 2>&1 1>&3); rc=$?; } 3>&1
said=${said#fpmctl: }
where="GET $uri (Host: $host) through the pool at $socket"
case $rc in
0) ;;
1)
    echo "pre-switch check failed: release $release answered $said ($where); current was not switched (still $live)"
    exit 1
    ;;
2)
    echo "pre-switch check: bad arguments to fpmctl.php: $said"
    exit 2
    ;;
*)
    echo "pre-switch check could not ask the pool: $said ($where); current was not switched (still $live)"
    exit 3
    ;;
esac

if [ "$graceful" = 1 ]; then
    { said=$("$php" "$fpmctl" graceful --socket="$socket" --deploy-path="$root" --timeout="$timeout" 2>&1 1>&3)
      rc=$?; } 3>&1
    said=${said#fpmctl: }
    if [ "$rc" -eq 1 ]; then
        echo "pre-switch check failed: the pipeline reloads PHP-FPM after the switch and $said (or use fpm_reload: {when: needed}); current was not switched (still $live)"
        exit 1
    elif [ "$rc" -ne 0 ]; then
        echo "pre-switch check could not ask the pool about reloads: $said; current was not switched (still $live)"
        exit 3
    fi
fi
body=
[ -n "$expect" ] && body=" with '$expect' in the body"
echo "pre-switch check passed: release $release answered HTTP $status$body ($where)"
