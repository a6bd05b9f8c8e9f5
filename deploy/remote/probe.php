<?php
/**
 * probe.php - the code fpmctl.php has ONE worker of a PHP-FPM pool execute, to report what the
 * pool itself sees: its OPcache, its realpath cache, its user's rights, its error log.
 *
 * Not run by hand: fpmctl.php copies this file under a random name into its probe dir (with an
 * mtime in the future, so OPcache never caches it), sends one FastCGI request for it and deletes
 * it. Its parameters come from $_GET only: action (ping | status | reset), deploy_path, nonce,
 * log_tail (status: the last N bytes of the pool's PHP error_log, default none). It prints one
 * JSON object. Namespaced so it cannot clash with an auto_prepend_file of the pool.
 *
 * The rule "a cached script changed on disk since the pool cached it" lives here, once
 * (changed_scripts), for two scopes: the live code (what `fpmctl verify` requires to be
 * empty) and every cached script (what `fab health` reports).
 */
namespace FpmctlProbe;

// Warnings must not leak into the JSON body (the pool may have display_errors on); collect them.
$GLOBALS['fpmctl_warnings'] = [];
\set_error_handler(static function (int $no, string $msg): bool {
    $GLOBALS['fpmctl_warnings'][] = $msg;
    return true;
});

/** Take the last warning back out of the list: the caller reports it in its own field. */
function last_warning(): ?string
{
    return \array_pop($GLOBALS['fpmctl_warnings']);
}

function ini_bool(string $key): ?bool
{
    $v = \ini_get($key);
    return $v === false ? null : \filter_var($v, FILTER_VALIDATE_BOOLEAN);
}

function worker_user(): array
{
    // posix is the reliable answer; get_current_user() would name the probe file's OWNER
    // (the deploy user), not the worker, so it is no fallback. /proc + /etc/passwd is.
    if (\function_exists('posix_geteuid')) {
        $uid = \posix_geteuid();
        $pw = \posix_getpwuid($uid);
        return ['user' => $pw['name'] ?? null, 'uid' => $uid, 'gid' => \posix_getegid()];
    }
    $uid = $gid = null;
    foreach (@\file('/proc/self/status') ?: [] as $line) {
        if (\preg_match('/^(Uid|Gid):\s+\d+\s+(\d+)/', $line, $m)) {
            $m[1] === 'Uid' ? $uid = (int) $m[2] : $gid = (int) $m[2];
        }
    }
    $name = null;
    foreach (@\file('/etc/passwd') ?: [] as $line) {
        $f = \explode(':', $line);
        if (\count($f) > 2 && $uid !== null && (int) $f[2] === $uid) {
            $name = $f[0];
            break;
        }
    }
    return ['user' => $name, 'uid' => $uid, 'gid' => $gid];
}

/** As the pool user: is_writable() AND really create + delete a file (ACLs, ro mounts, quotas). */
function writable(string $dir): array
{
    $r = ['path' => $dir, 'exists' => \is_dir($dir), 'is_writable' => false, 'created' => false, 'writable' => false, 'error' => null];
    if (!$r['exists']) {
        $r['error'] = 'missing';
        return $r;
    }
    $r['is_writable'] = \is_writable($dir);
    // fopen 'x' in that exact dir: tempnam() would silently fall back to the system temp dir.
    $name = $dir . '/.fpmctl-write-test-' . \bin2hex(\random_bytes(6));
    $fh = \fopen($name, 'x');
    if ($fh === false) {
        $r['error'] = last_warning() ?? 'cannot create a file';
        return $r;
    }
    \fclose($fh);
    $r['created'] = true;
    if (!\unlink($name)) {
        $r['error'] = 'created but could not delete ' . $name . ': ' . (last_warning() ?? '');
        return $r;
    }
    $r['writable'] = $r['is_writable'];
    return $r;
}

/**
 * The cached scripts (of those $inScope picks) whose file changed on disk after the pool cached
 * it: with validate_timestamps=0 the pool keeps running the old code (the incident). OPcache
 * reports a script's cached mtime ("timestamp") only with validate_timestamps=1; otherwise a
 * file modified after the cache was last cleared ($epoch: its start or last reset) counts, and
 * a file that is gone counts as deleted. Newest change first.
 *
 * @return array{checked:int, changed:list<array{path:string, mtime:?int, why:string}>}
 */
