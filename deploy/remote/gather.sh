#!/bin/sh
# gather.sh: the evidence of `fab health` on one host, in one SSH session.
#
# usage: D=... MODE=... (the variables below, exported) sh gather.sh
#
#   D         the deploy path                     MODE      in-place | releases | auto
#   WEB       the web (pool) user                 DUSER     the deploy user
#   SOCK      the pool's socket (fpm.socket)      PHP       php-cli
#   BIN       where the tool's PHP programs are installed (<D>/.deploy/bin)
#   WANT      their `sha256sum` lines as the tool has them: the pool is only asked, and the
#             programs only run, when the host's copies are exactly these
#   URL URI PORT   the health URL, its path and query, its port ('' when there is none)
#   WRITABLE  the writable dirs, relative to the release (space-separated)
#   LOGLINES  how many lines of laravel.log to read
#   ENVKEYS   the .env keys that must be set (space-separated)
#   WPATTERN  the workers' process pattern (inventory workers.processes; '' = workers.sh's own)
#   WORKERS_SH the text of workers.sh (run from here, as root when possible)
#
# It prints tagged sections, "\035S NAME EPOCH" then the section's lines (mostly
# tab-separated "tag<TAB>value..."); "\035RC n" after a program's output gives its exit code.
# The controller parses them (deploy/health/sections.py) and decides; nothing here judges.
# Read-only but for the pool probe fpmctl writes (and removes) under <D>/.deploy/probe.
#
# Root (or sudo -n) lets it test files as the web user, see which process holds the pool's
# socket, run `nginx -T` and read the workers' /proc/PID/cwd; without it those parts say so.

