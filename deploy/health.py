"""Health checks of one host: the incident's eight check categories, each a Finding.

Two halves, on purpose:

* GATHER: one shell script, planned as data (a Command), run by the executor in ONE SSH
  session. It prints tagged sections (`\\x1dS name`): the layout, the FPM processes and socket,
  what the pool itself reports (deploy/php/fpmctl.php `ping`/`status`, plus a small pool-side
  script run through fpmctl's `request` action that lists cached scripts changed on disk), the
  nginx configuration of the nginx that serves this deploy path (`nginx -T` of the running
  master's own `-c` file), writability as the web user, the bootstrap cache, the Laravel and PHP
  logs, the health URL's HTTP answer and a fresh run of the same URL through the code on disk
  (php-cli as the web user, OPCache off) to compare with what the pool serves.
* EVALUATE: pure functions from the parsed evidence to Findings (unit-tested on canned text).

A Finding's `remedy` names the automatic fix remediate.py applies when the check fails
("acl", "artisan", "opcache_reset", "fpm_reload", several joined by "+"), or None when only a
human can fix it; `fix` says what the tool does and what a human does.

What is checked, and why, follows ../shared/FACTS.md (not the incident report's explanations):
ownership never decides OPCache freshness; it breaks Laravel (500 "must be present and
writable"). `php -r opcache_reset()` never reaches the pool. A changed file is never re-read by
the pool with opcache.validate_timestamps=0 until a reset or reload.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from . import fpmctl
from .context import StepContext
from .commands import PlannedStep
from .transport import InstallError

PASS, WARN, FAIL = "pass", "warn", "fail"
_RANK = {PASS: 0, WARN: 1, FAIL: 2}

CHECKS = ("ownership", "fpm", "opcache", "bootstrap_cache", "socket", "nginx", "laravel_log", "running_code")
TITLES = {
    "ownership": "file ownership",
    "fpm": "PHP-FPM",
    "opcache": "OPCache",
    "bootstrap_cache": "bootstrap cache",
    "socket": "FastCGI socket",
    "nginx": "nginx",
    "laravel_log": "Laravel log",
    "running_code": "running code",
}

# Remedy keys, in the order remediate.py applies them within one attempt.
REMEDIES = ("acl", "artisan", "opcache_reset", "fpm_reload")

DEFAULT_WRITABLE = ["storage", "bootstrap/cache"]
DEFAULT_ARTISAN = ["config:cache", "route:cache", "view:cache", "event:cache"]
# artisan command -> the bootstrap/cache file it writes (Laravel 8+ names)
CACHE_FILES = {"config:cache": "config.php", "route:cache": "routes-v7.php", "event:cache": "events.php"}
PERMISSION_PATTERNS = ("permission denied", "must be present and writable", "could not be opened in append mode",
                       "failed to open stream: permission", "read-only file system")
REALPATH_LINES = ("fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
                  "fastcgi_param DOCUMENT_ROOT $realpath_root;")
LOG_TAIL_LINES = 300
EVIDENCE_MAX = 600


@dataclass
class Finding:
    """One check's verdict for one host.

    remedy: a key of REMEDIES, several joined by "+" in the order they run, or None (a human
    fixes it). details: structured data for JSON reports (not printed in tables).
    """

    check: str
    status: str          # pass | warn | fail
    evidence: str
    fix: str
    remedy: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def remedies(self):
        return tuple(self.remedy.split("+")) if self.remedy else ()

    @property
    def title(self):
        return TITLES.get(self.check, self.check)

    def as_dict(self):
        return asdict(self)


class _Acc:
    """Collects the items of one check; the worst status wins, remedies of failed items add up."""

    def __init__(self, check):
        self.check = check
        self.items = []      # (status, evidence, fix, remedy)
        self.details = {}

    def add(self, status, evidence, fix="", remedy=None):
        self.items.append((status, evidence, fix, remedy))

    def finding(self, ok_evidence, ok_fix="nothing to do"):
        if not self.items:
            return Finding(self.check, PASS, _clip(ok_evidence), ok_fix, None, self.details)
        worst = max(_RANK[s] for s, _, _, _ in self.items)
        status = next(s for s in (FAIL, WARN, PASS) if _RANK[s] == worst)
        # The worst items first, then the rest, so a table shows what matters.
        ordered = sorted(self.items, key=lambda i: -_RANK[i[0]])
        evidence = "; ".join(e for s, e, _, _ in ordered if e)
        fixes = []
        for s, _, f, _ in ordered:
            if f and f not in fixes and (s != PASS):
                fixes.append(f)
        remedies = []
        for s, _, _, r in ordered:
            if s == status and r:
                for key in r.split("+"):
                    if key not in remedies:
                        remedies.append(key)
        remedies.sort(key=REMEDIES.index)
        return Finding(self.check, status, _clip(evidence), " | ".join(fixes) or ok_fix,
                       "+".join(remedies) or None, self.details)


def _clip(text, limit=EVIDENCE_MAX):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ============================================================================ gather

# The pool-side script (run by one FPM worker through fpmctl's `request` action, deleted
# right after): which cached scripts changed on disk after the pool's OPCache was last
# cleared, and the tail of the pool's own PHP error log. __DEPLOY__ is replaced by a PHP
# single-quoted literal.
POOL_PROBE = r"""<?php
// written by deploy/health.py, executed once by an FPM worker, deleted right after
header('Content-Type: application/json');
header('Cache-Control: no-store');
set_error_handler(static function () { return true; });
$deploy = __DEPLOY__;
$skip = dirname(__FILE__);
clearstatcache(true);
$real = realpath($deploy . '/current');
if ($real === false && !file_exists($deploy . '/current') && is_file($deploy . '/RELEASE')) {
    $real = realpath($deploy);   // strategy in-place: the deploy path is the live tree
}
$roots = array_values(array_unique(array_filter([$deploy, realpath($deploy) ?: null])));
$out = ['pid' => getmypid(), 'now' => time(), 'live' => $real === false ? null : $real,
        'error_log' => (string) ini_get('error_log'), 'error_log_tail' => null, 'opcache' => null];
$el = $out['error_log'];
if ($el !== '' && $el !== 'syslog' && is_file($el) && is_readable($el)) {
    $fh = fopen($el, 'r');
    if ($fh) {
        fseek($fh, max(0, filesize($el) - 32768));
        $out['error_log_tail'] = stream_get_contents($fh);
        fclose($fh);
    }
}
if (function_exists('opcache_get_status')) {
    $st = opcache_get_status(true);
    if (is_array($st)) {
        $s = $st['opcache_statistics'] ?? [];
        $epoch = max((int) ($s['start_time'] ?? 0), (int) ($s['last_restart_time'] ?? 0));
        $changed = [];
        $n = 0;
        foreach (array_keys($st['scripts'] ?? []) as $path) {
            $path = (string) $path;
            if (str_starts_with($path, $skip . '/')) {
                continue;
            }
            foreach ($roots as $r) {
                // The tool's own dir (probes, in place also the snapshots of earlier trees).
                if (str_starts_with($path, $r . '/.deploy/')) {
                    continue 2;
                }
                // Other releases' scripts are counted by fpmctl status (stale_scripts); a
                // pruned release's files are gone on purpose: neither is "changed code".
                if (str_starts_with($path, $r . '/releases/') && ($real === false || !str_starts_with($path, $real . '/'))) {
                    continue 2;
                }
            }
            $n++;
            $info = $st['scripts'][$path];
            $m = @filemtime($path);
            $why = null;
            if ($m === false) {
                $why = 'deleted';
            } elseif (isset($info['timestamp'])) {
                $why = $m !== (int) $info['timestamp'] ? 'modified' : null;
            } elseif ($m > $epoch) {
                $why = 'modified';
            }
            if ($why !== null) {
                $changed[] = ['path' => $path, 'mtime' => $m === false ? null : $m, 'why' => $why];
            }
        }
        usort($changed, static fn ($a, $b) => ($b['mtime'] ?? PHP_INT_MAX) <=> ($a['mtime'] ?? PHP_INT_MAX));
        $out['opcache'] = [
            'start_time' => (int) ($s['start_time'] ?? 0), 'last_restart_time' => (int) ($s['last_restart_time'] ?? 0),
            'epoch' => $epoch, 'validate_timestamps' => (bool) ini_get('opcache.validate_timestamps'),
            'revalidate_freq' => (int) ini_get('opcache.revalidate_freq'),
            'checked' => $n, 'changed_count' => count($changed), 'changed' => array_slice($changed, 0, 20),
        ];
    }
}
echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
"""

# A fresh request through the code on disk: php-cli as the web user, OPCache off, the health
# URL's path as REQUEST_URI, public/index.php as the front controller. The body (and the status
# Laravel set) is what the files on disk produce now; a pool that answers differently runs
# stale code.
DISK_RUN = r"""
$root = getcwd(); $uri = $argv[1] ?? '/';
$q = (string) parse_url($uri, PHP_URL_QUERY);
$_SERVER = array_merge($_SERVER, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => $uri, 'QUERY_STRING' => $q,
  'SCRIPT_NAME' => '/index.php', 'PHP_SELF' => '/index.php', 'SCRIPT_FILENAME' => $root . '/public/index.php',
  'DOCUMENT_ROOT' => $root . '/public', 'HTTP_HOST' => 'localhost', 'SERVER_NAME' => 'localhost',
  'SERVER_PORT' => '80', 'REMOTE_ADDR' => '127.0.0.1', 'SERVER_PROTOCOL' => 'HTTP/1.1']);
