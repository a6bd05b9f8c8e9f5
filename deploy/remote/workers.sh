#!/bin/sh
# workers.sh: prove that every long-running worker of an app runs the live release.
#
# usage: workers.sh [--wait SECONDS] [--expect N] [--pattern ERE] [--kill] DEPLOY_PATH LIVE_DIR SWITCHED_AT
#
#   DEPLOY_PATH  the app's deploy path (/var/www/app)
#   LIVE_DIR     the release that must be live (/var/www/app/current, or releases/<id>);
#                symlinks are resolved
#   SWITCHED_AT  when the switch happened, epoch seconds (decimals allowed: `date +%s.%N`), or
#                `current`: the mtime of DEPLOY_PATH/current (the symlink itself), or in place
#                of DEPLOY_PATH/RELEASE
#   --pattern    an extended regular expression matched against the whole command line
#                (arguments joined by spaces) instead of the default: processes whose
#                arguments are `<script>/artisan queue:work|horizon|schedule:work` with the
#                artisan script under DEPLOY_PATH (a relative script is taken from the
#                process's working directory)
#   --expect N   at least N matching processes must be proven (default 1; 0 allows none)
#   --wait S     check again every half second until everything is proven or S seconds
#                have passed (processes being restarted may take a moment)
#   --kill       when --wait runs out with processes still old or stale, restart them harder:
#                SIGTERM to each (its supervisor starts a new one) and wait again as long; those
#                still there then get SIGKILL (a worker stuck in a job, ignoring SIGTERM), and a
#                last wait
#
# For each matching process one line, tab-separated fields:
#
#   STATUS  pid=PID  started=EPOCH  cwd=DIR  release=DIR  [why=TEXT]  cmd=COMMAND LINE
#
# STATUS is `ok` (started at or after SWITCHED_AT, working directory inside LIVE_DIR), `old`
# (started before the switch), `stale` (runs another release, or one that was deleted), or
# `unknown` (its working directory cannot be read: never counted as ok). Then one summary
# line. Exit 0 only when every matching process is ok and there are at least N of them;
# 1 otherwise (each offender is named above); 2 on bad usage.
#
# How: a process's start time is /proc/PID/stat's starttime (clock ticks after boot) plus the
# boot time (now minus /proc/uptime), both in hundredths of a second: a process started within
# a few hundredths of a second after the switch may be reported `old`. The release a process runs
# is its working directory, /proc/PID/cwd, which the kernel keeps resolved: a worker started
# in `current` (supervisor's `directory=`) stays in the release `current` pointed to then,
# whatever `current` points to now; PHP resolves the artisan script's path the same way.
# Reading another user's /proc/PID/cwd needs root (or that user). When it cannot be read, a
# process still counts as `ok` if it started after the switch and its artisan script is an
# absolute path through DEPLOY_PATH/current (or inside the live release): the kernel resolved
# `current` when it started, after the switch. Otherwise it is `unknown`, never `ok`.
set -u

usage() { echo "usage: workers.sh [--wait SECONDS] [--expect N] [--pattern ERE] [--kill] DEPLOY_PATH LIVE_DIR SWITCHED_AT" >&2; exit 2; }
number() { case $1 in ''|*[!0-9.]*|*.*.*) return 1;; esac; }

wait_s=0 expect=1 pattern='' kill='' stable=''
while [ $# -gt 0 ]; do
    case $1 in
        --kill) kill=1; shift;;
        --wait) [ $# -ge 2 ] || usage; number "$2" || usage; wait_s=$2; shift 2;;
        --expect) [ $# -ge 2 ] || usage; case $2 in ''|*[!0-9]*) usage;; esac; expect=$2; shift 2;;
        --pattern) [ $# -ge 2 ] || usage; pattern=$2; shift 2;;
        --) shift; break;;
        -*) usage;;
        *) break;;
    esac
