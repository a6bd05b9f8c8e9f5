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
 * worker can answer, so this script is a minimal FastCGI client (like cachetool; the client
 * itself is fastcgi.php): it writes a copy of probe.php (installed next to it) under a random
 * name, asks the pool to execute it, and always deletes it again.
 *
 * Its size (about 570 lines, a third of them this contract): one program, one JSON contract shared
 * by every action. What is a concept of its own lives beside it: the FastCGI client and the params
 * nginx would send (fastcgi.php), and the code that runs inside the pool (probe.php).
 *
 * Actions (each prints exactly ONE JSON object on stdout; errors also go to stderr):
 *   status   one probe request; the worker reports pid, user, release, realpath cache entry of
 *            current/, OPcache counters (per-release cached-script counts, stale scripts),
 *            the cached scripts that changed on disk since the pool cached them (the live
 *            code's: changed_scripts; every cached script's: changed_cached), its error_log,
 *            and whether storage/ and bootstrap/cache are writable by the pool user.
 *            With --log-tail=BYTES also the end of the pool's error log (error_log_tail).
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
 *   --log-tail=BYTES     status: include the last BYTES (at most 1 MiB) of the pool's error log.
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
 *      script_unreadable, http_status, bad_response, probe_write, probe_missing (probe.php or
 *      fastcgi.php, installed with this file, is not next to it).
 *
 * Every value reaches the pool as FastCGI params or a query string; nothing is ever passed
 * through a shell.
 */

declare(strict_types=1);

// The FastCGI client, installed next to this file (deploy/remote/). Missing: still one JSON line.
if (!is_file(__DIR__ . '/fastcgi.php')) {
    fwrite(STDOUT, json_encode(['ok' => false, 'action' => $argv[1] ?? '', 'error_kind' => 'probe_missing',
        'error' => 'fastcgi.php is missing next to ' . __FILE__]) . "\n");
    exit(3);
}
require __DIR__ . '/fastcgi.php';

const EXIT_OK = 0;
const EXIT_CHECK_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_POOL = 3;

const DEFAULT_TIMEOUT = 5.0;
const RESET_VERIFY_WINDOW = 1.0;   // seconds to wait for the deferred restart to show
const RESET_VERIFY_SLEEP_US = 50000;
const WAIT_SLEEP_US = 100000;

/** Wrong invocation: exit 2. */
final class UsageError extends RuntimeException
{
}

/**
 * The code that runs INSIDE the pool: probe.php, installed next to this file (deploy/remote/).
 * Each run writes a fresh copy under a random name (Probe below), so nothing of the client is
 * interpolated into it and the pool never caches it.
 */
function probe_code(): string
{
    static $code = null;
    if ($code === null) {
        $path = __DIR__ . '/probe.php';
        $text = @file_get_contents($path);
        if ($text === false || $text === '') {
            throw new PoolError("cannot read the pool probe $path (it is installed next to fpmctl.php)", 'probe_missing');
        }
        $code = $text;
    }
    return $code;
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
        $code = probe_code();
        $ok = fwrite($fh, $code) === strlen($code);
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
    public function probe(string $action, ?float $timeout = null, array $extra = []): array
    {
        $script = $this->probe->path();
        $nonce = bin2hex(random_bytes(8));
        $query = http_build_query(['action' => $action, 'deploy_path' => (string) $this->deployPath, 'nonce' => $nonce] + $extra);
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

    /** $logTail: also the last N bytes of the pool's PHP error log (`--log-tail=N`). */
    public function status(int $logTail = 0): array
    {
        return ['ok' => true] + $this->probe('status', null, $logTail > 0 ? ['log_tail' => $logTail] : []);
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

/** A body in one short line for a reason: an HTML page's <title>, else its start. */
function body_gist(string $body): string
{
    if (preg_match('#<title[^>]*>(.*?)</title>#is', $body, $m)) {
        return 'page titled "' . trim(preg_replace('/\s+/', ' ', html_entity_decode($m[1]))) . '"';
    }
    $text = trim((string) preg_replace('/\s+/', ' ', substr($body, 0, 200)));
    return $text === '' ? 'empty body' : $text;
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
const FLAGS = ['socket', 'deploy-path', 'probe-dir', 'timeout', 'ping-path', 'script', 'query', 'release', 'log-tail',
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

/** `--log-tail=BYTES` (status): a whole number, at most 1 MiB. */
function log_tail(array $o): int
{
    $v = $o['log-tail'] ?? '0';
    if (!preg_match('/^\d{1,7}$/', $v) || (int) $v > 1048576) {
        throw new UsageError("--log-tail must be a number of bytes (0-1048576), got '$v'");
    }
    return (int) $v;
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
    log_tail($o);   // validated here, with the other usage errors
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
            'status' => $ctl->status(log_tail($o)),
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