$_GET = []; parse_str($q, $_GET);
ob_start();
register_shutdown_function(static function () {
  $parts = []; while (ob_get_level() > 0) { array_unshift($parts, (string) ob_get_clean()); }
  fwrite(STDOUT, "\035STATUS " . (int) http_response_code() . "\n" . substr(implode('', $parts), 0, 4000));
});
chdir($root . '/public');
require $root . '/public/index.php';
"""

GATHER = r"""
echo "health evidence v1"
sec() { printf '\n\035S %s %s\n' "$1" "$(date +%s.%N 2>/dev/null)"; }
rc() { printf '\n\035RC %s\n' "$1"; }
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
sec meta
printf 'user\t%s\n' "$(id -un)"
printf 'now\t%s\n' "$(date +%s)"
if asroot true 2>/dev/null; then printf 'root\tyes\n'; else printf 'root\tno\n'; fi
if asuser "$WEB" true 2>/dev/null; then printf 'web\tyes\n'; else printf 'web\tno\n'; fi
sec layout
REL=
LAYOUT=
if [ -d "$D" ]; then
  printf 'deploy\tok\n'
  # MODE: in-place | releases (the pipeline's strategy) | auto (decide from the host, as fpmctl
  # status does: no current, a RELEASE file directly under the deploy path = in place).
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
    for r in $(ls -1 "$D/.deploy/snapshots" 2>/dev/null); do printf 'release\t%s\n' "$r"; done
    if [ -f "$D/RELEASE" ]; then printf 'release_present\tyes\n'; fi
  else
    REL=$(readlink -f "$D/current" 2>/dev/null)
    [ -n "$REL" ] && [ -d "$REL" ] || REL=
    printf 'real\t%s\n' "$REL"
    for r in $(ls -1 "$D/releases" 2>/dev/null); do printf 'release\t%s\n' "$r"; done
    if [ -f "$D/RELEASE" ] && [ ! -e "$D/current" ] && [ ! -L "$D/current" ]; then printf 'inplace_hint\tyes\n'; fi
  fi
  if [ -n "$REL" ]; then
    printf 'release_file\t%s\n' "$(head -c 200 "$REL/RELEASE" 2>/dev/null | tr -d '\n')"
    for w in $WRITABLE; do printf 'writable\t%s\t%s\n' "$w" "$(readlink -f "$REL/$w" 2>/dev/null)"; done
  fi
else
  printf 'deploy\tmissing\n'
fi
sec history
[ -d "$D" ] && tail -n 50 "$D/.deploy/history.jsonl" 2>/dev/null
sec fpmctl
if [ -f "$FPMCTL" ]; then sha256sum "$FPMCTL" 2>/dev/null | cut -d' ' -f1; else echo missing; fi
if [ -d "$D" ] && [ -f "$FPMCTL" ] && [ "$(sha256sum "$FPMCTL" 2>/dev/null | cut -d' ' -f1)" = "$WANTSHA" ]; then
  sec ping
  "$PHP" "$FPMCTL" ping --socket="$SOCK" --deploy-path="$D" --timeout=3 2>/dev/null; rc $?
  sec status
  "$PHP" "$FPMCTL" status --socket="$SOCK" --deploy-path="$D" --timeout=5 2>/dev/null; rc $?
  sec pool
  PP="$D/.deploy/probe/health-$$.php"
  if mkdir -p "$D/.deploy/probe" 2>/dev/null && chmod 0755 "$D/.deploy/probe" 2>/dev/null && (umask 022; printf '%s' "$POOLPROBE" > "$PP") 2>/dev/null; then
    trap 'rm -f "$PP"' EXIT
    touch -d "@$(( $(date +%s) + 3600 ))" "$PP" 2>/dev/null
    "$PHP" "$FPMCTL" request --socket="$SOCK" --script="$PP" --timeout=5 2>/dev/null; rc $?
    rm -f "$PP"
  fi
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
if [ -n "$URL" ] && [ -n "$REL" ] && [ -f "$REL/public/index.php" ] && asuser "$WEB" true 2>/dev/null; then
  DT=$(mktemp 2>/dev/null)
  for i in 1 2; do
    (cd "$REL" && asuser "$WEB" env -i PATH="$PATH" "$PHP" -d opcache.enable_cli=0 -d display_errors=0 -d log_errors=0 -r "$DISKRUN" -- "$URI" 2>/dev/null) > "$DT"
    printf '\035RUN %s\n' "$i"; cat "$DT"; printf '\n'
    # Run twice only when the first answer differs from the pool's: is the code's answer stable?
    if [ -n "$HB" ] && tail -n +2 "$DT" | cmp -s - "$HB"; then break; fi
    if [ -z "$HB" ]; then break; fi
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
      case "$w" in */cache) T="-type d";; *) T=;; esac
      asuser "$WEB" find "$p" -xdev $T ! -writable -printf 'notw\t%u:%g\t%m\t%p\n' 2>/dev/null | awk -v w="$w" 'NR<=10 {print} END {printf "notw_count\t%s\t%d\n", w, NR}'
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
      if [ -e "$REL/.env" ] && [ "$REL/.env" -nt "$BC/config.php" ]; then printf 'newer_env\t%s\n' "$(readlink -f "$REL/.env")"; fi
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
  L=$(ls -1t "$STORAGE"/logs/laravel*.log 2>/dev/null | head -n 1)
  printf 'file\t%s\n' "$L"
  if [ -n "$L" ]; then printf '\035TAIL\n'; tail -n LOGLINES "$L" 2>/dev/null | cut -c1-400; fi
fi
sec end
"""


def _php_literal(text):
    return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fpmctl_sha():
    return hashlib.sha256(fpmctl.LOCAL_SCRIPT.read_bytes()).hexdigest()


def _writable_dirs(pipeline):
    step = pipeline.first("ownership") if pipeline is not None else None
    return list(step.settings["writable"]) if step else list(DEFAULT_WRITABLE)


def _artisan_commands(pipeline):
    if pipeline is None:
        return list(DEFAULT_ARTISAN)
    step = pipeline.first("artisan")
    return list(step.settings["commands"]) if step else []


def _url_path(url):
    if not url:
        return ""
    m = re.match(r"^https?://[^/?#]*([^#]*)", url)
    path = m.group(1) if m else "/"
    return path if path.startswith("/") else "/" + path


def _url_port(url):
    m = re.match(r"^(https?)://(\[[^\]]*\]|[^/:?#]*)(?::(\d+))?", url or "")
    if not m:
        return ""
    return m.group(3) or ("443" if m.group(1) == "https" else "80")


IN_PLACE, RELEASES, AUTO = "in-place", "releases", "auto"


def layout_mode(pipeline, layout=None):
    """The layout the checks assume: `layout` when given ("in-place", "releases" or "auto");
    else the pipeline's strategy; "auto" (decided on the host: no current and a RELEASE file
    directly under the deploy path = in place, the rule fpmctl status uses) without a pipeline."""
    if layout in (IN_PLACE, RELEASES, AUTO):
        return layout
    if layout is not None:
        raise ValueError(f"unknown layout {layout!r}")
    if pipeline is None:
        return AUTO
    return IN_PLACE if getattr(pipeline, "strategy", RELEASES) == IN_PLACE else RELEASES


def in_place(ev):
    """Does the evidence describe an in-place host (code directly under the deploy path)?"""
    return (ev.get("layout") or {}).get("layout") == IN_PLACE


def resolve_layout(ev, pipeline=None, layout=None):
    """Fill ev["layout"]["layout"] when the evidence does not say (canned evidence, an old
    gather): from the mode, else from the host's files and what the pool reported."""
    lay = ev["layout"]
    if lay.get("deploy") != "ok" or lay.get("layout") in (IN_PLACE, RELEASES):
        return ev
    mode = layout_mode(pipeline, layout)
    if mode == AUTO:
        st = _status_data(ev) or {}
        host_says = st.get("layout") == IN_PLACE or (lay.get("symlink") == "no" and not lay.get("link")
                                                     and lay.get("current") != "yes" and bool(lay.get("release_present")))
        mode = IN_PLACE if host_says else RELEASES
    lay["layout"] = mode
    return ev


