#!/bin/sh
# check.sh ACTION ARGS...  --  read-only questions for `fab plan --check` (deploy/plancheck.py)
#
# Nothing here writes on the host (no file under the deploy path, no lock, nothing installed):
# the one exception is the pool check's inline programs, which live in a private temp dir
# (mktemp -d) for the one request and are removed at once. Every action prints tagged lines and
# exits 0, so one answer never hides the next one in the same session.
#
#   env DEPLOY_PATH PHP
#       USER <login user>
#       PATH exists|missing
#       WRITABLE yes|no <dir>        the deploy path, or its nearest existing parent
#       META yes|no|missing          <deploy path>/.deploy writable by this user
#       PHP <version>|missing        PHP's command-line binary, as the inventory names it
#       RSYNC <version line>|missing
#   sudo N WORD...
#       SUDO N ok|refused <sudo's first line>   may this user run WORD... through `sudo -n`?
#   pool N PHP SOCKET SCRIPT INSTALLED SHA256 FPMCTL_TEXT FASTCGI_TEXT
#       POOL N installed|inline <fpmctl.php's JSON>
#           one FastCGI request for SCRIPT (a file that does not exist) to the pool's socket:
#           any HTTP answer (404 "Primary script unknown") proves a worker answered. Through the
#           installed fpmctl.php when it is the tool's own (its sha256), else the same program
#           and its FastCGI client (fastcgi.php, which it loads from its own directory) from a
#           temp dir removed right after: nothing is installed, no probe file is written.
set -u
action=${1:-}
case "$action" in
env)
    root=$2 php=$3
    echo "USER $(id -un 2>/dev/null || id -u)"
    d=$root
    if [ -d "$root" ]; then
        echo "PATH exists"
    else
        echo "PATH missing"
        while [ ! -d "$d" ] && [ "$d" != / ]; do d=$(dirname -- "$d"); done
    fi
    if [ -w "$d" ]; then printf 'WRITABLE yes %s\n' "$d"; else printf 'WRITABLE no %s\n' "$d"; fi
    if [ ! -d "$root/.deploy" ]; then echo "META missing"
    elif [ -w "$root/.deploy" ]; then echo "META yes"
    else echo "META no"; fi
    if v=$("$php" -r 'echo PHP_VERSION;' 2>/dev/null) && [ -n "$v" ]; then printf 'PHP %s\n' "$v"; else echo "PHP missing"; fi
    v=$(rsync --version 2>/dev/null | head -n 1)
    if [ -n "$v" ]; then printf 'RSYNC %s\n' "$v"; else echo "RSYNC missing"; fi
    ;;
sudo)
    n=$2
    shift 2
    if msg=$(sudo -n -l -- "$@" 2>&1); then
        echo "SUDO $n ok"
    else
        printf 'SUDO %s refused %s\n' "$n" "$(printf '%s\n' "$msg" | head -n 1)"
    fi
    ;;
pool)
    n=$2 php=$3 socket=$4 script=$5 installed=$6 sum=$7 text=$8 client=$9
    have=
    [ -f "$installed" ] && have=$(sha256sum < "$installed" 2>/dev/null | cut -d' ' -f1)
    if [ "$have" = "$sum" ]; then
        out=$("$php" "$installed" request --socket="$socket" --script="$script" --timeout=5 2>/dev/null)
        via=installed
    elif tmp=$(mktemp -d 2>/dev/null); then
        printf '%s' "$text" > "$tmp/fpmctl.php"
        printf '%s' "$client" > "$tmp/fastcgi.php"
        out=$("$php" "$tmp/fpmctl.php" request --socket="$socket" --script="$script" --timeout=5 2>/dev/null)
        rm -rf "$tmp"
        via=inline
    else
        out='{"ok": false, "error": "mktemp -d failed: no temp dir for fpmctl.php"}'
        via=inline
    fi
    # printf, not echo: dash's echo would turn the JSON's \n escapes into newlines.
    printf 'POOL %s %s %s\n' "$n" "$via" "$(printf '%s' "$out" | tr '\n' ' ')"
    ;;
*)
    echo "check.sh: unknown action '$action'" >&2
    ;;
esac
exit 0
