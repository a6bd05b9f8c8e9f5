<?php
/**
 * fpmctl.php - ask a PHP-FPM pool itself what it executes, and reset its OPcache.
 *
 * Runs on the target host (PHP 8.2 CLI, default extensions only), as the deploy user
 * (root or a normal user that may connect to the pool's socket):
 *
 *   php fpmctl.php ACTION --socket=/run/php/x.sock --deploy-path=/var/www/app
 *                  [--probe-dir=DIR] [--timeout=SECONDS] [--ping-path=/ping] [--script=PATH]
 *
 * Why this exists: the CLI has its own OPcache (or none), so `php -r 'opcache_reset()'` never
 * touches the pool, and the deployer's shell cannot see what the pool's workers see (their
 * OPcache, their realpath cache, what *their* user may write). Only code running inside a pool
 * worker can answer, so this script is a minimal FastCGI client (like cachetool): it writes a
 * small probe PHP file, asks the pool to execute it, and always deletes it again.
 *
 * Actions (each prints exactly ONE JSON object on stdout; errors also go to stderr):
 *   status   one probe request; the worker reports pid, user, release, realpath cache entry of
 *            current/, OPcache counters (per-release cached-script counts, stale scripts),
 *            and whether storage/ and bootstrap/cache are writable by the pool user.
 *   reset    status (before), opcache_reset() in the pool, then status again until the deferred
 *            restart shows (manual_restarts or last_restart_time moved), polling up to ~1 s.
 *   ping     one request that proves a worker answers (probe, or the pool's ping.path with
 *            --ping-path, which needs no probe file); meant to be fast (default timeout 5 s).
 *   wait     ping every 0.1 s until it succeeds or --timeout seconds have passed (after a reload).
 *   verify   --release=ID: exit 0 when the pool executes release ID (releases layout: the dir
 *            current resolves to; in place: the RELEASE file) and no cached script of the live
 *            code changed on disk after it was cached; else exit 1 with a one-line "reason".
 *   request  one GET for an arbitrary --script=PATH (as nginx would send it), prints status,
 *            headers and body. Needs no --deploy-path. With --document-root, --uri and --host the
 *            params are those nginx sends for that URL through a front controller (SCRIPT_NAME
 *            relative to the root, REQUEST_URI and QUERY_STRING from the URI, HTTP_HOST,
 *            SERVER_NAME, SERVER_PORT; --https=1 for an https URL). With --expect-status (and
 *            optionally --expect-body=TEXT) it is a check: exit 0 when the answer has that status
 *            and its body contains TEXT, 1 with a one-line "reason" when not.
 *   graceful exit 0 when a graceful reload (SIGUSR2) lets the requests in flight finish: the
 *            pool's master has process_control_timeout > 0 in the [global] section of the config
 *            it runs (its process title names it); 1 when it is 0, the default, with which a
 *            reload kills them (nginx answers 502). Unknown (config unreadable): exit 0, "checked": false.
 *
 * Flags:
 *   --socket=PATH        the pool's `listen` (unix socket path, or tcp://host:port). Required.
 *   --deploy-path=DIR    absolute deploy path (holds current -> releases/<id>). Required for
 *                        status, reset, and ping/wait unless --ping-path is given.
 *   --probe-dir=DIR      where the probe file is written (default <deploy-path>/.deploy/probe,
 *                        created 0755). Not /tmp: systemd's PrivateTmp hides /tmp from FPM.
 *   --timeout=SECONDS    per request for status/reset/ping/request; total for wait. Default 5.
 *   --ping-path=URI      ping/wait: use the pool's ping.path instead of a probe file.
 *   --script=PATH        request: the SCRIPT_FILENAME to execute. --query=STRING optional.
 *   --document-root=DIR  request: DOCUMENT_ROOT (default: the script's dir); SCRIPT_NAME is the
 *                        script's path below it.
 *   --uri=URI            request: REQUEST_URI, path and query (QUERY_STRING is its query).
 *   --host=HOST[:PORT]   request: HTTP_HOST; SERVER_NAME and SERVER_PORT from it.
 *   --https=1            request: HTTPS=on, REQUEST_SCHEME=https (default port 443).
 *   --expect-status=N    request: check the status (see request above); --expect-body=TEXT too.
 *
 * Exit codes:
 *   0  success (reset: also when OPcache is disabled in the pool: "reset": null + "reason")
 *   1  a check failed (reset: the pool never showed a completed restart within ~1 s, e.g. a long
 *      request held the cache; or opcache.restrict_api keeps the probe from resetting)
 *   2  usage error (unknown action/flag, missing or malformed value, deploy path missing)
 *   3  the pool could not be reached or answered with an error: no such socket, connection
 *      refused, permission denied on the socket, timeout, broken FastCGI answer, "Primary script
 *      unknown"/access denied (the pool user cannot read the probe file), non-200 status, or the
 *      probe file could not be written. JSON "error" holds the message, "error_kind" one of:
 *      no_socket, refused, socket_permission, timeout, connect, io, closed, protocol,
 *      script_unreadable, http_status, bad_response, probe_write.
 *
 * Every value reaches the pool as FastCGI params or a query string; nothing is ever passed
 * through a shell.
 */