def gather_command(host, pipeline, release="-", layout=None):
    """The evidence script, as one Command (its full output is kept under runner.facts['health']).

    layout: see layout_mode (None: the pipeline decides; "auto" without one)."""
    ctx = StepContext(host, pipeline, release or "-")
    body = GATHER.replace("LOGLINES", str(LOG_TAIL_LINES))
    header = ("D={}; MODE={}; WEB={}; DUSER={}; SOCK={}; PHP={}; FPMCTL={}; WANTSHA={}; URL={}; URI={}; PORT={};"
              " WRITABLE={}; POOLPROBE={}; DISKRUN={}\n")
    template = header + body.replace("{", "{{").replace("}", "}}")
    return ctx.cmd(template, host.deploy_path, layout_mode(pipeline, layout), host.web_user, host.user,
                   host.fpm.socket, ctx.php(),
                   ctx.paths.fpmctl, _fpmctl_sha(), host.health_url or "", _url_path(host.health_url),
                   _url_port(host.health_url),
                   " ".join(_writable_dirs(pipeline)),
                   POOL_PROBE.replace("__DEPLOY__", _php_literal(host.deploy_path)), DISK_RUN,
                   capture="health", desc="gather health evidence (one session)")


def gather(runner, host, pipeline, release=None, layout=None):
    """Run the evidence script (uploading fpmctl.php first when it is missing or outdated).

    Returns the parsed evidence dict. Raises TransportError when the host is lost.
    """
    cmd = gather_command(host, pipeline, release, layout)
    t0 = time.monotonic()
    runner.run([PlannedStep("health", "health", [cmd])])
    ev = parse(runner.facts.get("health", ""))
    if ev["layout"].get("deploy") == "ok" and ev["fpmctl_sha"] != _fpmctl_sha():
        try:
            runner.install(["fpmctl.php"])
            res = runner.run([PlannedStep("health", "health", [cmd])])
        except InstallError:
            res = None
        if res and res[0].status == "ok":
            ev = parse(runner.facts.get("health", ""))
        else:
            ev["upload_failed"] = True
    ev["gather_seconds"] = round(time.monotonic() - t0, 3)
    return ev


# ============================================================================ parse

_SECTION = re.compile(r"\n?\x1dS (\S+)(?: (\S*))?\n")
_RC = re.compile(r"\n?\x1dRC (-?\d+)\s*$")


def _sections(text, times=None):
    parts = _SECTION.split(text or "")
    out = {}
    for i in range(1, len(parts) - 2, 3):
        out[parts[i]] = parts[i + 2]
        if times is not None:
            try:
                times.append((parts[i], float(parts[i + 1])))
            except (TypeError, ValueError):
                pass
    return out


def _tabbed(text):
    rows = []
    for line in (text or "").split("\n"):
        if line.strip():
            rows.append(line.rstrip("\r").split("\t"))
    return rows


def _json_with_rc(text):
    """fpmctl output: one JSON object, then the exit code marker."""
    if text is None:
        return None
    m = _RC.search(text)
    code = int(m.group(1)) if m else None
    body = text[:m.start()] if m else text
    data = None
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                data = None
            break
    return {"rc": code, "data": data}


def parse(text):
    """Gather output -> evidence dict (plain data, so unit tests can build it from canned text)."""
    times = []
    s = _sections(text, times)
    ev = {"complete": "end" in s, "raw_sections": sorted(s),
          # seconds spent per section on the host (where a slow host spends its time)
          "section_seconds": {a[0]: round(b[1] - a[1], 3) for a, b in zip(times, times[1:])}}
    ev["meta"] = {r[0]: r[1] for r in _tabbed(s.get("meta")) if len(r) > 1}

    layout = {"releases": [], "writable": {}}
    for r in _tabbed(s.get("layout")):
        if r[0] == "release" and len(r) > 1:
            layout["releases"].append(r[1])
        elif r[0] == "writable" and len(r) > 1:
            layout["writable"][r[1]] = r[2] if len(r) > 2 else ""
        elif len(r) > 1:
            layout[r[0]] = r[1]
        else:
            layout[r[0]] = ""
    ev["layout"] = layout

    history = []
    for line in (s.get("history") or "").splitlines():
        try:
            history.append(json.loads(line))
        except ValueError:
            pass
    ev["history"] = history
    ev["fpmctl_sha"] = (s.get("fpmctl") or "").strip()
    ev["ping"] = _json_with_rc(s.get("ping"))
    ev["status"] = _json_with_rc(s.get("status"))
    pool = _json_with_rc(s.get("pool"))
    if pool and pool["data"] and isinstance(pool["data"].get("body"), str):
        try:
            pool["data"] = json.loads(pool["data"]["body"])
        except ValueError:
            pool["data"] = None
    ev["pool"] = pool

    http = None
    if s.get("http"):
        head, _, body = s["http"].partition("\x1dBODY\n")
        code = None
        for r in _tabbed(head):
            if r[0] == "code" and len(r) > 1:
                code = int(r[1]) if r[1].isdigit() else 0
        http = {"code": code or 0, "body": body.rstrip("\n")}
    ev["http"] = http

    runs = []
    for chunk in re.split(r"\x1dRUN \d+\n", s.get("disk") or "")[1:]:
        m = re.search(r"\x1dSTATUS (-?\d+)\n", chunk)
        if m:
            runs.append({"status": int(m.group(1)), "body": chunk[m.end():].rstrip("\n")})
        else:
            runs.append({"status": None, "body": chunk.strip()})
    ev["disk"] = runs

    fpm = {"listen_inode": None, "masters": [], "socket": None, "all_masters": 0, "http_owners": []}
    for r in _tabbed(s.get("fpm")):
        if r[0] == "masters":
            fpm["all_masters"] = len(r[1].split()) if len(r) > 1 else 0
        elif r[0] == "http_owners":
            fpm["http_owners"] = [int(x) for x in r[1].split()] if len(r) > 1 else []
        elif r[0] == "listen_inode":
            fpm["listen_inode"] = None if len(r) < 2 or r[1] in ("", "none") else r[1]
        elif r[0] == "master" and len(r) >= 6:
            fpm["masters"].append({"pid": int(r[1]), "owns_socket": r[2], "uptime": int(r[3]) if r[3].isdigit() else None,
                                   "workers": int(r[4]) if r[4].strip().isdigit() else 0, "args": r[5]})
        elif r[0] == "socket":
            if len(r) >= 4:
                fpm["socket"] = {"state": "ok", "owner": r[1], "group": r[2], "mode": r[3]}
            else:
                fpm["socket"] = {"state": r[1] if len(r) > 1 else "missing"}
    ev["fpm"] = fpm

    ngx = {"master": None, "others": [], "default_rc": None, "none": False, "worker_socket": None, "dump": None}
    nsec = s.get("nginx") or ""
    head, sep, dump = nsec.partition("\x1dDUMP\n")
    if sep:
        ngx["dump"] = dump
    for r in _tabbed(head):
        if r[0] == "master" and len(r) >= 4:
            ngx["master"] = {"pid": int(r[1]), "conf": r[2], "rc": int(r[3]), "worker_user": r[4] if len(r) > 4 else ""}
        elif r[0] == "other" and len(r) >= 3:
            ngx["others"].append({"pid": int(r[1]), "conf": r[2]})
        elif r[0] == "default" and len(r) >= 2:
            ngx["default_rc"] = int(r[1]) if r[1].lstrip("-").isdigit() else None
        elif r[0] == "worker_socket" and len(r) >= 2:
            ngx["worker_socket"] = r[1]
        elif r[0] == "nonginx":
            ngx["none"] = True
    ev["nginx"] = ngx

    owner = {"checked": False, "noweb": False, "notw": [], "notw_count": {}, "missing": [], "codew": [],
             "codew_count": 0, "codew_top": [], "odd": [], "odd_count": 0}
    for r in _tabbed(s.get("owner")):
        owner["checked"] = True
        tag = r[0]
        if tag == "noweb":
            owner["noweb"] = True
        elif tag in ("notw", "codew", "odd") and len(r) >= 4:
            owner[tag].append({"owner": r[1], "mode": r[2], "path": r[3]})
        elif tag == "notw_count" and len(r) >= 3:
            owner["notw_count"][r[1]] = int(r[2])
        elif tag in ("codew_count", "odd_count") and len(r) >= 2:
            owner[tag] = int(r[1])
        elif tag == "codew_top" and len(r) >= 2:
            owner["codew_top"].append(r[1])
        elif tag == "missing" and len(r) >= 2:
            owner["missing"].append({"name": r[1], "path": r[2] if len(r) > 2 else ""})
    ev["owner"] = owner

    boot = {"checked": False, "nodir": False, "files": {}, "configref": {}, "basepath": {}, "newer_config": [],
            "newer_env": None, "newer_routes": []}
    for r in _tabbed(s.get("bootstrap")):
        boot["checked"] = True
        tag = r[0]
        if tag == "nodir":
            boot["nodir"] = True
        elif tag == "file" and len(r) >= 5:
            boot["files"][r[1]] = {"owner": r[2], "mode": r[3], "mtime": float(r[4])}
        elif tag in ("configref", "basepath") and len(r) >= 3:
            boot[tag][r[2]] = int(r[1])
        elif tag in ("newer_config", "newer_routes") and len(r) >= 2:
            boot[tag].append(r[1])
        elif tag == "newer_env" and len(r) >= 2:
            boot["newer_env"] = r[1]
    ev["bootstrap"] = boot

    log = {"file": None, "lines": []}
    lsec = s.get("log") or ""
    head, sep, tail = lsec.partition("\x1dTAIL\n")
    for r in _tabbed(head):
        if r[0] == "file" and len(r) > 1:
            log["file"] = r[1] or None
    log["lines"] = tail.split("\n") if sep else []
    ev["log"] = log
    return ev