function changed_scripts(array $scripts, int $epoch, callable $inScope): array
{
    $checked = 0;
    $changed = [];
    foreach ($scripts as $path => $info) {
        $path = (string) $path;
        if (!$inScope($path)) {
            continue;
        }
        $checked++;
        \clearstatcache(true, $path);
        $m = @\filemtime($path);
        if ($m === false) {
            $changed[] = ['path' => $path, 'mtime' => null, 'why' => 'deleted'];
        } elseif (isset($info['timestamp']) ? $m !== (int) $info['timestamp'] : $m > $epoch) {
            $changed[] = ['path' => $path, 'mtime' => $m, 'why' => 'modified'];
        }
    }
    \usort($changed, static fn (array $a, array $b): int => ($b['mtime'] ?? PHP_INT_MAX) <=> ($a['mtime'] ?? PHP_INT_MAX));
    return ['checked' => $checked, 'changed' => $changed];
}

function opcache_report(array $roots, array $probeRoots, ?string $liveDir, ?string $liveRoot = null): array
{
    $jitBuffer = \ini_get('opcache.jit_buffer_size');
    $r = [
        'enabled' => false, 'reason' => null, 'api_restricted' => false,
        'restart_pending' => null, 'restart_in_progress' => null,
        'manual_restarts' => null, 'last_restart_time' => null,
        'oom_restarts' => null, 'hash_restarts' => null,
        'num_cached_scripts' => null, 'cached_by_release' => null, 'cached_under_current' => null,
        'cached_other' => null, 'cached_probe' => null, 'stale_scripts' => null,
        'changed_scripts' => null, 'changed_examples' => null, 'changed_cached' => null,
        'memory' => null,
        'validate_timestamps' => ini_bool('opcache.validate_timestamps'),
        'revalidate_freq' => \ini_get('opcache.revalidate_freq') === false ? null : (int) \ini_get('opcache.revalidate_freq'),
        'file_update_protection' => \ini_get('opcache.file_update_protection') === false ? null : (int) \ini_get('opcache.file_update_protection'),
        'file_cache' => (string) \ini_get('opcache.file_cache'),
        'file_cache_only' => ini_bool('opcache.file_cache_only'),
        'jit' => ['mode' => \ini_get('opcache.jit') === false ? null : (string) \ini_get('opcache.jit'),
                  'buffer_size' => $jitBuffer === false ? null : (string) $jitBuffer, 'enabled' => null],
        'probe_cached' => null,
    ];
    if (!\function_exists('opcache_get_status')) {
        $r['reason'] = 'opcache extension not loaded';
        return $r;
    }
    if (!ini_bool('opcache.enable')) {
        $r['reason'] = 'opcache.enable=0';
        return $r;
    }
    // true: the script list is needed for the per-release counts; only counts leave the pool.
    $st = \opcache_get_status(true);
    if (!\is_array($st)) {
        // OPcache is on, but this script may not look at it (opcache.restrict_api): neither
        // may it reset it, which the client must treat as a failure, not as "nothing to reset".
        $r['api_restricted'] = true;
        $r['reason'] = 'opcache_get_status() returned false: opcache.restrict_api excludes the probe dir';
        return $r;
    }
    $stats = $st['opcache_statistics'] ?? [];
    // While a restart is pending opcache_enabled reads false although OPcache is on; the pool
    // has OPcache unless neither holds.
    $r['enabled'] = (bool) ($st['opcache_enabled'] ?? false) || (bool) ($st['restart_pending'] ?? false);
    if (!$r['enabled']) {
        $r['reason'] = 'OPcache is loaded but not active in this pool (see the FPM error log)';
    }
    $r['restart_pending'] = (bool) ($st['restart_pending'] ?? false);
    $r['restart_in_progress'] = (bool) ($st['restart_in_progress'] ?? false);
    foreach (['manual_restarts', 'last_restart_time', 'oom_restarts', 'hash_restarts', 'num_cached_scripts'] as $k) {
        $r[$k] = isset($stats[$k]) ? (int) $stats[$k] : null;
    }
    $mem = $st['memory_usage'] ?? [];
    $r['memory'] = [
        'used' => $mem['used_memory'] ?? null, 'free' => $mem['free_memory'] ?? null,
        'wasted' => $mem['wasted_memory'] ?? null, 'cache_full' => $st['cache_full'] ?? null,
    ];
    $r['jit']['enabled'] = isset($st['jit']['enabled']) ? (bool) $st['jit']['enabled'] : false;

    $byRelease = [];
    $underCurrent = $other = $probe = 0;
    foreach (\array_keys($st['scripts'] ?? []) as $path) {
        $path = (string) $path;
        foreach ($probeRoots as $p) {
            if (\str_starts_with($path, $p . '/')) {
                $probe++;
                continue 2;
            }
        }
        foreach ($roots as $root) {
            if (\str_starts_with($path, $root . '/releases/')) {
                $rest = \substr($path, \strlen($root . '/releases/'));
                $name = \strstr($rest, '/', true);
                if ($name !== false && $name !== '') {
                    $byRelease[$name] = ($byRelease[$name] ?? 0) + 1;
                    continue 2;
                }
            }
            if (\str_starts_with($path, $root . '/current/')) {
                $underCurrent++;
                continue 2;
            }
        }
        $other++;
    }
    $epoch = \max((int) ($stats['start_time'] ?? 0), (int) ($stats['last_restart_time'] ?? 0));
    $scripts = $st['scripts'] ?? [];
    if ($liveRoot !== null) {
        // The live code: what `fpmctl verify` requires to be unchanged (in place, .deploy/ holds
        // the snapshots of earlier trees: not live code).
        $live = changed_scripts($scripts, $epoch, static fn (string $path): bool =>
            \str_starts_with($path, $liveRoot . '/') && !\str_contains($path, '/.deploy/'));
        $r['changed_scripts'] = \count($live['changed']);
        $r['changed_examples'] = \array_column(\array_slice($live['changed'], 0, 5), 'path');
    }
    // Everything the pool cached, but the probes, the tool's own dir and other releases (those
    // are counted per release above; a pruned release's files are gone on purpose): what the
    // health check reports, the code outside the deploy path included.
    $all = changed_scripts($scripts, $epoch, static function (string $path) use ($roots, $probeRoots, $liveRoot): bool {
        foreach ($probeRoots as $p) {
            if (\str_starts_with($path, $p . '/')) {
                return false;
            }
        }
        foreach ($roots as $r) {
            if (\str_starts_with($path, $r . '/.deploy/')) {
                return false;
            }
            if (\str_starts_with($path, $r . '/releases/') && ($liveRoot === null || !\str_starts_with($path, $liveRoot . '/'))) {
                return false;
            }
        }
        return true;
    });
    $r['changed_cached'] = [
        'start_time' => (int) ($stats['start_time'] ?? 0), 'last_restart_time' => (int) ($stats['last_restart_time'] ?? 0),
        'epoch' => $epoch, 'validate_timestamps' => $r['validate_timestamps'], 'revalidate_freq' => $r['revalidate_freq'],
        'checked' => $all['checked'], 'changed_count' => \count($all['changed']),
        'changed' => \array_slice($all['changed'], 0, 20),
    ];
    \ksort($byRelease, SORT_NATURAL);
    $r['cached_by_release'] = (object) $byRelease;   // {} not [] when empty
    $r['cached_under_current'] = $underCurrent;
    $r['cached_other'] = $other;
    $r['cached_probe'] = $probe;
    if ($liveDir !== null) {
        $stale = 0;
        foreach ($byRelease as $name => $n) {
            if ((string) $name !== $liveDir) {
                $stale += $n;
            }
        }
        $r['stale_scripts'] = $stale;
    }
    $r['probe_cached'] = \function_exists('opcache_is_script_cached') ? \opcache_is_script_cached(__FILE__) : null;
    return $r;
}