declare(strict_types=1);

const FCGI_VERSION_1 = 1;
const FCGI_BEGIN_REQUEST = 1;
const FCGI_END_REQUEST = 3;
const FCGI_PARAMS = 4;
const FCGI_STDIN = 5;
const FCGI_STDOUT = 6;
const FCGI_STDERR = 7;
const FCGI_RESPONDER = 1;
const FCGI_REQUEST_ID = 1;
// Protocol status values of FCGI_END_REQUEST (the spec's names, for messages).
const FCGI_PROTOCOL_STATUS = [0 => 'REQUEST_COMPLETE', 1 => 'CANT_MPX_CONN', 2 => 'OVERLOADED', 3 => 'UNKNOWN_ROLE'];

const EXIT_OK = 0;
const EXIT_CHECK_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_POOL = 3;

const DEFAULT_TIMEOUT = 5.0;
const RESET_VERIFY_WINDOW = 1.0;   // seconds to wait for the deferred restart to show
const RESET_VERIFY_SLEEP_US = 50000;
const WAIT_SLEEP_US = 100000;
const BODY_EXCERPT = 500;

/** Wrong invocation: exit 2. */
final class UsageError extends RuntimeException
{
}

/** The pool could not be reached or answered with an error: exit 3. */
final class PoolError extends RuntimeException
{
    /** @param array<string,mixed> $extra merged into the JSON output */
    public function __construct(string $message, public readonly string $kind, public readonly array $extra = [])
    {
        parent::__construct($message);
    }
}

/**
 * The code that runs INSIDE the pool. Kept as a nowdoc so nothing of the client is interpolated
 * into it; its parameters come from $_GET only. It is namespaced so it cannot clash with an
 * auto_prepend_file of the pool.
 */
const PROBE_CODE = <<<'PHP'
<?php
// fpmctl probe: written by fpmctl.php, executed by one FPM worker, deleted right after.
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
        'changed_scripts' => null, 'changed_examples' => null,
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
    // Scripts of the LIVE code whose file changed on disk after the pool cached them: with
    // validate_timestamps=0 the pool still runs the old code (the incident). The cached mtime
    // ("timestamp") is only reported when validate_timestamps=1; otherwise anything modified
    // after the cache was last cleared (start or last reset) counts.
    if ($liveRoot !== null) {
        $epoch = \max((int) ($stats['start_time'] ?? 0), (int) ($stats['last_restart_time'] ?? 0));
        $changed = [];
        foreach ($st['scripts'] ?? [] as $path => $info) {
            $path = (string) $path;
            if (!\str_starts_with($path, $liveRoot . '/') || \str_contains($path, '/.deploy/')) {
                continue;
            }
            \clearstatcache(true, $path);
            $m = @\filemtime($path);
            if ($m === false) {
                $changed[] = $path;
            } elseif (isset($info['timestamp']) ? $m !== (int) $info['timestamp'] : $m > $epoch) {
                $changed[] = $path;
            }
        }
        $r['changed_scripts'] = \count($changed);
        $r['changed_examples'] = \array_slice($changed, 0, 5);
    }
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

function status(string $deploy): array
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
        $out += status($deploy);
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
PHP;

// ---------------------------------------------------------------------------------------------
// FastCGI client
// ---------------------------------------------------------------------------------------------

function fcgi_record(int $type, string $content): string
{
    $len = strlen($content);
    $pad = (8 - $len % 8) % 8;   // align records to 8 bytes, as the spec recommends
    return pack('CCnnCC', FCGI_VERSION_1, $type, FCGI_REQUEST_ID, $len, $pad, 0) . $content . str_repeat("\0", $pad);
}

/** A stream (PARAMS/STDIN): content split into <=65535-byte records, then the empty terminator. */
function fcgi_stream(int $type, string $content): string
{
    $out = '';
    foreach (str_split($content, 65535) as $chunk) {
        if ($chunk !== '') {
            $out .= fcgi_record($type, $chunk);
        }
    }
    return $out . fcgi_record($type, '');
}

function fcgi_name_value(string $name, string $value): string
{
    $enc = static fn (int $n): string => $n < 128 ? chr($n) : pack('N', $n | 0x80000000);
    return $enc(strlen($name)) . $enc(strlen($value)) . $name . $value;
}

function classify_connect_error(string $socket, int $errno, string $errstr): PoolError
{
    $s = strtolower($errstr);
    [$kind, $hint] = match (true) {
        str_contains($s, 'no such file') => ['no_socket', 'no such socket: is php-fpm running, and is this the pool\'s `listen` path?'],
        str_contains($s, 'refused') => ['refused', 'connection refused: the socket file exists but no FPM master listens on it (stopped or crashed?)'],
        str_contains($s, 'permission denied') => ['socket_permission', 'permission denied on the socket: the deploy user needs to be listen.owner or in listen.group (listen.mode)'],
        str_contains($s, 'timed out') => ['timeout', 'timed out connecting to the socket'],
        default => ['connect', 'cannot connect to the socket'],
    };
    return new PoolError(sprintf('%s (%s: %s, errno %d)', $hint, $socket, $errstr, $errno), $kind);
}