# ============================================================================ helpers

def _status_data(ev):
    st = ev.get("status") or {}
    return st.get("data") if st.get("rc") == 0 and isinstance(st.get("data"), dict) else None


def _pool_data(ev):
    p = ev.get("pool") or {}
    return p.get("data") if isinstance(p.get("data"), dict) else None


def _probe_error(ev):
    """(kind, message) of the pool probe's failure, or None when it answered."""
    for key in ("ping", "status"):
        r = ev.get(key)
        if r is None:
            continue
        if r.get("rc") not in (0, None) or (r.get("data") or {}).get("ok") is False:
            d = r.get("data") or {}
            return d.get("error_kind") or f"exit {r.get('rc')}", d.get("error") or d.get("reason") or f"fpmctl {key} exit {r.get('rc')}"
    return None


def _live(ev):
    """The live release id: in place the deploy path's RELEASE file, else where current points."""
    if in_place(ev):
        return ev["layout"].get("release_file") or None
    link = ev["layout"].get("link") or ""
    return posixpath.basename(link.rstrip("/")) if link else None


def _writable_now(ev):
    """True/False when known: are storage and bootstrap/cache writable by the pool user now?"""
    st = _status_data(ev)
    if st and isinstance(st.get("writable"), dict) and st["writable"]:
        probe_ok = all(st["writable"].values())
    else:
        probe_ok = None
    own = ev.get("owner") or {}
    if own.get("checked") and not own.get("noweb"):
        deep_ok = not any(own["notw_count"].values()) and not own["missing"]
        return deep_ok if probe_ok is None else (deep_ok and probe_ok)
    return probe_ok


def _fmt_files(items, n=3):
    return ", ".join(f"{i['owner']} {i['mode']} {i['path']}" for i in items[:n])


def _parse_utc(text):
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
        try:
            dt = datetime.strptime(text, fmt)
            return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
        except (ValueError, TypeError):
            continue
    return None


def last_change(history):
    """Time of the last deploy/rollback/heal recorded in the history (UTC datetime) or None."""
    for rec in reversed(history or []):
        if rec.get("action") in ("deploy", "rollback", "auto-rollback", "heal") and rec.get("time"):
            t = _parse_utc(rec["time"])
            if t:
                return t
    return None


# ============================================================================ evaluate

def check_ownership(ev, host, pipeline):
    acc = _Acc("ownership")
    web, user = host.web_user, host.user
    own = ev["owner"]
    writable = _writable_dirs(pipeline)
    acl_fix = (f"tool: setfacl -R -m u:{web}:rwX,d:u:{web}:rwX on {', '.join(writable)} (the real dirs, not the"
               f" symlinks; never chown -R of the code); human, if the tool cannot: the same command as root")
    if not ev["layout"].get("real"):
        acc.add(WARN, "not checked: no live release (" + ("nothing deployed in place under " + host.deploy_path
                                                          if in_place(ev) else "current is missing or dangling") + ")",
                "deploy a release")
        return acc.finding("")
    if not own["checked"] or own["noweb"]:
        st = _status_data(ev)
        why = f"cannot test files as {web} (needs root or sudo -u {web})"
        if st and isinstance(st.get("writable"), dict):
            bad = [k for k, v in st["writable"].items() if not v]
            if bad:
                acc.add(FAIL, f"the pool user cannot write {', '.join(bad)} (probe)", acl_fix, "acl")
            else:
                acc.add(WARN, f"{why}; the pool can write the top of {', '.join(st['writable'])}",
                        f"give the deploy user sudo rights to run as {web} for a full check")
        else:
            acc.add(WARN, why, f"give the deploy user sudo rights to run as {web}")
    else:
        for m in own["missing"]:
            acc.add(FAIL, f"writable dir {m['name']} is missing ({m['path'] or 'dangling symlink'})", acl_fix, "acl")
        for name, count in own["notw_count"].items():
            if count:
                items = [i for i in own["notw"] if i["path"].startswith((ev["layout"]["writable"].get(name) or "\0"))]
                acc.add(FAIL, f"{count} entr{'y' if count == 1 else 'ies'} in {name} not writable by {web}"
                              f" (e.g. {_fmt_files(items or own['notw'], 2)})", acl_fix, "acl")
        codew = own["codew_count"] + len(own["codew_top"])
        if codew:
            ex = ", ".join(own["codew_top"][:2] + [i["path"] for i in own["codew"][:3]])
            rel = ev["layout"]["real"]
            if in_place(ev):
                keep = " and ".join(writable + [".deploy"])
                acc.add(FAIL, f"{codew} code path(s) writable by the web user {web} (e.g. {ex}): PHP could rewrite code",
                        f"human (the tool never changes code ownership): in {rel}, except {keep}: chown {user}:,"
                        f" chmod go-w and setfacl -x u:{web} (e.g. find {rel} \\( -path {rel}/storage -o -path"
                        f" {rel}/bootstrap/cache -o -path {rel}/.deploy \\) -prune -o -exec chmod go-w {{}} +)")
            else:
                acc.add(FAIL, f"{codew} code path(s) writable by the web user {web} (e.g. {ex}): PHP could rewrite code",
                        f"human (the tool never changes code ownership): chown -R {user}: {rel} and chmod -R go-w {rel},"
                        f" then setfacl -R -x u:{web} on it, leaving {' and '.join(writable)} alone; or deploy a new"
                        f" release (built read-only for {web})")
        acc.details["checked_as"] = web
    if own["odd_count"]:
        acc.add(WARN, f"{own['odd_count']} file(s) owned by neither {user} nor {web} (e.g. {_fmt_files(own['odd'], 2)}):"
                      " edited on the server by hand?",
                f"human: chown them to {user} (code) or let the ACLs cover them (writable dirs); ship changes with a deploy")
    return acc.finding(f"{' and '.join(writable)} writable by {web} (every file checked as {web});"
                       f" code not writable by {web}; owners {user}/{web} only"
                       + (" (in place: the live tree, .deploy/ and its snapshots not counted)" if in_place(ev) else ""))


def check_fpm(ev, host):
    acc = _Acc("fpm")
    masters = ev["fpm"]["masters"]
    mine = [m for m in masters if m["owns_socket"] == "yes"]
    unknown = [m for m in masters if m["owns_socket"] == "unknown"]
    total = max(ev["fpm"].get("all_masters") or 0, len(masters))
    master = mine[0] if mine else (unknown[0] if total == 1 and unknown else None)
    ping = ev.get("ping")
    err = _probe_error(ev)
    if ping is None and ev.get("status") is None:
        why = "fpmctl.php could not be installed" if ev.get("upload_failed") else "deploy path missing"
        acc.add(WARN, f"pool not asked: {why}", "run a deploy first, or check the deploy path in the inventory")
    start = "start PHP-FPM (e.g. systemctl start php8.2-fpm) and check that its pool `listen` is " + host.fpm.socket
    if not mine and not unknown:
        if total:
            acc.add(FAIL, f"no PHP-FPM master listens on {host.fpm.socket} ({total} other master(s) run)",
                    "human: " + start + " (or fix fpm.socket in the inventory)")
        else:
            acc.add(FAIL, "no PHP-FPM master process is running", "human: " + start)
    elif master and master["workers"] == 0:
        acc.add(FAIL, f"master pid {master['pid']} has no workers", "tool: reload FPM (inventory fpm.reload)", "fpm_reload")
    if err:
        kind, msg = err
        if kind in ("timeout", "closed", "io", "protocol"):
            acc.add(FAIL, f"pool does not answer: {msg}", "tool: reload FPM (inventory fpm.reload), then wait for the pool",
                    "fpm_reload" if (mine or unknown) else None)
        elif kind == "script_unreadable":
            acc.add(FAIL, f"pool answers but cannot read the probe: {msg}",
                    f"human: the pool user must traverse {host.deploy_path} and read {host.deploy_path}/.deploy/probe;"
                    " systemd PrivateTmp/chroot hide other dirs")
        elif kind == "probe_write":
            acc.add(FAIL, f"the probe cannot be written: {msg}",
                    f"human: the deploy user ({ev['meta'].get('user') or host.user}) must be able to write"
                    f" {host.deploy_path}/.deploy/probe")
        elif kind in ("no_socket", "refused", "socket_permission", "connect"):
            pass  # the socket check reports these
        else:
            acc.add(FAIL, f"pool probe failed: {msg}", "human: see the FPM error log")
    if master:
        acc.details.update(master)
    elapsed = ((ping or {}).get("data") or {}).get("elapsed_ms")
    desc = (f"master pid {master['pid']} ({master['args']}, up {master['uptime']}s, {master['workers']} workers)"
            if master else f"{total} php-fpm master(s) running (which one owns the socket needs root to tell)")
    return acc.finding(f"{desc}; pool answers ping" + (f" in {elapsed} ms" if elapsed is not None else ""))