echo "health evidence v2"
sec() { printf '\n\035S %s %s\n' "$1" "$(date +%s.%N 2>/dev/null)"; }
rc() { printf '\n\035RC %s\n' "$1"; }
# A program that must not hang the session: at most $1 seconds (coreutils timeout, if present).
bounded() {
  __t=$1; shift
  if command -v timeout >/dev/null 2>&1; then timeout "$__t" "$@"; else "$@"; fi
}
if [ "$(id -u)" = 0 ]; then
  asroot() { "$@"; }
  asuser() { __u=$1; shift; if [ "$__u" = root ]; then "$@"; else runuser -u "$__u" -- "$@"; fi; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  asroot() { sudo -n -- "$@"; }
  asuser() { __u=$1; shift; sudo -n -u "$__u" -- "$@"; }
else
  asroot() { return 126; }
  asuser() { __u=$1; shift; if [ "$__u" = "$(id -un)" ]; then "$@"; else return 126; fi; }
fi
# Reads a .env on stdin; prints, for each of $ENVKEYS it sets, "key<TAB>NAME<TAB>set|empty".
# Values never leave awk. The first definition wins, as in Laravel's (immutable) dotenv.
env_keys() {
  awk -v keys="$ENVKEYS" '
    BEGIN { n = split(keys, k, " "); for (i = 1; i <= n; i++) want[k[i]] = 1 }
    {
      line = $0; sub(/\r$/, "", line); sub(/^[ \t]+/, "", line); sub(/^export[ \t]+/, "", line)
      eq = index(line, "="); if (eq == 0) next
      name = substr(line, 1, eq - 1); sub(/[ \t]+$/, "", name)
      if (!(name in want) || (name in seen)) next
      seen[name] = 1
      v = substr(line, eq + 1); sub(/^[ \t]+/, "", v); q = substr(v, 1, 1)
      if (q == "\"" || q == "\047") { v = substr(v, 2); e = index(v, q); if (e) v = substr(v, 1, e - 1) }
      else { sub(/(^|[ \t]+)#.*$/, "", v); sub(/[ \t]+$/, "", v) }
      printf "key\t%s\t%s\n", name, (v == "" ? "empty" : "set")
    }'
}

sec meta
printf 'user\t%s\n' "$(id -un)"
printf 'now\t%s\n' "$(date +%s)"
if asroot true 2>/dev/null; then printf 'root\tyes\n'; else printf 'root\tno\n'; fi
if asuser "$WEB" true 2>/dev/null; then printf 'web\tyes\n'; else printf 'web\tno\n'; fi

sec layout
REL=
LAYOUT=
STORAGE=
if [ -d "$D" ]; then
  printf 'deploy\tok\n'
  # MODE auto: decide from the host, as fpmctl status does (no current, a RELEASE file directly
  # under the deploy path = in place).
  LAYOUT=$MODE
  if [ "$LAYOUT" = auto ]; then
    if [ ! -e "$D/current" ] && [ ! -L "$D/current" ] && [ -f "$D/RELEASE" ]; then LAYOUT=in-place; else LAYOUT=releases; fi
  fi
  printf 'layout\t%s\nmode\t%s\n' "$LAYOUT" "$MODE"
  if [ -L "$D/current" ]; then printf 'symlink\tyes\n'; else printf 'symlink\tno\n'; fi
  if [ -e "$D/current" ] || [ -L "$D/current" ]; then printf 'current\tyes\n'; else printf 'current\tno\n'; fi
  printf 'link\t%s\n' "$(readlink "$D/current" 2>/dev/null)"
  if [ "$LAYOUT" = in-place ]; then
    # The live tree is the deploy path itself; earlier trees are the snapshots in .deploy/.
    if [ -f "$D/RELEASE" ] || [ -f "$D/public/index.php" ]; then REL=$(readlink -f "$D" 2>/dev/null); fi
    printf 'real\t%s\n' "$REL"
    for r in "$D"/.deploy/snapshots/*; do [ -e "$r" ] && printf 'release\t%s\n' "${r##*/}"; done
    if [ -f "$D/RELEASE" ]; then printf 'release_present\tyes\n'; fi
  else
    REL=$(readlink -f "$D/current" 2>/dev/null)
    [ -n "$REL" ] && [ -d "$REL" ] || REL=
    printf 'real\t%s\n' "$REL"
    for r in "$D"/releases/*; do [ -e "$r" ] && printf 'release\t%s\n' "${r##*/}"; done
    if [ -f "$D/RELEASE" ] && [ ! -e "$D/current" ] && [ ! -L "$D/current" ]; then printf 'inplace_hint\tyes\n'; fi
  fi
  if [ -n "$REL" ]; then
    printf 'release_file\t%s\n' "$(head -c 200 "$REL/RELEASE" 2>/dev/null | tr -d '\n')"
    for w in $WRITABLE; do printf 'writable\t%s\t%s\n' "$w" "$(readlink -f "$REL/$w" 2>/dev/null)"; done
    STORAGE=$(readlink -f "$REL/storage" 2>/dev/null)
  fi
else
  printf 'deploy\tmissing\n'
fi

sec history
[ -d "$D" ] && tail -n 50 "$D/.deploy/history.jsonl" 2>/dev/null

sec programs
PROGS=no
if [ -d "$BIN" ]; then
  (cd "$BIN" && sha256sum -- *.php 2>/dev/null)
  if printf '%s\n' "$WANT" | (cd "$BIN" && sha256sum -c --status - 2>/dev/null); then PROGS=yes; fi
fi
if [ -d "$D" ] && [ "$PROGS" = yes ]; then
  sec ping
  "$PHP" "$BIN/fpmctl.php" ping --socket="$SOCK" --deploy-path="$D" --timeout=3 2>/dev/null; rc $?
  sec status
  "$PHP" "$BIN/fpmctl.php" status --socket="$SOCK" --deploy-path="$D" --timeout=5 --log-tail=32768 2>/dev/null; rc $?
fi

sec http
HB=
if [ -n "$URL" ]; then
  HB=$(mktemp 2>/dev/null)
  code=$(curl -sS -o "$HB" -w '%{http_code}' --max-time 5 "$URL" 2>/dev/null)
  printf 'code\t%s\n' "${code:-000}"
  printf '\035BODY\n'; head -c 4000 "$HB" 2>/dev/null
fi

sec disk
if [ -n "$URL" ] && [ -n "$REL" ] && [ "$PROGS" = yes ] && [ -f "$REL/public/index.php" ] && asuser "$WEB" true 2>/dev/null; then
  DT=$(mktemp 2>/dev/null)
  for i in 1 2; do
    (cd "$REL" && asuser "$WEB" env -i PATH="$PATH" "$PHP" -d opcache.enable_cli=0 -d display_errors=0 -d log_errors=0 "$BIN/diskrun.php" "$URI" 2>/dev/null) > "$DT"
    printf '\035RUN %s\n' "$i"; cat "$DT"; printf '\n'
    # Run twice only when the first answer differs from the pool's: is the code's answer stable?
    if [ -z "$HB" ] || tail -n +2 "$DT" | cmp -s - "$HB"; then break; fi
  done
  rm -f "$DT"
fi
[ -n "$HB" ] && rm -f "$HB"

sec fpm
ino=$(awk -v s="$SOCK" '$NF==s && $4=="00010000" {print $7; exit}' /proc/net/unix 2>/dev/null)
printf 'listen_inode\t%s\n' "${ino:-none}"
HINOS=
if [ -n "$PORT" ]; then
  HEX=$(printf '%04X' "$PORT")
  HINOS=$(awk -v p=":$HEX" 'substr($2, length($2) - 4) == p && $4 == "0A" {print $10}' /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u | tr '\n' ' ')
fi
FPMM=$(pgrep -f '^php-fpm: master' 2>/dev/null | tr '\n' ' ')
NGXM=$(pgrep -f '^nginx: master' 2>/dev/null | tr '\n' ' ')
printf 'masters\t%s\n' "$FPMM"
# Which processes hold the pool's listening socket and the health URL's port: one pass over /proc.
FPMOWN=unknown; HTTPOWN=
set --
[ -n "$ino" ] && set -- -lname "socket:\[$ino\]"
for i in $HINOS; do [ $# -gt 0 ] && set -- "$@" -o; set -- "$@" -lname "socket:\[$i\]"; done
if [ $# -gt 0 ] && asroot true 2>/dev/null; then
  PAIRS=$(asroot find /proc/[0-9]*/fd -maxdepth 1 \( "$@" \) -printf '%h %l\n' 2>/dev/null | sed -n 's#^/proc/\([0-9]*\)/fd socket:\[\([0-9]*\)\]$#\1 \2#p' | sort -u)
  FPMOWN=$(printf '%s\n' "$PAIRS" | awk -v i="$ino" '$2 == i {print $1}' | sort -un | tr '\n' ' ')
  HTTPOWN=$(printf '%s\n' "$PAIRS" | awk -v i="$ino" '$1 != "" && $2 != i {print $1}' | sort -un | tr '\n' ' ')
fi
printf 'http_owners\t%s\n' "$HTTPOWN"
master_line() { printf 'master\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$(ps -o etimes= -p "$1" 2>/dev/null | tr -d ' ')" "$(pgrep -P "$1" 2>/dev/null | wc -l)" "$(ps -o args= -p "$1" 2>/dev/null)"; }
if [ "$FPMOWN" = unknown ]; then
  n=0; for pid in $FPMM; do n=$((n + 1)); [ $n -le 5 ] && master_line "$pid" unknown; done
else
  for pid in $FPMOWN; do case " $FPMM " in *" $pid "*) master_line "$pid" yes;; esac; done
fi
printf 'socket\t'
if [ -S "$SOCK" ]; then stat -c '%U %G %a' "$SOCK" | tr ' ' '\t'; elif [ -e "$SOCK" ]; then echo notsocket; else echo missing; fi

sec nginx
NGX=$(command -v nginx 2>/dev/null)
[ -z "$NGX" ] && [ -x /usr/sbin/nginx ] && NGX=/usr/sbin/nginx
# The nginx that answers the health URL's port first; else every master (a host usually has one).
CAND=
for pid in $HTTPOWN; do case " $NGXM " in *" $pid "*) CAND="$CAND $pid";; esac; done
[ -n "$CAND" ] || CAND=$NGXM
found=
for pid in $CAND; do
  args=$(ps -o args= -p "$pid" 2>/dev/null)
  bin=$(printf '%s\n' "$args" | awk '{print $4}')
  [ -n "$bin" ] && [ -x "$bin" ] || bin=$NGX
  [ -n "$bin" ] || continue
  conf=$(printf '%s\n' "$args" | sed -n 's/.* -c \([^ ]*\).*/\1/p')
  pfx=$(printf '%s\n' "$args" | sed -n 's/.* -p \([^ ]*\).*/\1/p')
  elog=$(printf '%s\n' "$args" | sed -n 's/.* -e \([^ ]*\).*/\1/p')
  out=$(asroot "$bin" ${conf:+-c "$conf"} ${pfx:+-p "$pfx"} ${elog:+-e "$elog"} -T 2>&1); nrc=$?
  if printf '%s\n' "$out" | grep -qF -- "$D"; then
    wu=$(ps -o user= --ppid "$pid" 2>/dev/null | sort -u | head -n 1 | tr -d ' ')
    printf 'master\t%s\t%s\t%s\t%s\n' "$pid" "${conf:-default}" "$nrc" "$wu"
    if [ -n "$wu" ] && [ "$wu" != root ] && asuser "$wu" true 2>/dev/null; then
      if asuser "$wu" test -w "$SOCK" 2>/dev/null; then printf 'worker_socket\tok\n'; else printf 'worker_socket\tdenied\n'; fi
    fi
    printf '\035DUMP\n%s\n' "$out"
    found=1
    break
  fi
  printf 'other\t%s\t%s\t%s\n' "$pid" "${conf:-default}" "$nrc"
done
if [ -z "$found" ]; then
  if [ -n "$NGX" ]; then
    out=$(asroot "$NGX" -T 2>&1); nrc=$?
    printf 'default\t%s\n' "$nrc"
    if printf '%s\n' "$out" | grep -qF -- "$D"; then printf '\035DUMP\n%s\n' "$out"; fi
  else
    echo "nonginx"
  fi
fi

sec owner
if [ -n "$REL" ]; then
  if asuser "$WEB" true 2>/dev/null; then
    for w in $WRITABLE; do
      p=$(readlink -f "$REL/$w" 2>/dev/null)
      if [ -z "$p" ] || [ ! -d "$p" ]; then printf 'missing\t%s\t%s\n' "$w" "$p"; continue; fi
      # In bootstrap/cache only the dirs count: Laravel replaces its files there atomically.
      case "$w" in
        */cache) asuser "$WEB" find "$p" -xdev -type d ! -writable -printf 'notw\t%u:%g\t%m\t%p\n' 2>/dev/null;;
        *) asuser "$WEB" find "$p" -xdev ! -writable -printf 'notw\t%u:%g\t%m\t%p\n' 2>/dev/null;;
      esac | awk -v w="$w" 'NR<=10 {print} END {printf "notw_count\t%s\t%d\n", w, NR}'
    done
    set --
    for w in $WRITABLE; do set -- "$@" -path "$REL/$w" -o; done
    # In place, .deploy/ (lock, history, snapshots of earlier trees) is not the live code.
    [ "$LAYOUT" = in-place ] && set -- "$@" -path "$REL/.deploy" -o
    asuser "$WEB" find "$REL" -xdev \( "$@" -false \) -prune -o -writable -printf 'codew\t%u:%g\t%m\t%p\n' 2>/dev/null | awk 'NR<=10 {print} END {printf "codew_count\t%d\n", NR}'
    if [ "$LAYOUT" = in-place ]; then set -- "$D/.deploy"; else set -- "$D" "$D/releases" "$D/shared" "$D/shared/.env" "$D/.deploy"; fi
    for p in "$@"; do
      if [ -e "$p" ] && asuser "$WEB" test -w "$p" 2>/dev/null; then printf 'codew_top\t%s\n' "$p"; fi
    done
  else
    echo "noweb"
  fi
  if [ "$LAYOUT" = in-place ]; then
    find "$REL" -xdev -path "$REL/.deploy" -prune -o ! -user "$DUSER" ! -user "$WEB" -printf 'odd\t%u:%g\t%m\t%p\n' 2>/dev/null | awk 'NR<=10 {print} END {printf "odd_count\t%d\n", NR}'
  else
    find "$REL" "$D/shared" -xdev ! -user "$DUSER" ! -user "$WEB" -printf 'odd\t%u:%g\t%m\t%p\n' 2>/dev/null | awk 'NR<=10 {print} END {printf "odd_count\t%d\n", NR}'
  fi