/**
 * One FastCGI responder request. Returns status/headers/body/stderr. Throws PoolError on
 * connect/IO/protocol problems; HTTP-level errors are left to the caller.
 *
 * @param array<string,string> $params
 * @return array{status:int, headers:array<string,string>, body:string, stderr:string, app_status:int, elapsed_ms:float}
 */
function fcgi_request(string $socket, array $params, float $timeout): array
{
    $t0 = microtime(true);
    $deadline = $t0 + $timeout;
    $address = str_starts_with($socket, 'tcp://') ? $socket : 'unix://' . $socket;
    $errno = 0;
    $errstr = '';
    // @: the failure is reported through $errno/$errstr as JSON, not as a PHP warning.
    $fp = @stream_socket_client($address, $errno, $errstr, $timeout);
    if ($fp === false) {
        throw classify_connect_error($socket, $errno, $errstr);
    }
    try {
        $pairs = '';
        foreach ($params as $k => $v) {
            $pairs .= fcgi_name_value((string) $k, (string) $v);
        }
        // flags=0: the server closes the connection after the request (no keep-alive to manage).
        $msg = fcgi_record(FCGI_BEGIN_REQUEST, pack('nCx5', FCGI_RESPONDER, 0))
            . fcgi_stream(FCGI_PARAMS, $pairs)
            . fcgi_stream(FCGI_STDIN, '');
        $sent = 0;
        while ($sent < strlen($msg)) {
            set_timeout($fp, $deadline, $socket);
            $n = @fwrite($fp, substr($msg, $sent));
            if ($n === false || $n === 0) {
                throw new PoolError("write to $socket failed: the pool closed the connection", 'io');
            }
            $sent += $n;
        }

        $buf = $stdout = $stderr = '';
        $appStatus = null;
        while ($appStatus === null) {
            set_timeout($fp, $deadline, $socket);
            $chunk = @fread($fp, 65536);
            if ($chunk === false || $chunk === '') {
                if (stream_get_meta_data($fp)['timed_out']) {
                    throw new PoolError(sprintf('no complete answer from %s within %.1f s (all workers busy or stuck?)', $socket, $timeout), 'timeout');
                }
                if (feof($fp)) {
                    throw new PoolError("the pool closed the connection before FCGI_END_REQUEST ($socket); worker crashed? see the FPM error log", 'closed',
                        ['stderr' => $stderr]);
                }
                continue;
            }
            $buf .= $chunk;
            while (strlen($buf) >= 8) {
                $h = unpack('Cversion/Ctype/nid/nlen/Cpad', $buf);
                $total = 8 + $h['len'] + $h['pad'];
                if (strlen($buf) < $total) {
                    break;
                }
                $content = substr($buf, 8, $h['len']);
                $buf = substr($buf, $total);
                if ($h['type'] === FCGI_STDOUT) {
                    $stdout .= $content;
                } elseif ($h['type'] === FCGI_STDERR) {
                    $stderr .= $content;
                } elseif ($h['type'] === FCGI_END_REQUEST) {
                    $end = unpack('NappStatus/CprotocolStatus', $content);
                    if ($end['protocolStatus'] !== 0) {
                        throw new PoolError(sprintf('the pool refused the request: %s',
                            FCGI_PROTOCOL_STATUS[$end['protocolStatus']] ?? (string) $end['protocolStatus']), 'protocol');
                    }
                    $appStatus = $end['appStatus'];
                    break;
                }
                // Other record types (e.g. FCGI_UNKNOWN_TYPE) carry nothing we need.
            }
        }
    } finally {
        fclose($fp);
    }

    // CGI response: headers, blank line, body. "Status:" sets the HTTP status (default 200).
    $sep = strpos($stdout, "\r\n\r\n");
    $sepLen = 4;
    if ($sep === false) {
        $sep = strpos($stdout, "\n\n");
        $sepLen = 2;
    }
    $headerBlock = $sep === false ? $stdout : substr($stdout, 0, $sep);
    $body = $sep === false ? '' : substr($stdout, $sep + $sepLen);
    $headers = [];
    foreach (preg_split('/\r?\n/', $headerBlock) ?: [] as $line) {
        if (str_contains($line, ':')) {
            [$k, $v] = explode(':', $line, 2);
            $headers[strtolower(trim($k))] = trim($v);
        }
    }
    $status = 200;
    if (isset($headers['status']) && preg_match('/^(\d{3})/', $headers['status'], $m)) {
        $status = (int) $m[1];
    }
    return [
        'status' => $status, 'headers' => $headers, 'body' => $body, 'stderr' => $stderr,
        'app_status' => $appStatus, 'elapsed_ms' => round((microtime(true) - $t0) * 1000, 1),
    ];
}

/** Apply what is left of the overall deadline as the stream's read/write timeout. */
function set_timeout($fp, float $deadline, string $socket): void
{
    $left = $deadline - microtime(true);
    if ($left <= 0) {
        throw new PoolError("timed out talking to $socket", 'timeout');
    }
    stream_set_timeout($fp, (int) $left, (int) (($left - (int) $left) * 1e6));
}