def check_socket(ev, host):
    acc = _Acc("socket")
    sock = host.fpm.socket
    info = ev["fpm"]["socket"] or {"state": "missing"}
    err = _probe_error(ev)
    if sock.startswith("tcp://") or ":" in sock and not sock.startswith("/"):
        acc.details["tcp"] = True
    elif info["state"] == "missing":
        acc.add(FAIL, f"no socket at {sock}",
                f"human: FPM is not running or its pool `listen` differs from fpm.socket ({sock}) in the inventory")
    elif info["state"] == "notsocket":
        acc.add(FAIL, f"{sock} exists but is not a socket", "human: remove it and restart PHP-FPM")
    elif ev["fpm"]["listen_inode"] is None:
        acc.add(FAIL, f"{sock} exists but nothing listens on it (left by a dead FPM)", "human: restart PHP-FPM")
    if err and err[0] == "refused":
        acc.add(FAIL, f"connection refused on {sock}", "human: restart PHP-FPM")
    elif err and err[0] == "socket_permission":
        acc.add(FAIL, f"the deploy user {host.user} may not connect to {sock} ({info.get('owner')}:{info.get('group')} {info.get('mode')})",
                f"human: make {host.user} a member of the socket's group, or set listen.group/listen.mode in the pool")
    ngx = ev["nginx"]
    if ngx.get("worker_socket") == "denied":
        wu = (ngx.get("master") or {}).get("worker_user")
        acc.add(FAIL, f"nginx workers run as {wu} and cannot connect to {sock} ({info.get('owner')}:{info.get('group')}"
                      f" {info.get('mode')}): nginx answers 502",
                f"human: in the pool set listen.owner/listen.group = {wu} and listen.mode = 0660, or run nginx with"
                f" `user {host.web_user};`")
    if info["state"] == "ok":
        acc.details.update(info)
    desc = f"{sock} ({info.get('owner')}:{info.get('group')} {info.get('mode')}) accepts connections"
    if ngx.get("worker_socket") == "ok":
        desc += f"; nginx worker user {(ngx.get('master') or {}).get('worker_user')} may connect"
    return acc.finding(desc)


def check_opcache(ev, host, pipeline):
    acc = _Acc("opcache")
    st = _status_data(ev)
    pool = _pool_data(ev)
    reset_fix = ("tool: OPCache reset inside the pool (FastCGI to its socket, proven by its restart counters),"
                 " then an FPM reload if that is not enough; human: fab heal --host " + host.name +
                 " (never `php -r opcache_reset()`: the CLI has its own cache)")
    if not st:
        acc.add(WARN, "not checked: the pool probe did not answer (see PHP-FPM)", "fix PHP-FPM first")
        return acc.finding("")
    o = st["opcache"]
    if not o.get("enabled"):
        if o.get("api_restricted"):
            acc.add(WARN, "opcache.restrict_api keeps the probe from reading or resetting OPCache",
                    "tool: resets fall back to FPM reloads; human: allow the deploy path in opcache.restrict_api")
            return acc.finding("")
        return acc.finding(f"OPCache is off in the pool ({o.get('reason')}): nothing cached, nothing to reset")
    vt, freq = o.get("validate_timestamps"), o.get("revalidate_freq")
    resets = pipeline is not None and any(s.spec.resets_pool for s in pipeline.steps)
    if vt is False and not resets:
        tail = (" changed code is never picked up until verify's probe catches it and remediation resets the pool"
                if pipeline is not None and in_place(ev) else " changed code is never picked up")
        acc.add(WARN, "validate_timestamps=0 and " + ("no pipeline was given to tell whether deploys reset the pool"
                                                      if pipeline is None else "the pipeline neither resets nor reloads:"
                                                      + tail),
                "human: keep `- opcache_reset` (or `- fpm_reload`) after `- activate` in the pipeline")
    changed = (pool or {}).get("opcache") or {}
    if changed.get("changed_count"):
        files = changed.get("changed") or []
        epoch = changed.get("epoch") or 0
        when = datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%SZ") if epoch else "?"
        names = ", ".join(_short_path(c["path"], host) + ("" if c["why"] == "modified" else " (deleted)") for c in files[:3])
        text = (f"{changed['changed_count']} cached script(s) changed on disk after the pool's OPCache was last"
                f" cleared ({when}): {names}")
        if changed.get("validate_timestamps"):
            acc.add(PASS, text + f" (validate_timestamps=1: re-read within {changed.get('revalidate_freq')}s)")
        else:
            acc.add(FAIL, text + "; with validate_timestamps=0 the pool keeps running the old code", reset_fix,
                    "opcache_reset")
        acc.details["changed"] = files
    fc = o.get("file_cache") or ""
    if fc:
        inv = host.fpm.file_cache
        hint = ("" if inv == fc else f"; human: set fpm: {{file_cache: {fc}}} in the inventory so every deploy's reset clears it")
        acc.add(WARN, f"opcache.file_cache={fc} survives resets and reloads",
                "tool: clears that directory with every reset it makes" + hint)
    stale = o.get("stale_scripts") or 0
    if stale:
        by = o.get("cached_by_release") or {}
        live = st.get("release_dir")
        others = ", ".join(f"{k}: {v}" for k, v in by.items() if k != live)
        acc.add(WARN, f"{stale} scripts of other releases still cached ({others}): memory only while the pool"
                      " resolves the live release", "tool: an OPCache reset (fab heal, or the next deploy) drops them")
    under = o.get("cached_under_current") or 0
    if under:
        acc.add(WARN, f"{under} scripts cached under the symlink path current/: after the next switch the pool may"
                      " serve them from the old release (nginx passes the symlink path?)",
                "human: use $realpath_root in nginx (see the nginx check); tool: the deploy's reset clears them")
    mem = o.get("memory") or {}
    if mem.get("cache_full") or (o.get("oom_restarts") or 0) > 0:
        acc.add(WARN, f"OPCache memory is full (oom_restarts={o.get('oom_restarts')})",
                "human: raise opcache.memory_consumption / opcache.max_accelerated_files")
    if o.get("restart_pending") and not o.get("restart_in_progress"):
        acc.add(WARN, "a reset is pending (a long request holds the cache?)", "tool: an FPM reload completes it")
    return acc.finding(f"enabled; validate_timestamps={int(bool(vt))}, revalidate_freq={freq};"
                       f" {o.get('num_cached_scripts')} scripts cached, none changed on disk since the last clear"
                       + (", the deploys reset the pool" if resets and vt is False else ""))


def _short_path(path, host):
    for root in (host.deploy_path + "/releases/", host.deploy_path + "/"):
        if path.startswith(root):
            rest = path[len(root):]
            return rest.split("/", 1)[1] if root.endswith("releases/") and "/" in rest else rest
    return path