fi

sec bootstrap
if [ -n "$REL" ]; then
  BC="$REL/bootstrap/cache"
  if [ -d "$BC" ]; then
    find "$BC" -maxdepth 1 -type f -name '*.php' -printf 'file\t%f\t%u:%g\t%m\t%T@\n' 2>/dev/null
    if [ -f "$BC/config.php" ]; then
      if [ "$LAYOUT" = in-place ]; then
        # In place, a cache built for this tree holds paths under the deploy path itself (never
        # under a snapshot), and Laravel's storage paths give the base path it was built for.
        RRE=$(printf '%s' "$REL" | sed 's/[][\.*^$+?(){}|]/\\&/g')
        grep -oE "$RRE(/\.deploy/snapshots/[^/'\"]+)?[/'\"]" "$BC/config.php" 2>/dev/null | sed 's/.$//' | sort | uniq -c | awk '{printf "configref\t%s\t%s\n", $1, $2}'
        grep -oE "'/[^']*/storage/(app|logs|framework)[/']" "$BC/config.php" 2>/dev/null | sed "s#^'##; s#/storage/[a-z]*[/']\$##" | sort | uniq -c | awk '{printf "basepath\t%s\t%s\n", $1, $2}'
      else
        DRE=$(printf '%s' "$D" | sed 's/[][\.*^$+?(){}|]/\\&/g')
        grep -oE "$DRE/(releases/[^/'\"]+|current)" "$BC/config.php" 2>/dev/null | sort | uniq -c | awk '{printf "configref\t%s\t%s\n", $1, $2}'
      fi
      find "$REL/config" -name '*.php' -newer "$BC/config.php" -printf 'newer_config\t%p\n' 2>/dev/null | head -n 10
      if [ -e "$REL/.env" ] && [ -n "$(find -L "$REL/.env" -prune -newer "$BC/config.php" 2>/dev/null)" ]; then
        printf 'newer_env\t%s\n' "$(readlink -f "$REL/.env")"
      fi
    fi
    for r in "$BC"/routes*.php; do
      [ -f "$r" ] && find "$REL/routes" -name '*.php' -newer "$r" -printf 'newer_routes\t%p\n' 2>/dev/null | head -n 10
    done
  else
    echo "nodir"
  fi