/** FastCGI params for a GET of $script, shaped like nginx's fastcgi_params. */
function cgi_params(string $script, string $query): array
{
    $name = '/' . basename($script);
    return [
        'GATEWAY_INTERFACE' => 'CGI/1.1',
        'SERVER_SOFTWARE' => 'fpmctl',
        'SERVER_PROTOCOL' => 'HTTP/1.1',
        'SERVER_NAME' => 'localhost',
        'SERVER_ADDR' => '127.0.0.1',
        'SERVER_PORT' => '80',
        'HTTP_HOST' => 'localhost',
        'REMOTE_ADDR' => '127.0.0.1',
        'REMOTE_PORT' => '0',
        'REQUEST_METHOD' => 'GET',
        'REQUEST_SCHEME' => 'http',
        'SCRIPT_FILENAME' => $script,
        'SCRIPT_NAME' => $name,
        'DOCUMENT_URI' => $name,
        'REQUEST_URI' => $name . ($query === '' ? '' : '?' . $query),
        'DOCUMENT_ROOT' => dirname($script),
        'QUERY_STRING' => $query,
        'CONTENT_TYPE' => '',
        'CONTENT_LENGTH' => '',
    ];
}

/**
 * The params nginx sends for a URL served by a front controller (try_files ... /index.php?$query_string):
 * cgi_params() with DOCUMENT_ROOT, SCRIPT_NAME, REQUEST_URI, QUERY_STRING, HTTP_HOST, SERVER_NAME,
 * SERVER_PORT and HTTPS as given. Without those flags: cgi_params() as it is.
 */
function request_params(string $script, string $query, array $o): array
{
    $p = cgi_params($script, $query);
    $root = rtrim($o['document-root'] ?? '', '/');
    if ($root !== '') {
        $name = substr($script, strlen($root));
        $p['DOCUMENT_ROOT'] = $root;
        $p['SCRIPT_NAME'] = $p['DOCUMENT_URI'] = $name;
        $p['REQUEST_URI'] = $name . ($query === '' ? '' : '?' . $query);
    }
    $https = ($o['https'] ?? '') === '1';
    if ($https) {
        $p['HTTPS'] = 'on';
        $p['REQUEST_SCHEME'] = 'https';
        $p['SERVER_PORT'] = '443';
    }
    if (($o['uri'] ?? '') !== '') {
        $p['REQUEST_URI'] = $o['uri'];
        $q = strpos($o['uri'], '?');
        $p['QUERY_STRING'] = $q === false ? '' : substr($o['uri'], $q + 1);
    }
    if (($o['host'] ?? '') !== '') {
        $p['HTTP_HOST'] = $o['host'];
        if (preg_match('/^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/', $o['host'], $m)) {
            $p['SERVER_NAME'] = trim($m[1], '[]');
            if (isset($m[2])) {
                $p['SERVER_PORT'] = $m[2];
            }
        }
    }
    return $p;
}

/** A body in one short line for a reason: an HTML page's <title>, else its start. */
function body_gist(string $body): string
{
    if (preg_match('#<title[^>]*>(.*?)</title>#is', $body, $m)) {
        return 'page titled "' . trim(preg_replace('/\s+/', ' ', html_entity_decode($m[1]))) . '"';
    }
    $text = trim((string) preg_replace('/\s+/', ' ', substr($body, 0, 200)));
    return $text === '' ? 'empty body' : $text;
}

/** Turn a non-200 answer into a PoolError, naming the usual cause. */
function check_http(array $res, string $script): void
{
    if ($res['status'] === 200) {
        return;
    }
    $stderr = trim($res['stderr']);
    $body = substr($res['body'], 0, BODY_EXCERPT);
    if (str_contains($stderr, 'Primary script unknown') || str_contains($stderr, 'Unable to open primary script')
        || ($res['status'] === 403 && str_contains($body, 'Access denied'))) {
        throw new PoolError(sprintf('the pool could not read %s (FPM: %s, HTTP %d): the pool user must be able to traverse every '
            . 'directory above it and read it; FPM may also see another filesystem (systemd PrivateTmp, chroot). Use --probe-dir '
            . 'in a directory the pool user can read.', $script, $stderr !== '' ? $stderr : trim($body), $res['status']),
            'script_unreadable', ['status' => $res['status'], 'body' => $body, 'stderr' => $stderr]);
    }
    throw new PoolError(sprintf('the pool answered HTTP %d for %s: %s%s', $res['status'], $script, $body,
        $stderr === '' ? '' : ' (stderr: ' . substr($stderr, 0, BODY_EXCERPT) . ')'),
        'http_status', ['status' => $res['status'], 'body' => $body, 'stderr' => $stderr]);
}

// ---------------------------------------------------------------------------------------------
// Probe file: written once per invocation, removed in every case (finally + shutdown + signals)
// ---------------------------------------------------------------------------------------------

final class Probe
{
    private ?string $path = null;

    public function __construct(private readonly string $dir)
    {
    }