def check_bootstrap_cache(ev, host, pipeline):
    acc = _Acc("bootstrap_cache")
    web = host.web_user
    boot = ev["bootstrap"]
    rel = ev["layout"].get("real")
    live = _live(ev)
    rebuild = ("tool: artisan " + ", ".join(_artisan_commands(pipeline) or DEFAULT_ARTISAN) +
               " one by one as the deploy user in the live " + ("tree" if in_place(ev) else "release") +
               ", each exit code checked, then an OPCache reset in the pool (cached config/routes are loaded"
               " through OPCache)")
    acl_fix = f"tool: setfacl -R -m u:{web}:rwX,d:u:{web}:rwX on bootstrap/cache; human: the same as root"
    if not rel:
        acc.add(WARN, "not checked: no live release", "deploy a release")
        return acc.finding("")
    if boot["nodir"]:
        acc.add(FAIL, "bootstrap/cache is missing: Laravel answers 500 (\"must be present and writable\")",
                acl_fix + " (creates it)", "acl")
        return acc.finding("")
    st = _status_data(ev)
    writable = None
    if st and isinstance(st.get("writable"), dict) and "bootstrap/cache" in st["writable"]:
        writable = st["writable"]["bootstrap/cache"]
        err = ((st.get("writable_dirs") or {}).get("bootstrap/cache") or {}).get("error")
    own = ev["owner"]
    if own["checked"] and not own["noweb"] and own["notw_count"].get("bootstrap/cache"):
        writable = False if writable is None else writable and False
        err = f"{own['notw_count']['bootstrap/cache']} entries not writable"
    files = boot["files"]
    if writable is False:
        missing_rt = [f for f in ("packages.php", "services.php") if f not in files]
        acc.add(FAIL, f"not writable by the pool user {web} ({err})" +
                (f"; {' and '.join(missing_rt)} missing: Laravel answers 500 (\"must be present and writable\")"
                 if missing_rt else ""), acl_fix, "acl" + ("+artisan" if missing_rt else ""))
    expected = [CACHE_FILES[c] for c in _artisan_commands(pipeline) if c in CACHE_FILES]
    for name in expected:
        present = name in files or (name == "routes-v7.php" and "routes.php" in files)
        if not present and pipeline is not None:
            acc.add(FAIL, f"{name} missing (the pipeline caches it)", rebuild, "artisan")
        elif not present:
            # No pipeline tells which caches this app builds: a missing one is not a fault by itself.
            acc.add(WARN, f"{name} missing (the default cache commands build it; no pipeline describes this host)",
                    "human: pass --pipeline with the host's own pipeline to check against its cache commands")
    refs = boot["configref"]
    if in_place(ev):
        # In place the cache must hold paths under the deploy path itself: not under a snapshot
        # (built there, then copied back), not another base path (copied from another server).
        snaps = sorted(posixpath.basename(k) for k in refs if "/.deploy/snapshots/" in k)
        if snaps:
            acc.add(FAIL, f"config.php was built in the snapshot of {', '.join(snaps)}: its paths point into .deploy/snapshots",
                    rebuild, "artisan")
        elsewhere = sorted(b for b in boot["basepath"] if b != rel and not b.startswith(rel + "/"))
        if elsewhere:
            acc.add(FAIL, f"config.php was built for another directory ({', '.join(elsewhere[:2])}), not {rel}:"
                          " its paths point there", rebuild, "artisan")
    other = {k: v for k, v in refs.items() if "/releases/" in k and posixpath.basename(k) != live}
    if other:
        names = ", ".join(sorted(posixpath.basename(k) for k in other))
        acc.add(FAIL, f"config.php was built for another release ({names}): its paths point there", rebuild, "artisan")
    if boot["newer_env"]:
        acc.add(FAIL, f"{boot['newer_env']} changed after config:cache: the change is not applied", rebuild, "artisan")
    if boot["newer_config"]:
        acc.add(FAIL, f"config changed after config:cache ({', '.join(_short_path(p, host) for p in boot['newer_config'][:3])}):"
                      " not applied", rebuild, "artisan")
    if boot["newer_routes"]:
        acc.add(FAIL, f"routes changed after route:cache ({', '.join(_short_path(p, host) for p in boot['newer_routes'][:3])}):"
                      " not registered", rebuild, "artisan")
    acc.details["files"] = sorted(files)
    if in_place(ev):
        built = f"built for {rel} (in place)" if rel in refs else ""
    else:
        built = (f"built for release {live}" if any(posixpath.basename(k) == live for k in refs)
                 else "built through current/" if refs else "")
    return acc.finding(f"{', '.join(sorted(files)) or 'no cache files'} present" + (f", {built}" if built else "") +
                       (f"; writable by {web}" if writable else ""))


# ---------------------------------------------------------------------------- nginx

@dataclass
class _Directive:
    name: str
    args: list
    file: str
    line: int
    block: list | None = None


def nginx_files(dump):
    """`nginx -T` output -> {path: text}, in dump order (the first one is the main config)."""
    files, cur, buf = {}, None, []
    for line in (dump or "").splitlines():
        m = re.match(r"^# configuration file (.+):$", line)
        if m:
            if cur is not None:
                files[cur] = "\n".join(buf)
            cur, buf = m.group(1), []
        elif cur is not None:
            buf.append(line)
    if cur is not None:
        files[cur] = "\n".join(buf)
    return files


def _tokens(text):
    """nginx tokens: (token, line, quoted). Handles comments, quotes, ${var} inside words."""
    i, n, line = 0, len(text), 1
    out = []
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            out.append((c, line, False))
            i += 1
        elif c in "\"'":
            q, j, buf = c, i + 1, []
            while j < n and text[j] != q:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            out.append(("".join(buf), line, True))
            i = j + 1
        else:
            j, buf = i, []
            while j < n and not text[j].isspace() and text[j] not in ";{}\"'":
                if text[j] == "$" and j + 1 < n and text[j + 1] == "{":
                    k = text.find("}", j)
                    if k < 0:
                        break
                    buf.append(text[j:k + 1])
                    j = k + 1
                    continue
                buf.append(text[j])
                j += 1
            if j == i:
                i += 1
                continue
            out.append(("".join(buf), line, False))
            i = j
    return out


def _parse_block(tokens, pos, file, files, main_dir, depth=0):
    out = []
    words = []
    while pos < len(tokens):
        tok, line, quoted = tokens[pos]
        if not quoted and tok == ";":
            if words:
                name, wline = words[0]
                args = [w for w, _ in words[1:]]
                if name == "include" and args and depth < 10:
                    out.extend(_include(args[0], files, main_dir, depth))
                else:
                    out.append(_Directive(name, args, file, wline))
            words = []
        elif not quoted and tok == "{":
            name, wline = words[0] if words else ("", line)
            child, pos = _parse_block(tokens, pos + 1, file, files, main_dir, depth)
            out.append(_Directive(name, [w for w, _ in words[1:]], file, wline, child))
            words = []
        elif not quoted and tok == "}":
            return out, pos
        else:
            words.append((tok, line))
        pos += 1
    return out, pos


def _include(pattern, files, main_dir, depth):
    if not pattern.startswith("/"):
        pattern = posixpath.join(main_dir, pattern)
    out = []
    for path in sorted(p for p in files if fnmatch.fnmatch(p, pattern)):
        tree, _ = _parse_block(_tokens(files[path]), 0, path, files, main_dir, depth + 1)
        out.extend(tree)
    return out


def nginx_tree(dump):
    files = nginx_files(dump)
    if not files:
        return None, None
    main = next(iter(files))
    tree, _ = _parse_block(_tokens(files[main]), 0, main, files, posixpath.dirname(main))
    return main, tree


def _walk(block, chain):
    for d in block or []:
        yield d, chain
        if d.block is not None:
            yield from _walk(d.block, chain + [d])


def _params(block):
    return [d for d in block or [] if d.name == "fastcgi_param" and d.args]


def _effective_params(chain, loc):
    """nginx array inheritance: the innermost level that has any fastcgi_param wins, all of it."""
    for level in [loc] + list(reversed(chain)):
        ps = _params(level.block)
        if ps:
            return ps
    return []


def _last(params, name):
    found = [p for p in params if p.args[0] == name]
    return found[-1] if found else None


def _from_docroot(value, deploy_path):
    return any(v in value for v in ("$document_root", "$realpath_root", "$request_filename")) or deploy_path in value


