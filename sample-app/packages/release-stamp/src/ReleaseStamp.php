<?php

namespace Lab\ReleaseStamp;

/**
 * The release a copy of the app belongs to, and what a run of it looks like as a database row.
 *
 * The deploy tool writes the release id into <release>/RELEASE when it switches to it. A
 * process reads it from its own base path (resolved when the process started), so a queue
 * worker that kept running after a switch reports the release it really executes.
 */
final class ReleaseStamp
{
    public const TABLE = 'release_runs';

    /** The id in <basePath>/RELEASE, or null when the file is missing (a build never switched to). */
    public static function read(string $basePath): ?string
    {
        $file = rtrim($basePath, '/').'/RELEASE';
        if (! is_file($file) || ($text = @file_get_contents($file)) === false) {
            return null;
        }
        $release = trim($text);

        return $release === '' ? null : $release;
    }

    /** One row of TABLE: which release (and base path, host, pid) ran `$kind`, for `$token`. */
    public static function row(string $kind, string $basePath, string $host, ?string $token = null): array
    {
        return [
            'kind' => $kind,
            'release' => self::read($basePath) ?? '(no RELEASE file)',
            'base_path' => $basePath,
            'host' => $host,
            'pid' => getmypid(),
            'token' => $token,
            'created_at' => gmdate('Y-m-d H:i:s'),
        ];
    }
}