    public function path(): string
    {
        if ($this->path !== null) {
            return $this->path;
        }
        $this->ensureDir();
        $path = $this->dir . '/probe-' . bin2hex(random_bytes(8)) . '.php';
        // 'x': never follow or overwrite something already there.
        $fh = @fopen($path, 'x');
        if ($fh === false) {
            throw new PoolError("cannot write the probe file $path: " . (error_get_last()['message'] ?? 'unknown error')
                . ' (the deploy user must be able to write --probe-dir)', 'probe_write');
        }
        $this->path = $path;   // from here on remove() owns it, whatever happens next
        $ok = fwrite($fh, PROBE_CODE) === strlen(PROBE_CODE);
        fclose($fh);
        // 0644 whatever the deploy user's umask: the pool user must read it.
        if (!$ok || !chmod($path, 0644)) {
            throw new PoolError("cannot write the probe file $path", 'probe_write');
        }
        // mtime in the future: with opcache.file_update_protection (default 2 s) OPcache refuses to
        // cache "just modified" files, so the probe never takes a slot in the pool's OPcache, and
        // random probe names do not pile up as dead cached scripts under validate_timestamps=0.
        @touch($path, time() + 3600);
        return $path;
    }

    public function remove(): void
    {
        if ($this->path !== null) {
            @unlink($this->path);
            $this->path = null;
        }
    }