done
[ $# -eq 3 ] || usage
deploy=${1%/} live=$2 switched=$3
if [ "$switched" = current ]; then
    if [ -L "$deploy/current" ]; then
        switched=$(stat -c %.9Y "$deploy/current" 2>/dev/null)
    else
        switched=$(stat -c %.9Y "$deploy/RELEASE" 2>/dev/null)
    fi
fi
number "$switched" || { echo "workers.sh: SWITCHED_AT must be epoch seconds, got '$switched'" >&2; exit 2; }
deploy_phys=$(cd "$deploy" 2>/dev/null && pwd -P) || { echo "workers.sh: no deploy path $deploy" >&2; exit 2; }
live_phys=$(cd "$live" 2>/dev/null && pwd -P) || { echo "workers.sh: the live release $live does not exist" >&2; exit 2; }
hz=$(getconf CLK_TCK 2>/dev/null) || hz=100

# Never look at ourselves or the shells that started us (a --pattern may be in their argv).
skip=" $$ "
p=$$
while [ "$p" -gt 1 ] 2>/dev/null; do
    p=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f2) || break
    skip="$skip$p "
done

# True when PID is one of our own subshells (a command substitution forks a copy of us).
ours() {
    q=$1
    while [ "$q" -gt 1 ] 2>/dev/null; do
        [ "$q" = $$ ] && return 0
        q=$(sed 's/.*) //' "/proc/$q/stat" 2>/dev/null | cut -d' ' -f2) || return 1
    done
    return 1
}

now() {
    t=$(date +%s.%N 2>/dev/null)
    case $t in *N*|'') date +%s;; *) echo "$t";; esac
}

# The artisan script of a command line (one argument per line on stdin) when it runs one of
# the worker commands; nothing otherwise.
artisan_script() {
    awk 'prev != "" && ($0 == "queue:work" || $0 == "horizon" || $0 == "schedule:work") { print prev; exit }
         { n = split($0, part, "/"); prev = (part[n] == "artisan") ? $0 : "" }'
}

