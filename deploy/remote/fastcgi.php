<?php
/**
 * fastcgi.php - a minimal FastCGI client: one responder request to a PHP-FPM pool's socket.
 *
 * A library of fpmctl.php (installed next to it, required by it), not a program. Every value
 * reaches the pool as FastCGI params; nothing goes through a shell. Failures to reach the pool,
 * or an answer that is an error, are PoolError with a kind (no_socket, refused,
 * socket_permission, timeout, connect, io, closed, protocol, script_unreadable, http_status).
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

const BODY_EXCERPT = 500;

/** The pool could not be reached or answered with an error: exit 3. */
final class PoolError extends RuntimeException
{
    /** @param array<string,mixed> $extra merged into the JSON output */
    public function __construct(string $message, public readonly string $kind, public readonly array $extra = [])
    {
        parent::__construct($message);
    }
}

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
