<?php
/**
 * diskrun.php - one request through the code on disk, as the pool would run it today.
 *
 *   cd LIVE_RELEASE && php -d opcache.enable_cli=0 diskrun.php URI
 *
 * Run by `fab health` (deploy/remote/gather.sh) with php-cli as the web user, OPcache off, in
 * the live release: URI (the health URL's path and query) goes to public/index.php as
 * REQUEST_URI. It prints "\035STATUS <http status>\n" and then the first 4000 bytes of the
 * body: what the files on disk answer now. A pool that answers differently runs stale code.
 */

$root = getcwd();
$uri = $argv[1] ?? '/';
$q = (string) parse_url($uri, PHP_URL_QUERY);
$_SERVER = array_merge($_SERVER, ['REQUEST_METHOD' => 'GET', 'REQUEST_URI' => $uri, 'QUERY_STRING' => $q,
    'SCRIPT_NAME' => '/index.php', 'PHP_SELF' => '/index.php', 'SCRIPT_FILENAME' => $root . '/public/index.php',
    'DOCUMENT_ROOT' => $root . '/public', 'HTTP_HOST' => 'localhost', 'SERVER_NAME' => 'localhost',
    'SERVER_PORT' => '80', 'REMOTE_ADDR' => '127.0.0.1', 'SERVER_PROTOCOL' => 'HTTP/1.1']);
$_GET = [];
parse_str($q, $_GET);
ob_start();
register_shutdown_function(static function (): void {
    $parts = [];
    while (ob_get_level() > 0) {
        array_unshift($parts, (string) ob_get_clean());
    }
    fwrite(STDOUT, "\035STATUS " . (int) http_response_code() . "\n" . substr(implode('', $parts), 0, 4000));
});
chdir($root . '/public');
require $root . '/public/index.php';