/** The last $bytes of the pool's PHP error log (null: none, syslog, or not readable by the pool user). */
function log_tail(string $file, int $bytes): ?string
{
    if ($file === '' || $file === 'syslog' || !\is_file($file) || !\is_readable($file)) {
        return null;
    }
    $fh = \fopen($file, 'r');
    if ($fh === false) {
        return null;
    }
    \fseek($fh, \max(0, (int) \filesize($file) - $bytes));
    $tail = \stream_get_contents($fh);
    \fclose($fh);
    return $tail === false ? null : $tail;
}

function status(string $deploy, int $logTail = 0): array
{
    $current = $deploy . '/current';
    // Read the worker's realpath cache BEFORE touching current/: any stat below repopulates it.
    $rc = \function_exists('realpath_cache_get') ? \realpath_cache_get() : [];
    $cached = $rc[$current] ?? null;
    // Drop only this entry (not the whole cache) so realpath() sees the symlink as it is now.
    \clearstatcache(true, $current);
    $real = \realpath($current);
    $real = $real === false ? null : $real;
    $layout = 'releases';
    if ($real === null && \is_file($deploy . '/RELEASE')) {
        // strategy in-place: the code lives directly under the deploy path.
        $layout = 'in-place';
        $real = \realpath($deploy) ?: $deploy;
    }
    $releaseFile = $real === null ? false : @\file_get_contents($real . '/RELEASE');
    $realDeploy = \realpath($deploy);
    $roots = \array_values(\array_unique(\array_filter([$deploy, $realDeploy === false ? null : $realDeploy])));
    $probeDir = \dirname(__FILE__);
    $realProbeDir = \realpath($probeDir);
    $probeRoots = \array_values(\array_unique(\array_filter([$probeDir, $realProbeDir === false ? null : $realProbeDir])));
    $liveDir = $real === null || $layout === 'in-place' ? null : \basename($real);
    $w = [];
    $wDetail = [];
    foreach (['storage', 'bootstrap/cache'] as $d) {
        // Checked under the resolved release, not current/: a stale realpath cache must not
        // make us test the previous release's dirs.
        $wDetail[$d] = writable(($real ?? $current) . '/' . $d);
        $w[$d] = $wDetail[$d]['writable'];
    }
    return \array_merge(worker_user(), [
        'pid' => \getmypid(),
        'php_version' => PHP_VERSION,
        'sapi' => \php_sapi_name(),
        'hostname' => \gethostname(),
        'deploy_path' => $deploy,
        'current_realpath' => $real,
        'release' => $releaseFile === false ? null : \trim($releaseFile),
        'release_dir' => $liveDir,
        'realpath_cache_current' => $cached === null ? null : [
            'realpath' => $cached['realpath'] ?? null,
            'expires_in' => isset($cached['expires']) ? (int) $cached['expires'] - \time() : null,
            'stale' => ($cached['realpath'] ?? null) !== $real,
        ],
        'layout' => $layout,
        'opcache' => opcache_report($roots, $probeRoots, $liveDir, $real),
        'error_log' => (string) \ini_get('error_log'),
        'error_log_tail' => $logTail > 0 ? log_tail((string) \ini_get('error_log'), $logTail) : null,
        'writable' => $w,
        'writable_dirs' => $wDetail,
        'time' => \microtime(true),
    ]);
}