# One check of every process: prints the lines, sets $bad and $count.
check() {
    bad=0 count=0 offenders=
    boot=$(awk -v now="$(now)" '{ printf "%.2f", now - $1; exit }' /proc/uptime)
    if [ -n "$pattern" ]; then
        candidates=$(for f in /proc/[0-9]*/cmdline; do echo "$f"; done)
    else
        # One grep over every command line: only these few are looked at closely.
        candidates=$(grep -l -a -E -e 'queue:work|horizon|schedule:work' /proc/[0-9]*/cmdline 2>/dev/null)
    fi
    for f in $candidates; do
        pid=${f#/proc/}; pid=${pid%/cmdline}
        case $skip in *" $pid "*) continue;; esac
        args=$({ tr '\0' '\n' <"$f"; } 2>/dev/null) || continue
        [ -n "$args" ] || continue   # a kernel thread, or gone
        cmd=$(printf '%s\n' "$args" | tr '\n' ' ' | sed 's/ $//')
        cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || cwd=
        if [ -n "$pattern" ]; then
            printf '%s\n' "$cmd" | grep -Eq -- "$pattern" || continue
            ! ours "$pid" || continue
        else
            script=$(printf '%s\n' "$args" | artisan_script)
            [ -n "$script" ] || continue
            case $script in
                /*) ;;
                *) if [ -z "$cwd" ]; then
                       [ -e "/proc/$pid" ] || continue
                       # relative script, unreadable cwd: cannot tell whose app it is
                       script="?/$script"
                   else
                       script="$cwd/$script"
                   fi;;
            esac
            case $script in
                "$deploy"/*|"$deploy_phys"/*|\?/*) ;;
                *) continue;;
            esac
        fi
        started=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | awk -v boot="$boot" -v hz="$hz" '{ printf "%.2f", boot + $20 / hz }') || continue
        [ -n "$started" ] || continue
        count=$((count + 1))
        release='' why=''
        if [ -z "$cwd" ]; then
            after=
            awk -v a="$started" -v b="$switched" 'BEGIN { exit !(a + 0 >= b + 0) }' && after=1
            case ${script:-} in
                "$deploy"/current/*|"$live_phys"/*) through=1;;
                *) through=;;
            esac
            if [ -n "$after" ] && [ -n "$through" ]; then
                status=ok release=$live_phys why="cwd unreadable; started after the switch, through $script"
            else
                status=unknown why="cannot read /proc/$pid/cwd (run as root or as the process's user)"
            fi
        else
            case $cwd in
                *" (deleted)") release=${cwd% (deleted)}
                               status=stale why="its working directory was deleted (a removed release)";;
                "$live_phys"|"$live_phys"/*) release=$live_phys;;
                "$deploy_phys"/releases/*) rest=${cwd#"$deploy_phys"/releases/}; release="$deploy_phys/releases/${rest%%/*}";;
                *) release=$cwd;;
            esac
            if [ -z "$why" ] && [ "$release" != "$live_phys" ]; then
                status=stale why="runs $release, not the live $live_phys"
            elif [ -z "$why" ] && awk -v a="$started" -v b="$switched" 'BEGIN { exit !(a + 0 < b + 0) }'; then
                status=old why="started at $started, before the switch at $switched"
            elif [ -z "$why" ]; then
                status=ok
            fi
        fi
        if [ "$status" != ok ]; then
            bad=$((bad + 1))
            case $status in old|stale) offenders="$offenders $pid";; esac
        fi
        if [ -n "$why" ]; then
            printf '%s\tpid=%s\tstarted=%s\tcwd=%s\trelease=%s\twhy=%s\tcmd=%s\n' "$status" "$pid" "$started" "$cwd" "$release" "$why" "$cmd"
        else
            printf '%s\tpid=%s\tstarted=%s\tcwd=%s\trelease=%s\tcmd=%s\n' "$status" "$pid" "$started" "$cwd" "$release" "$cmd"
        fi
    done
}

deadline=$(awk -v now="$(now)" -v w="$wait_s" 'BEGIN { printf "%.2f", now + w }')
while :; do
    out=$(check; echo "#$bad $count$offenders")
    summary=${out##*#}
    # shellcheck disable=SC2086 # numbers and pids, split on purpose
    set -- $summary
    bad=$1 count=$2
    shift 2
    offenders=$*
    out=${out%#*}
    if [ "$bad" -eq 0 ] && [ "$count" -ge "$expect" ]; then
        # Proven only when it holds on a second look a second later, with the same processes: a
        # worker that dies on boot (the new code throws) or one respawned elsewhere in between
        # must not slip through a lucky moment.
        pids=$(printf '%s' "$out" | awk -F '\t' '{ print $2 }' | sort | tr '\n' ' ')
        if [ "$pids" = "$stable" ]; then
            printf '%s' "$out"
            echo "proven: $count process(es) started at or after $switched and run $live_phys"
            exit 0
        fi
        stable=$pids
        sleep 1
        continue
    fi
    stable=''
    if awk -v now="$(now)" -v d="$deadline" 'BEGIN { exit !(now + 0 >= d + 0) }'; then
        if [ -n "$kill" ] && [ -n "$offenders" ]; then
            sig=TERM
            [ "$kill" = 2 ] && sig=KILL
            printf '%s' "$out"
            echo "restarting harder: SIG$sig to $offenders"
            # shellcheck disable=SC2086 # a list of pids
            kill -$sig $offenders 2>/dev/null || sudo -n kill -$sig $offenders 2>/dev/null
            if [ "$kill" = 1 ]; then kill=2; else kill=''; fi
            deadline=$(awk -v now="$(now)" -v w="$wait_s" 'BEGIN { printf "%.2f", now + w }')
            continue
        fi
        printf '%s' "$out"
        if [ "$bad" -gt 0 ]; then
            named=$(printf '%s' "$out" | awk -F '\t' '$1 != "ok" && $1 != "" { printf "%s%s %s (%s, %s)", (n++ ? "; " : ""), $2, $7, $1, $5 }')
            echo "NOT proven: $bad of $count process(es) do not run $live_phys started after $switched: $named"
        else
            echo "NOT proven: $count matching process(es), expected at least $expect"
        fi
        exit 1
    fi
    sleep 0.5 2>/dev/null || sleep 1
done