def analyse_nginx(dump, deploy_path, socket, symlinked=True, in_place=False):
    """Pure analysis of an `nginx -T` dump for the server that serves deploy_path.

    in_place: the code lives directly under deploy_path (no current symlink, nothing is switched):
    the root must be deploy_path/public and $realpath_root is not required.
    Returns {"server": bool, "problems": [(status, evidence, fix)], "ok": [text], "location": "file:line"}.
    """
    main, tree = nginx_tree(dump)
    res = {"main": main, "server": False, "problems": [], "ok": [], "location": None}
    if tree is None:
        return res
    top = _Directive("main", [], main, 0, tree)
    servers = [(d, chain) for d, chain in _walk(tree, [top]) if d.name == "server" and d.block is not None]
    current = deploy_path.rstrip("/") + "/current"
    ours = []
    for srv, chain in servers:
        roots = [d for d, _ in _walk(srv.block, []) if d.name == "root" and d.args]
        passes = [d for d, _ in _walk(srv.block, []) if d.name == "fastcgi_pass" and d.args]
        if any(r.args[0].startswith(deploy_path.rstrip("/") + "/") or r.args[0] == deploy_path for r in roots) or \
                any(p.args[0] in ("unix:" + socket, socket) for p in passes):
            ours.append((srv, chain, roots, passes))
    if not ours:
        return res
    res["server"] = True
    public = deploy_path.rstrip("/") + "/public"
    for srv, chain, roots, passes in ours:
        for r in roots:
            if in_place:
                if r.args[0].rstrip("/") != public:
                    res["problems"].append((WARN, f"{r.file}:{r.line}: root {r.args[0]} is not {public}: nginx does not"
                                                  " serve the tree the in-place deploy writes",
                                            f"human: root {public};"))
            elif not r.args[0].startswith(current):
                res["problems"].append((WARN, f"{r.file}:{r.line}: root {r.args[0]} is not under {current}: the switch"
                                              " of current does not change what nginx serves",
                                        f"human: root {current}/public;"))
        for d, ch in _walk(srv.block, chain + [srv]):
            if d.name != "location" or d.block is None:
                continue
            fp = [x for x in d.block if x.name == "fastcgi_pass" and x.args]
            if not fp:
                continue
            target = fp[-1].args[0]
            where = f"{d.file}:{d.line} location {' '.join(d.args)}"
            if target.startswith("unix:") and target != "unix:" + socket:
                res["problems"].append((FAIL, f"{where} passes PHP to {target}, but the pool listens on {socket}",
                                        f"human: fastcgi_pass unix:{socket}; (or fix fpm.socket in the inventory)"))
            params = _effective_params(ch, d)
            sf, dr = _last(params, "SCRIPT_FILENAME"), _last(params, "DOCUMENT_ROOT")
            if sf is not None and len(sf.args) > 1 and not _from_docroot(sf.args[1], deploy_path):
                continue   # e.g. FPM's own status/ping pages: no script from the document root
            res["location"] = f"{d.file}:{d.line}"
            if in_place:
                # Nothing is switched in place: whatever nginx passes names the one live tree.
                if sf is None or not sf.args[1:]:
                    res["problems"].append((WARN, f"{where} passes no SCRIPT_FILENAME: PHP-FPM cannot find the script",
                                            f"human: in {where}: fastcgi_param SCRIPT_FILENAME"
                                            " $document_root$fastcgi_script_name; (or include fastcgi.conf)"))
                else:
                    res["ok"].append(f"{where} passes SCRIPT_FILENAME {sf.args[1]} (in place: no symlink switch,"
                                     " $realpath_root not required)")
                continue
            bad = []
            if sf is None or not sf.args[1:] or not sf.args[1].startswith("$realpath_root"):
                val = "missing" if sf is None else f"{' '.join(sf.args[1:])} ({sf.file}:{sf.line})"
                bad.append(f"SCRIPT_FILENAME {val}")
            if dr is None or not dr.args[1:] or dr.args[1] != "$realpath_root":
                val = "missing" if dr is None else f"{' '.join(dr.args[1:])} ({dr.file}:{dr.line})"
                bad.append(f"DOCUMENT_ROOT {val}")
            if bad:
                status = FAIL if symlinked else WARN
                why = (" with current a symlink, workers resolve the old release (realpath cache, OPCache keys)"
                       if symlinked else " (fine while current is not a symlink)")
                res["problems"].append((status, f"{where} passes " + ", ".join(bad) + ":" + why,
                                        f"human: in {where}, after the include of fastcgi_params, put exactly: "
                                        + " ".join(REALPATH_LINES) + " then nginx -t && nginx -s reload"))
            else:
                res["ok"].append(f"{where} passes SCRIPT_FILENAME {sf.args[1]} and DOCUMENT_ROOT $realpath_root")
    return res


def check_nginx(ev, host):
    acc = _Acc("nginx")
    ngx = ev["nginx"]
    symlinked = ev["layout"].get("symlink") == "yes"
    if ngx["none"]:
        acc.add(WARN, "nginx is not installed on the host: the web server was not checked",
                "human: check the web server's PHP handler passes the resolved path of current")
        return acc.finding("")
    master = ngx["master"]
    if master is None:
        if ngx["dump"] is None:
            rc = ngx["default_rc"]
            if rc == 126 and ev["meta"].get("root") == "no":
                acc.add(WARN, f"cannot run nginx -T as {ev['meta'].get('user') or host.user} (needs root or sudo)",
                        "human: run `nginx -T` as root, or give the deploy user sudo rights for it")
            else:
                acc.add(WARN, f"no running nginx serves {host.deploy_path}" +
                        (f" ({len(ngx['others'])} other nginx master(s) checked)" if ngx["others"] else ""),
                        "human: check which web server serves the app")
            return acc.finding("")
        acc.add(WARN, "nginx is configured for the app but no nginx master is running", "human: start nginx")
    rc = master["rc"] if master else ngx["default_rc"]
    conf = master["conf"] if master else "/etc/nginx/nginx.conf"
    if rc not in (0, None):
        errors = [l for l in (ngx["dump"] or "").splitlines() if l.startswith("nginx: [")]
        acc.add(FAIL, f"nginx -t fails for {conf}: " + (" ".join(errors[:2]) or f"exit {rc}"),
                "human: fix the config, then nginx -t && nginx -s reload")
        return acc.finding("")
    res = analyse_nginx(ngx["dump"], host.deploy_path, host.fpm.socket, symlinked, in_place(ev))
    for status, evidence, fix in res["problems"]:
        acc.add(status, evidence, fix)
    acc.details.update({"conf": conf, "location": res["location"], "pid": (master or {}).get("pid")})
    if not res["problems"] and not res["ok"]:
        acc.add(WARN, f"no PHP location of {conf} passes to {host.fpm.socket}", "human: check fastcgi_pass")
    return acc.finding(f"nginx -t ok ({conf}, master pid {(master or {}).get('pid')}); " + "; ".join(res["ok"][:1]))


# ---------------------------------------------------------------------------- logs

_LARAVEL_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.\d+)?(?:[+-]\d\d:?\d\d)?\]\s+\S+?\.([A-Z]+):\s?(.*)$")
_PHP_LINE = re.compile(r"^\[(\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d)(?: ([A-Za-z_/+-]+))?\]\s+(.*)$")


def laravel_entries(lines):
    """Laravel single/daily log lines -> [(datetime UTC, LEVEL, message)] (continuation lines dropped)."""
    out = []
    for line in lines:
        m = _LARAVEL_LINE.match(line)
        if m:
            t = _parse_utc(m.group(1).replace("T", " "))
            out.append((t, m.group(2), m.group(3)))
    return out