/** Seconds of an FPM time value: 10, 10s, 1m, 1h, 1d. Null when it is not one. */
function fpm_seconds(string $v): ?int
{
    if (!\preg_match('/^(\d+)\s*([smhd]?)$/i', \trim($v, " \t\"'"), $m)) {
        return null;
    }
    return (int) $m[1] * ['' => 1, 's' => 1, 'm' => 60, 'h' => 3600, 'd' => 86400][\strtolower($m[2])];
}

/**
 * The pool's master (this worker's parent): its config file, from its process title
 * ("php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"), and the process_control_timeout
 * of that file's [global] section (FPM's default: 0, a reload then kills running requests).
 */
function master_info(): array
{
    $ppid = \function_exists('posix_getppid') ? \posix_getppid() : null;
    $r = ['master_pid' => $ppid, 'config' => null, 'process_control_timeout' => null, 'error' => null];
    $title = $ppid === null ? false : @\file_get_contents("/proc/$ppid/cmdline");
    if ($title === false || !\preg_match('/master process \((.+)\)/', $title, $m)) {
        $r['error'] = 'cannot read the master\'s process title (/proc/' . $ppid . '/cmdline)';
        return $r;
    }
    $r['config'] = $m[1];
    $lines = @\file($m[1], FILE_IGNORE_NEW_LINES);
    if ($lines === false) {
        $r['error'] = 'cannot read ' . $m[1] . ' as the pool user: ' . (last_warning() ?? '');
        return $r;
    }
    $section = 'global';
    $value = '0';
    foreach ($lines as $line) {
        if (\preg_match('/^\s*\[(.+)\]\s*$/', $line, $sm)) {
            $section = \trim($sm[1]);
        } elseif ($section === 'global' && \preg_match('/^\s*process_control_timeout\s*=\s*(.*?)\s*$/', $line, $vm)) {
            $value = \trim((string) \preg_replace('/\s*;.*$/', '', $vm[1]));
        }
    }
    $r['process_control_timeout'] = fpm_seconds($value);
    if ($r['process_control_timeout'] === null) {
        $r['error'] = "unreadable process_control_timeout value '$value' in " . $m[1];
    }
    return $r;
}

\header('Content-Type: application/json');
\header('Cache-Control: no-store');
$action = (string) ($_GET['action'] ?? '');
$deploy = \rtrim((string) ($_GET['deploy_path'] ?? ''), '/');
$out = ['nonce' => (string) ($_GET['nonce'] ?? ''), 'action' => $action];
switch ($action) {
    case 'ping':
        $out += ['pong' => true, 'pid' => \getmypid()];
        break;
    case 'status':
        $out += status($deploy, \max(0, \min(1048576, (int) ($_GET['log_tail'] ?? 0))));
        break;
    case 'master':
        $out += master_info();
        break;
    case 'reset':
        $pending = \function_exists('opcache_get_status') ? (\opcache_get_status(false)['restart_pending'] ?? null) : null;
        $out += [
            'pid' => \getmypid(),
            'restart_pending_before' => $pending,
            'opcache_reset' => \function_exists('opcache_reset') ? \opcache_reset() : null,
        ];
        break;
    default:
        \http_response_code(400);
        $out['error'] = 'unknown probe action';
}
$out['warnings'] = $GLOBALS['fpmctl_warnings'];
echo \json_encode($out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
