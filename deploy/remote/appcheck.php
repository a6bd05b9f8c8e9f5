<?php
/**
 * appcheck.php - boot the Laravel app of the current directory (the live release) as artisan
 * does, and report what `fab health` needs from the app itself, as ONE JSON object on stdout:
 *
 *   database    the default connection: its driver, and whether a connection opens (getPdo)
 *   redis       every Redis connection the app's config uses (its cache store, queue
 *               connection, session and broadcasting drivers), and whether it answers PING
 *   migrations  `migrate:status` through the app's console kernel, only when the database
 *               answered and is not sqlite in memory: its exit code and its output (the table)
 *
 *   cd LIVE_RELEASE && php appcheck.php [--timeout=SECONDS]
 *
 * --timeout (default 5) bounds each connection attempt. Exit 0: the report was printed
 * (whatever it says); 1: the app did not boot ("error" says why); 2: bad usage.
 *
 * Read-only: no migration runs, nothing in the release is written. Where the release lacks
 * bootstrap/cache/packages.php or services.php (which booting Laravel writes when missing),
 * they are built in a temporary directory instead (APP_PACKAGES_CACHE, APP_SERVICES_CACHE),
 * removed at exit: the bootstrap cache check must see the release as the deploy left it. The
 * app's logging goes to a null handler, so a failed connection leaves no log file behind (one
 * created by the deploy user could keep the web user from logging). Secrets never leave: the values of the app's passwords, keys
 * and tokens (its config, and the .env entries named like PASSWORD, KEY, SECRET, TOKEN) are replaced
 * by *** in every message printed.
 */

declare(strict_types=1);

const SECRET_NAME = '/(pass|secret|key|token|auth|credential|pwd)/i';

ob_start();   // nothing the app prints while booting may get into the JSON

/** Print the report, every string in it masked, and exit. */
function emit(array $out, array $secrets, int $code): never
{
    while (ob_get_level() > 0) {
        ob_end_clean();
    }
    array_walk_recursive($out, static function (&$value) use ($secrets): void {
        if (is_string($value)) {
            $value = mask($value, $secrets);
        }
    });
    echo json_encode($out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR), "\n";
    exit($code);
}

/** Replace every secret value (longest first) by ***. */
function mask(string $text, array $secrets): string
{
    usort($secrets, static fn (string $a, string $b): int => strlen($b) <=> strlen($a));
    return str_replace($secrets, '***', $text);
}

/** The values of secret-looking entries of a .env file (for masking before the config is loaded). */
function env_secrets(string $file): array
{
    $out = [];
    foreach (@file($file, FILE_IGNORE_NEW_LINES) ?: [] as $line) {
        if (preg_match('/^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/', $line, $m) && preg_match(SECRET_NAME, $m[1])) {
            $v = trim(trim($m[2]), '"\'');
            if (strlen($v) >= 4) {
                $out[] = $v;
            }
        }
    }
    return $out;
}

/** The values at keys named like a secret anywhere in the config tree. */
function config_secrets(array $config, array &$out): void
{
    foreach ($config as $key => $value) {
        if (is_array($value)) {
            config_secrets($value, $out);
        } elseif (is_string($value) && strlen($value) >= 4 && preg_match(SECRET_NAME, (string) $key)) {
            $out[] = $value;
        }
    }
}

function failure(Throwable $e): string
{
    return get_class($e) . ': ' . $e->getMessage();
}

$timeout = 5;
foreach (array_slice($argv, 1) as $arg) {
    if (preg_match('/^--timeout=(\d{1,3})$/', $arg, $m) && (int) $m[1] > 0) {
        $timeout = (int) $m[1];
        continue;
    }
    fwrite(STDERR, "usage: php appcheck.php [--timeout=SECONDS]\n");
    exit(2);
}

$root = (string) getcwd();
$secrets = env_secrets($root . '/.env');
$out = ['app' => false, 'root' => $root, 'config_cached' => is_file($root . '/bootstrap/cache/config.php')];
if (!is_file($root . '/artisan') || !is_file($root . '/bootstrap/app.php')) {
    $out['error'] = 'no Laravel app here (artisan and bootstrap/app.php)';
    emit($out, $secrets, 1);
}

// Manifests Laravel would write into bootstrap/cache when missing: into a private temp dir.
$scratch = null;
foreach (['APP_PACKAGES_CACHE' => 'packages.php', 'APP_SERVICES_CACHE' => 'services.php'] as $var => $file) {
    if (!is_file($root . '/bootstrap/cache/' . $file) && getenv($var) === false) {
        if ($scratch === null) {
            $scratch = sys_get_temp_dir() . '/appcheck-' . bin2hex(random_bytes(6));
            mkdir($scratch, 0700);
            register_shutdown_function(static function () use ($scratch): void {
                array_map('unlink', glob($scratch . '/*') ?: []);
                @rmdir($scratch);
            });
        }
        putenv("$var=$scratch/$file");
        $_ENV[$var] = $_SERVER[$var] = "$scratch/$file";
    }
}