fi

sec log
if [ -n "$STORAGE" ]; then
  L=$(find "$STORAGE/logs" -maxdepth 1 -name 'laravel*.log' -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-)
  printf 'file\t%s\n' "$L"
  if [ -n "$L" ]; then printf '\035TAIL\n'; tail -n "$LOGLINES" "$L" 2>/dev/null | cut -c1-400; fi
fi

sec env
if [ -n "$REL" ]; then
  E="$REL/.env"
  if [ -L "$E" ] && [ ! -e "$E" ]; then printf 'file\tdangling\t%s\n' "$(readlink "$E")"
  elif [ ! -e "$E" ]; then printf 'file\tmissing\t%s\n' "$E"
  elif [ -r "$E" ]; then printf 'file\tok\t%s\n' "$(readlink -f "$E")"; env_keys < "$E"
  elif asroot test -r "$E" 2>/dev/null; then printf 'file\tok\t%s\n' "$(readlink -f "$E")"; asroot cat "$E" | env_keys
  else printf 'file\tunreadable\t%s\n' "$(readlink -f "$E")"
  fi
fi

sec app
if [ -n "$REL" ] && [ "$PROGS" = yes ] && [ -f "$REL/artisan" ]; then
  # As the deploy user, in a clean environment (the pool's clear_env: only .env and the config count).
  (cd "$REL" && bounded 30 env -i PATH="$PATH" HOME="${HOME:-/}" "$PHP" -d display_errors=stderr -d log_errors=0 "$BIN/appcheck.php" --timeout=5 2>&1); rc $?