def php_entries(text):
    out = []
    for line in (text or "").splitlines():
        m = _PHP_LINE.match(line)
        if not m:
            continue
        try:
            t = datetime.strptime(m.group(1), "%d-%b-%Y %H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        msg = m.group(3)
        level = "ERROR" if re.search(r"PHP (Fatal|Parse) error|Uncaught", msg) else (
            "WARNING" if "PHP Warning" in msg else "NOTICE")
        out.append((t, level, msg))
    return out


def check_laravel_log(ev, host):
    acc = _Acc("laravel_log")
    since = last_change(ev["history"])
    lines = ev["log"]["lines"]
    entries = [("laravel.log", e) for e in laravel_entries(lines)]
    pool = _pool_data(ev) or {}
    entries += [("php error log", e) for e in php_entries(pool.get("error_log_tail"))]
    if since is not None:
        entries = [(src, e) for src, e in entries if e[0] is not None and e[0] >= since]
        window = "since " + since.strftime("%Y-%m-%d %H:%M:%SZ")
    else:
        window = f"in the last {LOG_TAIL_LINES} lines"
    errors = [(src, e) for src, e in entries if e[1] in ("ERROR", "CRITICAL", "ALERT", "EMERGENCY")]
    perm = [(src, e) for src, e in entries if any(p in e[2].lower() for p in PERMISSION_PATTERNS)]
    acc.details.update({"since": since.isoformat() if since else None, "errors": len(errors), "permission": len(perm),
                        "file": ev["log"]["file"]})
    if perm:
        src, last = perm[-1]
        text = f"{len(perm)} permission error(s) {window} ({src}, last: {last[2][:160]})"
        if _writable_now(ev) is False:
            acc.add(FAIL, text, f"tool: ACL repair of the writable dirs for {host.web_user}", "acl")
        else:
            acc.add(WARN, text + "; the writable dirs are writable now",
                    "nothing, if the ownership check passes; the window restarts at the next deploy/heal")
    rest = [x for x in errors if x not in perm]
    if rest:
        src, last = rest[-1]
        acc.add(WARN, f"{len(rest)} error(s) {window} ({src}, last: {last[2][:160]})",
                f"human: read {ev['log']['file'] or 'storage/logs/laravel.log'} and the pool's error log")
    where = ev["log"]["file"] or "no laravel.log"
    return acc.finding(f"no errors {window} ({where}" + (", php error log" if pool.get("error_log_tail") is not None else "") + ")")


# ---------------------------------------------------------------------------- running code

def _disk_answer(ev):
    """The answer of the fresh run(s) through the code on disk, or None when unknown or unstable.

    The script runs the code a second time only when the first answer differs from the pool's:
    two equal runs make a stable answer, two different ones a health URL that is not deterministic.
    """
    runs = ev.get("disk") or []
    if not runs or runs[0]["status"] is None:
        return None
    if len(runs) == 1 or runs[0] == runs[1]:
        return runs[0]
    return None


def check_running_code(ev, host, release=None):
    acc = _Acc("running_code")
    layout = ev["layout"]
    if layout.get("deploy") == "missing":
        acc.add(FAIL, f"deploy path {host.deploy_path} does not exist", "human: deploy a release first")
        return acc.finding("")
    live = _live(ev)
    ip = in_place(ev)
    if ip and (not live or not layout.get("real")):
        why = (f"{host.deploy_path}/RELEASE is missing or empty" if layout.get("real")
               else f"nothing deployed under {host.deploy_path}")
        acc.add(FAIL, f"no live release (in place): {why}",
                f"human: deploy (fab deploy --host {host.name}), or fab rollback --host {host.name} to restore a snapshot")
        return acc.finding("")
    if not live or not layout.get("real"):
        hint = ""
        if layout.get("inplace_hint"):
            hint = (f"; {host.deploy_path}/RELEASE exists: the host looks laid out in place (code directly under"
                    " the deploy path): check it with a pipeline that has strategy: in-place")
        acc.add(FAIL, "no live release: current is missing or dangling" + (f" ({layout.get('link')})" if layout.get("link") else "")
                + hint, "human: fab rollback --host " + host.name + " (or deploy)")
        return acc.finding("")
    acc.details["live"] = live
    acc.details["layout"] = IN_PLACE if ip else RELEASES
    if ip and layout.get("current") == "yes":
        acc.add(FAIL, f"the checks assume the in-place layout, but {host.deploy_path}/current exists"
                      + (f" (-> {layout.get('link')})" if layout.get("link") else "")
                      + ": the host has the releases layout, or a move between layouts is half done",
                "human: use the pipeline that matches the host (strategy: releases when current -> releases/<id>),"
                " or finish the move (docs/remediation.md, in-place strategy)")
    if release and release != live:
        acc.add(FAIL, (f"{host.deploy_path}/RELEASE says {live}" if ip else f"current points to {live}")
                + f", expected {release}", "the deploy/rollback decides; nothing healed")
    reset_fix = ("tool: OPCache reset inside the pool, then an FPM reload if still stale; human: fab heal --host "
                 + host.name + " (never `php -r opcache_reset()`)")
    st = _status_data(ev)
    if st and ip:
        # In place nothing is switched: the pool runs the live code when it reads this RELEASE
        # and none of the scripts it cached changed on disk since (fpmctl verify's rule).
        acc.details["pool_release"] = st.get("release")
        if st.get("layout") not in (None, IN_PLACE):
            acc.add(FAIL, f"the pool sees the releases layout ({host.deploy_path}/current resolves to"
                          f" {st.get('current_realpath')}), not code in place", "human: see the first finding above")
        elif st.get("release") != live:
            # RELEASE is read with file_get_contents, not through OPCache: a reset cannot change this.
            acc.add(FAIL, f"the pool reads release {st.get('release')!r}, {host.deploy_path}/RELEASE says {live}",
                    "human: the pool sees another file than the deploy user (a chroot, another mount namespace,"
                    " or a deploy path that is a symlink resolved differently): fix the pool's view of the path")
        o = st.get("opcache") or {}
        n = o.get("changed_scripts") or 0
        acc.details["changed_scripts"] = n
        if n:
            ex = ", ".join(_short_path(p, host) for p in (o.get("changed_examples") or [])[:3])
            acc.add(FAIL, f"the pool runs stale code: {n} cached script(s) changed on disk after it cached them ({ex})"
                    + ("; validate_timestamps=0: never re-read until a reset" if o.get("validate_timestamps") is False
                       else f"; re-read only after revalidate_freq={o.get('revalidate_freq')}s"),
                    reset_fix, "opcache_reset")
    elif st:
        pool_dir = st.get("release_dir")
        acc.details["pool_release"] = pool_dir
        if pool_dir != live:
            acc.add(FAIL, f"the pool resolves current to {pool_dir}, current is {live}", reset_fix, "opcache_reset")
        rfile = layout.get("release_file")
        if rfile and rfile != live:
            acc.add(WARN, f"releases/{live}/RELEASE says {rfile!r}", "human: the RELEASE file should hold the release id")
        rc = st.get("realpath_cache_current") or {}
        if rc.get("stale"):
            acc.add(WARN, f"a worker's realpath cache still maps current to {rc.get('realpath')}"
                          " (harmless with $realpath_root in nginx)", reset_fix)
    else:
        err = _probe_error(ev)
        acc.add(FAIL, "the pool could not be asked what it runs" + (f": {err[1][:160]}" if err else ""),
                "see the PHP-FPM and FastCGI socket checks")
    http, disk = ev.get("http"), _disk_answer(ev)
    if not host.health_url:
        acc.add(WARN, "no health_url for this host: only the pool's probe was checked",
                "human: set health_url in the inventory (a URL that answers the release id, e.g. /version)")
    elif http is not None:
        code, body = http["code"], http["body"]
        acc.details.update({"http_code": code, "http_body": body[:200]})
        shown = _clip(body, 80)
        if code == 0:
            acc.add(FAIL, f"no HTTP answer from {host.health_url}", "human: is the web server running? (see nginx)")
        elif code in (502, 503, 504):
            acc.add(FAIL, f"HTTP {code} from {host.health_url}: the web server cannot get an answer from the pool",
                    "tool: reload FPM; human: see the socket and PHP-FPM checks", "fpm_reload")
        elif code != 200:
            acc.add(FAIL, f"HTTP {code} from {host.health_url}" + (f": {shown}" if shown else ""),
                    "tool: fixes of the other failed checks, then an FPM reload; human: read the Laravel/PHP logs",
                    "fpm_reload")
        else:
            others = [r for r in layout.get("releases", []) if r != live and r in body.split()]
            if live not in body and others:
                acc.add(FAIL, f"HTTP 200 from {host.health_url} shows release {others[0]}, live is {live}: stale code",
                        reset_fix, "opcache_reset")
            elif disk is not None and disk["status"] == 200 and disk["body"].strip() != body.strip():
                acc.add(FAIL, f"the pool answers {shown!r} but the code on disk answers {_clip(disk['body'], 80)!r}"
                              " (fresh php-cli run, OPCache off): the pool runs stale code", reset_fix, "opcache_reset")
            elif live not in body:
                acc.add(WARN, f"HTTP 200 from {host.health_url} but the body does not show the release id {live}: {shown!r}",
                        "human: let the health URL answer the release id so the tool can prove which code runs")
        if disk is None and ev.get("disk"):
            acc.details["disk_unstable"] = True
    ok = (f"the pool executes {live} in place ({host.deploy_path}/RELEASE), no cached script changed on disk"
          if ip else f"the pool executes releases/{live}")
    if http and http["code"] == 200:
        ok += f"; HTTP 200 {_clip(http['body'], 40)!r} from {host.health_url}"
        if disk and disk["status"] == 200:
            ok += ", the same as a fresh run of the code on disk"
    return acc.finding(ok)


# ============================================================================ entry points

def evaluate(ev, host, pipeline, release=None, layout=None):
    """Evidence -> the eight Findings, in CHECKS order. Pure: no I/O (but fills in
    ev["layout"]["layout"] when the evidence does not name the layout; see resolve_layout)."""
    resolve_layout(ev, pipeline, layout)
    if (layout_mode(pipeline, layout) == AUTO and pipeline is not None and ev["layout"].get("layout")
            and layout_mode(pipeline) != ev["layout"]["layout"]):
        # The default pipeline (no --pipeline) is for the other layout: it does not describe this
        # host, so its cache commands and resets are no evidence about it.
        pipeline = None
    if ev["layout"].get("deploy") == "missing":
        miss = Finding("running_code", FAIL, f"deploy path {host.deploy_path} does not exist",
                       "human: deploy a release first (fab deploy --host " + host.name + ")")
        rest = [check_fpm(ev, host), check_socket(ev, host), check_nginx(ev, host)]
        skipped = [Finding(c, WARN, "not checked: nothing deployed", "deploy a release")
                   for c in ("ownership", "opcache", "bootstrap_cache", "laravel_log")]
        by = {f.check: f for f in rest + skipped + [miss]}
        return [by[c] for c in CHECKS]
    return [
        check_ownership(ev, host, pipeline),
        check_fpm(ev, host),
        check_opcache(ev, host, pipeline),
        check_bootstrap_cache(ev, host, pipeline),
        check_socket(ev, host),
        check_nginx(ev, host),
        check_laravel_log(ev, host),
        check_running_code(ev, host, release),
    ]


def run_checks(runner, host, pipeline, release=None, layout=None):
    """Gather evidence on the host (one SSH session; two when fpmctl.php must be uploaded) and
    evaluate it. `release`: the release that should be live (None: whatever is live)."""
    ev = gather(runner, host, pipeline, release, layout)
    return evaluate(ev, host, pipeline, release, layout)


def worst(findings):
    return max((f.status for f in findings), key=lambda s: _RANK[s], default=PASS)