    private function ensureDir(): void
    {
        if (is_dir($this->dir)) {
            return;
        }
        // Create missing components one by one with an explicit chmod 0755: mkdir() applies
        // the umask, and a 0700 .deploy/ would hide the probe from the pool user.
        $missing = [];
        for ($d = $this->dir; !is_dir($d) && $d !== dirname($d); $d = dirname($d)) {
            $missing[] = $d;
        }
        foreach (array_reverse($missing) as $d) {
            if (!@mkdir($d, 0755) && !is_dir($d)) {
                throw new PoolError("cannot create the probe dir $d: " . (error_get_last()['message'] ?? 'unknown error'), 'probe_write');
            }
            @chmod($d, 0755);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

final class Ctl
{
    public function __construct(
        public readonly string $socket,
        public readonly ?string $deployPath,
        public readonly Probe $probe,
        public readonly float $timeout,
    ) {
    }

    /** Run the probe in the pool and return its decoded JSON. */
    public function probe(string $action, ?float $timeout = null): array
    {
        $script = $this->probe->path();
        $nonce = bin2hex(random_bytes(8));
        $query = http_build_query(['action' => $action, 'deploy_path' => (string) $this->deployPath, 'nonce' => $nonce]);
        $res = fcgi_request($this->socket, cgi_params($script, $query), $timeout ?? $this->timeout);
        check_http($res, $script);
        $data = json_decode($res['body'], true);
        // The nonce proves the body is our probe's answer (not an auto_prepend echo or a cached page).
        if (!is_array($data) || ($data['nonce'] ?? null) !== $nonce) {
            throw new PoolError('the probe answered something that is not its JSON: ' . substr($res['body'], 0, BODY_EXCERPT)
                . ($res['stderr'] === '' ? '' : ' (stderr: ' . substr($res['stderr'], 0, BODY_EXCERPT) . ')'), 'bad_response');
        }
        unset($data['nonce']);
        // json_decode(..., true) turns the probe's {} into [], which would re-encode as a list.
        if (isset($data['opcache']['cached_by_release']) && $data['opcache']['cached_by_release'] === []) {
            $data['opcache']['cached_by_release'] = new stdClass();
        }
        $data['elapsed_ms'] = $res['elapsed_ms'];
        return $data;
    }

    public function status(): array
    {
        return ['ok' => true] + $this->probe('status');
    }

    /**
     * verify: does the pool execute release $expect, with no cached script older than its file?
     * One short "reason" on failure, so deploy logs stay readable.
     */
    public function verify(string $expect): array
    {
        $st = $this->probe('status');
        $inPlace = ($st['layout'] ?? 'releases') === 'in-place';
        // releases layout: the directory the pool resolves current to; in place: the RELEASE file.
        $running = $inPlace ? ($st['release'] ?? null) : ($st['release_dir'] ?? null);
        $o = $st['opcache'] ?? [];
        $summary = ['release' => $running, 'layout' => $st['layout'] ?? null, 'pid' => $st['pid'] ?? null,
            'changed_scripts' => $o['changed_scripts'] ?? null, 'stale_scripts' => $o['stale_scripts'] ?? null];
        if ($running !== $expect) {
            return ['ok' => false, 'reason' => 'the pool executes ' . ($running === null ? 'no release' : "release $running")
                . " (current resolves to " . ($st['current_realpath'] ?? 'nothing') . "), not $expect"] + $summary
                + ['exit' => EXIT_CHECK_FAILED];
        }
        if (($o['changed_scripts'] ?? 0) > 0) {
            return ['ok' => false, 'reason' => 'the pool runs stale code: ' . $o['changed_scripts']
                . ' cached script(s) changed on disk after it cached them, e.g. ' . implode(', ', $o['changed_examples'] ?? [])
                . (($o['validate_timestamps'] ?? true) ? '' : ' (validate_timestamps=0: never re-read until a reset)')]
                + $summary + ['exit' => EXIT_CHECK_FAILED];
        }
        return ['ok' => true, 'reason' => "the pool executes release $expect, no stale scripts"] + $summary;
    }

    public function reset(): array
    {
        $t0 = microtime(true);
        $before = $this->probe('status');
        if ($before['opcache']['api_restricted']) {
            return ['ok' => false, 'reset' => false, 'reason' => $before['opcache']['reason'],
                'before' => counters($before), 'after' => null, 'status' => $before, 'exit' => EXIT_CHECK_FAILED];
        }
        if (!$before['opcache']['enabled']) {
            // Nothing cached, nothing to reset: not a failure.
            return ['ok' => true, 'reset' => null, 'reason' => 'opcache disabled: ' . ($before['opcache']['reason'] ?? ''),
                'before' => counters($before), 'after' => null, 'status' => $before, 'exit' => EXIT_OK];
        }
        $call = $this->probe('reset');
        // false with a restart already pending is fine (someone else asked; it will happen);
        // false otherwise means the pool refused (opcache.restrict_api).
        if ($call['opcache_reset'] !== true && $call['restart_pending_before'] !== true) {
            return ['ok' => false, 'reset' => false, 'reason' => 'opcache_reset() returned false in the pool (opcache.restrict_api?)',
                'before' => counters($before), 'after' => null, 'status' => $before, 'exit' => EXIT_CHECK_FAILED];
        }
        // opcache_reset() only sets restart_pending; the next request that finds no other
        // request running does the restart. Poll until the counters show it.
        $deadline = microtime(true) + RESET_VERIFY_WINDOW;
        $attempts = 0;
        do {
            $attempts++;
            $after = $this->probe('status');
            $done = $after['opcache']['manual_restarts'] > $before['opcache']['manual_restarts']
                || $after['opcache']['last_restart_time'] > $before['opcache']['last_restart_time'];
            if ($done || microtime(true) >= $deadline) {
                break;
            }
            usleep(RESET_VERIFY_SLEEP_US);
        } while (true);
        $out = ['ok' => $done, 'reset' => $done, 'before' => counters($before), 'after' => counters($after),
            'attempts' => $attempts, 'elapsed_ms' => round((microtime(true) - $t0) * 1000, 1), 'status' => $after,
            'exit' => $done ? EXIT_OK : EXIT_CHECK_FAILED];
        if (!$done) {
            $out['reason'] = sprintf('no completed OPcache restart seen within %.1f s (restart_pending=%s: a long request may hold the cache)',
                RESET_VERIFY_WINDOW, json_encode($after['opcache']['restart_pending']));
        }
        if ($after['opcache']['file_cache'] !== '') {
            $out['warning'] = 'opcache.file_cache is set: opcache_reset() does not clear it; clear that directory too';
        }
        return $out;
    }

    public function ping(string $pingPath, ?float $timeout = null): array
    {
        $timeout ??= $this->timeout;
        if ($pingPath !== '') {
            // FPM answers ping.path itself before looking for a script: no probe file needed.
            // FPM matches ping.path against SCRIPT_NAME, so the URI goes there verbatim.
            $uri = ['SCRIPT_NAME' => $pingPath, 'DOCUMENT_URI' => $pingPath, 'REQUEST_URI' => $pingPath];
            $res = fcgi_request($this->socket, $uri + cgi_params($pingPath, ''), $timeout);
            if ($res['status'] === 404) {
                throw new PoolError(sprintf('the pool answered 404 for %s: it has no such ping.path (set ping.path in the pool, or omit --ping-path to use a probe)', $pingPath),
                    'http_status', ['status' => 404, 'body' => substr($res['body'], 0, BODY_EXCERPT), 'stderr' => $res['stderr']]);
            }
            check_http($res, $pingPath);
            return ['ok' => true, 'via' => 'ping.path', 'body' => trim($res['body']), 'elapsed_ms' => $res['elapsed_ms']];
        }
        $data = $this->probe('ping', $timeout);
        return ['ok' => true, 'via' => 'probe', 'pid' => $data['pid'] ?? null, 'elapsed_ms' => $data['elapsed_ms']];
    }

    public function wait(string $pingPath): array
    {
        $t0 = microtime(true);
        $deadline = $t0 + $this->timeout;
        $attempts = 0;
        while (true) {
            $attempts++;
            // Each try gets what is left (at most 1 s) so one hung connect cannot eat the budget.
            $left = $deadline - microtime(true);
            try {
                $r = $this->ping($pingPath, max(0.05, min(1.0, $left)));
                return $r + ['attempts' => $attempts, 'waited_ms' => round((microtime(true) - $t0) * 1000, 1)];
            } catch (PoolError $e) {
                // Only "nobody answers yet" is worth waiting for; a pool that answers with an
                // error (unreadable probe, HTTP 404 on ping.path, probe not writable) will not heal.
                $transient = in_array($e->kind, ['no_socket', 'refused', 'timeout', 'closed', 'connect', 'io'], true);
                if (!$transient || microtime(true) + WAIT_SLEEP_US / 1e6 >= $deadline) {
                    throw new PoolError(sprintf('%s (after %d attempts in %.1f s)', $e->getMessage(), $attempts, microtime(true) - $t0),
                        $e->kind, $e->extra + ['attempts' => $attempts]);
                }
            }
            usleep(WAIT_SLEEP_US);
        }
    }

    /** @param array<string,string> $o the CLI flags (document-root, uri, host, https, expect-status, expect-body) */
    public function request(string $script, string $query, array $o = []): array
    {
        $res = fcgi_request($this->socket, request_params($script, $query, $o), $this->timeout);
        $out = ['ok' => $res['status'] === 200, 'status' => $res['status'], 'headers' => $res['headers'],
            'body' => $res['body'], 'stderr' => $res['stderr'], 'elapsed_ms' => $res['elapsed_ms']];
        if (isset($o['expect-status'])) {
            // A check: the pool answered; whether it answered as expected is exit 0 or 1.
            $want = (int) $o['expect-status'];
            $text = $o['expect-body'] ?? '';
            $excerpt = trim(substr($res['body'], 0, BODY_EXCERPT));
            $out['body'] = $excerpt;
            $gist = body_gist($res['body']);
            if ($res['status'] !== $want) {
                $out['ok'] = false;
                $out['reason'] = sprintf('HTTP %d, want %d: %s', $res['status'], $want,
                    $gist . ($res['stderr'] === '' ? '' : ' (stderr: ' . body_gist($res['stderr']) . ')'));
                $out['exit'] = EXIT_CHECK_FAILED;
            } elseif ($text !== '' && !str_contains($res['body'], $text)) {
                $out['ok'] = false;
                $out['reason'] = sprintf("HTTP %d but the body does not contain '%s': %s", $res['status'], $text, $gist);
                $out['exit'] = EXIT_CHECK_FAILED;
            } else {
                $out['ok'] = true;
                $out['reason'] = sprintf('HTTP %d', $res['status']) . ($text === '' ? '' : " with '$text' in the body");
            }
            return $out;
        }
        try {
            check_http($res, $script);
        } catch (PoolError $e) {
            throw new PoolError($e->getMessage(), $e->kind, $out);
        }
        return $out;
    }

    /** graceful: would a reload let the requests in flight finish? (the master's process_control_timeout) */
    public function graceful(): array
    {
        $m = $this->probe('master');
        $out = ['master_pid' => $m['master_pid'] ?? null, 'config' => $m['config'] ?? null,
            'process_control_timeout' => $m['process_control_timeout'] ?? null];
        if ($out['process_control_timeout'] === null) {
            return ['ok' => true, 'checked' => false, 'reason' => 'not checked: ' . ($m['error'] ?? 'unknown')] + $out;
        }
        if ($out['process_control_timeout'] === 0) {
            return ['ok' => false, 'checked' => true, 'exit' => EXIT_CHECK_FAILED,
                'reason' => 'process_control_timeout is 0 in ' . $out['config'] . ': a reload of PHP-FPM kills the requests '
                    . 'in flight (nginx answers 502); set process_control_timeout = 10s in its [global] section'] + $out;
        }
        return ['ok' => true, 'checked' => true, 'reason' => sprintf('process_control_timeout = %d s in %s: a reload lets '
            . 'requests in flight finish', $out['process_control_timeout'], $out['config'])] + $out;
    }
}

/** The counters that show whether a restart happened (the before/after of `reset`). */
function counters(array $status): array
{
    $o = $status['opcache'];
    return ['pid' => $status['pid'] ?? null] + array_intersect_key($o, array_flip([
        'enabled', 'restart_pending', 'restart_in_progress', 'manual_restarts', 'last_restart_time',
        'oom_restarts', 'hash_restarts', 'num_cached_scripts', 'stale_scripts',
    ]));
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

const ACTIONS = ['status', 'reset', 'ping', 'wait', 'request', 'verify', 'graceful'];
const FLAGS = ['socket', 'deploy-path', 'probe-dir', 'timeout', 'ping-path', 'script', 'query', 'release',
    'document-root', 'uri', 'host', 'https', 'expect-status', 'expect-body'];

/** @return array{0:string, 1:array<string,string>} */
function parse_args(array $argv): array
{
    $args = array_slice($argv, 1);
    if ($args === [] || in_array($args[0], ['-h', '--help', 'help'], true)) {
        throw new UsageError('usage: php fpmctl.php ' . implode('|', ACTIONS)
            . ' --socket=PATH --deploy-path=DIR [--probe-dir=DIR] [--timeout=SECONDS] [--ping-path=URI] [--script=PATH] [--query=STRING]'
            . ' [--document-root=DIR] [--uri=URI] [--host=HOST] [--https=0|1] [--expect-status=N] [--expect-body=TEXT]');
    }
    $action = array_shift($args);
    if (!in_array($action, ACTIONS, true)) {
        throw new UsageError("unknown action '$action' (expected one of: " . implode(', ', ACTIONS) . ')');
    }
    $opts = [];
    foreach ($args as $a) {
        if (!preg_match('/^--([a-z-]+)=(.*)$/s', $a, $m) || !in_array($m[1], FLAGS, true)) {
            throw new UsageError("unknown or malformed argument '$a' (flags take the form --name=value: --" . implode(', --', FLAGS) . ')');
        }
        $opts[$m[1]] = $m[2];
    }
    return [$action, $opts];
}

function build(string $action, array $o): Ctl
{
    $socket = $o['socket'] ?? '';
    if ($socket === '') {
        throw new UsageError('--socket=PATH is required (the pool\'s `listen`)');
    }
    $timeout = DEFAULT_TIMEOUT;
    if (isset($o['timeout'])) {
        if (!is_numeric($o['timeout']) || (float) $o['timeout'] <= 0) {
            throw new UsageError("--timeout must be a positive number of seconds, got '{$o['timeout']}'");
        }
        $timeout = (float) $o['timeout'];
    }
    $needsDeploy = in_array($action, ['status', 'reset', 'verify', 'graceful'], true)
        || (in_array($action, ['ping', 'wait'], true) && ($o['ping-path'] ?? '') === '');
    $deploy = isset($o['deploy-path']) && $o['deploy-path'] !== '' ? rtrim($o['deploy-path'], '/') : null;
    if ($needsDeploy) {
        if ($deploy === null || $deploy === '' || $deploy[0] !== '/') {
            throw new UsageError("$action needs --deploy-path=DIR (absolute)" . (in_array($action, ['ping', 'wait'], true) ? ' or --ping-path=URI' : ''));
        }
        if (!is_dir($deploy)) {
            throw new UsageError("deploy path $deploy does not exist or is not a directory");
        }
    }
    $probeDir = isset($o['probe-dir']) && $o['probe-dir'] !== '' ? rtrim($o['probe-dir'], '/') : ($deploy === null ? '' : $deploy . '/.deploy/probe');
    if ($probeDir !== '' && $probeDir[0] !== '/') {
        throw new UsageError('--probe-dir must be absolute (the pool resolves SCRIPT_FILENAME on its own, not from our cwd)');
    }
    if ($action === 'request' && ($o['script'] ?? '') === '') {
        throw new UsageError('request needs --script=PATH (absolute SCRIPT_FILENAME)');
    }
    if (($o['document-root'] ?? '') !== '' && !str_starts_with($o['script'] ?? '', rtrim($o['document-root'], '/') . '/')) {
        throw new UsageError("--script must be under --document-root (got '" . ($o['script'] ?? '') . "' and '{$o['document-root']}')");
    }
    if (($o['uri'] ?? '') !== '' && $o['uri'][0] !== '/') {
        throw new UsageError("--uri must start with / (got '{$o['uri']}')");
    }
    if (isset($o['expect-status']) && !preg_match('/^[1-5]\d\d$/', $o['expect-status'])) {
        throw new UsageError("--expect-status must be an HTTP status code, got '{$o['expect-status']}'");
    }
    if (isset($o['https']) && !in_array($o['https'], ['0', '1'], true)) {
        throw new UsageError("--https must be 0 or 1, got '{$o['https']}'");
    }
    return new Ctl($socket, $deploy, new Probe($probeDir), $timeout);
}

/** Print the one JSON object; errors also go to stderr for humans and logs. */
function emit(array $out, int $code): int
{
    fwrite(STDOUT, json_encode($out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR) . "\n");
    if (isset($out['error'])) {
        fwrite(STDERR, 'fpmctl: ' . $out['error'] . "\n");
    } elseif (isset($out['reason']) && $code !== EXIT_OK) {
        fwrite(STDERR, 'fpmctl: ' . $out['reason'] . "\n");
    }
    return $code;
}

function main(array $argv): int
{
    $action = $argv[1] ?? '';
    try {
        [$action, $o] = parse_args($argv);
        $ctl = build($action, $o);
    } catch (UsageError $e) {
        return emit(['ok' => false, 'action' => $action, 'error' => $e->getMessage(), 'error_kind' => 'usage'], EXIT_USAGE);
    }
    // The probe file must not outlive us: finally covers exceptions, the shutdown function
    // covers exit()/fatal errors, the signal handlers turn SIGINT/SIGTERM into a normal exit.
    register_shutdown_function([$ctl->probe, 'remove']);
    if (function_exists('pcntl_async_signals')) {
        pcntl_async_signals(true);
        foreach ([SIGINT, SIGTERM, SIGHUP] as $sig) {
            pcntl_signal($sig, static function () use ($ctl): void {
                $ctl->probe->remove();
                exit(EXIT_POOL);
            });
        }
    }
    try {
        $out = match ($action) {
            'status' => $ctl->status(),
            'verify' => $ctl->verify($o['release'] ?? ''),
            'reset' => $ctl->reset(),
            'ping' => $ctl->ping($o['ping-path'] ?? ''),
            'wait' => $ctl->wait($o['ping-path'] ?? ''),
            'request' => $ctl->request($o['script'], $o['query'] ?? '', $o),
            'graceful' => $ctl->graceful(),
        };
        $code = $out['exit'] ?? EXIT_OK;
        unset($out['exit']);
        return emit(['action' => $action] + $out, $code);
    } catch (PoolError $e) {
        return emit(['ok' => false, 'action' => $action, 'error' => $e->getMessage(), 'error_kind' => $e->kind,
            'socket' => $ctl->socket] + $e->extra, EXIT_POOL);
    } finally {
        $ctl->probe->remove();
    }
}

exit(main($argv));