fi

sec workers
if [ -n "$REL" ]; then
  # When the live release went live: current's own mtime (a fresh symlink renamed into place);
  # in place, when RELEASE was written.
  if [ "$LAYOUT" = in-place ]; then M="$D/RELEASE"; else M="$D/current"; fi
  SW=$(stat -c %.9Y "$M" 2>/dev/null || stat -c %Y "$M" 2>/dev/null)
  printf 'switched\t%s\n' "$SW"
  set -- --expect 0
  [ -n "$WPATTERN" ] && set -- "$@" --pattern "$WPATTERN"
  set -- "$@" "$D" "$REL" "${SW:-0}"
  # Another user's /proc/PID/cwd needs root: without it those workers are reported `unknown`.
  if [ "$(id -u)" = 0 ]; then
    printf 'as\troot\n\035OUT\n'; bounded 30 sh -c "$WORKERS_SH" workers.sh "$@"; rc $?
  elif asroot true 2>/dev/null; then
    printf 'as\troot\n\035OUT\n'; bounded 30 sudo -n -- sh -c "$WORKERS_SH" workers.sh "$@"; rc $?
  else
    printf 'as\t%s\n\035OUT\n' "$(id -un)"; bounded 30 sh -c "$WORKERS_SH" workers.sh "$@"; rc $?
  fi
fi
sec end