try {
    // The autoloader artisan uses: bootstrap/autoload.php where the app has one, else Composer's.
    require is_file($root . '/bootstrap/autoload.php') ? $root . '/bootstrap/autoload.php' : $root . '/vendor/autoload.php';
    $app = require $root . '/bootstrap/app.php';
    $kernel = $app->make(Illuminate\Contracts\Console\Kernel::class);
    $kernel->bootstrap();
    $config = $app['config'];
    config_secrets($config->all(), $secrets);
    $config->set('logging.channels.deploy_health_null', ['driver' => 'monolog', 'handler' => Monolog\Handler\NullHandler::class]);
    $config->set('logging.default', 'deploy_health_null');
} catch (Throwable $e) {
    $out['error'] = failure($e);
    emit($out, $secrets, 1);
}
$out['app'] = true;
$out['laravel'] = $app->version();

// ---- the default database connection
$name = (string) $config->get('database.default');
$conn = $config->get("database.connections.$name");
$db = ['connection' => $name, 'driver' => is_array($conn) ? ($conn['driver'] ?? null) : null, 'ok' => false, 'error' => null];
$db['memory'] = $db['driver'] === 'sqlite' && (($conn['database'] ?? '') === ':memory:');
if (is_array($conn)) {
    // Bounded: a database host that drops packets must not hang the health check.
    $config->set("database.connections.$name.options", ($conn['options'] ?? []) + [PDO::ATTR_TIMEOUT => $timeout]);
}
$t0 = microtime(true);
try {
    $app['db']->connection()->getPdo();
    $db['ok'] = true;
} catch (Throwable $e) {
    $db['error'] = failure($e);
}
$db['elapsed_ms'] = round((microtime(true) - $t0) * 1000, 1);
$out['database'] = $db;

// ---- the Redis connections the app's config uses, and what uses each
$uses = [];
$store = (string) $config->get('cache.default');
if ($config->get("cache.stores.$store.driver") === 'redis') {
    $uses[(string) ($config->get("cache.stores.$store.connection") ?? 'default')][] = 'cache';
}
$queue = (string) $config->get('queue.default');
if ($config->get("queue.connections.$queue.driver") === 'redis') {
    $uses[(string) ($config->get("queue.connections.$queue.connection") ?? 'default')][] = 'queue';
}
if ($config->get('session.driver') === 'redis') {
    $uses[(string) ($config->get('session.connection') ?? 'default')][] = 'session';
}
$broadcast = (string) $config->get('broadcasting.default');
if ($broadcast !== '' && $config->get("broadcasting.connections.$broadcast.driver") === 'redis') {
    $uses[(string) ($config->get("broadcasting.connections.$broadcast.connection") ?? 'default')][] = 'broadcasting';
}
$out['redis'] = [];
foreach ($uses as $rname => $by) {
    $r = ['connection' => $rname, 'used_by' => $by, 'ok' => false, 'error' => null];
    if (is_array($config->get("database.redis.$rname"))) {
        foreach (['timeout', 'read_timeout'] as $k) {
            if ($config->get("database.redis.$rname.$k") === null) {
                $config->set("database.redis.$rname.$k", $timeout);
            }
        }
    }
    $t0 = microtime(true);
    try {
        $pong = $app['redis']->connection($rname)->ping();
        $r['ok'] = $pong !== false;
        if (!$r['ok']) {
            $r['error'] = 'PING was not answered';
        }
    } catch (Throwable $e) {
        $r['error'] = failure($e);
    }
    $r['elapsed_ms'] = round((microtime(true) - $t0) * 1000, 1);
    $out['redis'][] = $r;
}

// ---- pending migrations: only a database that answered and keeps its tables has any
$out['migrations'] = null;
if ($db['ok'] && !$db['memory']) {
    $buffer = new Symfony\Component\Console\Output\BufferedOutput();
    try {
        $rc = $kernel->call('migrate:status', [], $buffer);
        $out['migrations'] = ['rc' => $rc, 'output' => $buffer->fetch(), 'error' => null];
    } catch (Throwable $e) {
        $out['migrations'] = ['rc' => null, 'output' => $buffer->fetch(), 'error' => failure($e)];
    }
}
emit($out, $secrets, 0);
