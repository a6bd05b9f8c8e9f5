<?php

namespace App\Http\Controllers;

use App\Events\ReleaseServed;

class VersionController extends Controller
{
    /**
     * GET /version: the release id written into base_path('RELEASE') at deploy time.
     *
     * base_path() is the real release directory when nginx passes $realpath_root,
     * so this shows which release the FPM worker actually executed.
     */
    public function show()
    {
        $file = base_path('RELEASE');

        if (! is_file($file) || ($release = @file_get_contents($file)) === false) {
            return response("RELEASE file missing\n", 500)
                ->header('Content-Type', 'text/plain; charset=UTF-8')
                ->header('Cache-Control', 'no-store');
        }

        $release = trim($release);

        ReleaseServed::dispatch($release);

        return response($release, 200)
            ->header('Content-Type', 'text/plain; charset=UTF-8')
            ->header('Cache-Control', 'no-store');
    }

    /**
     * GET /up: liveness check.
     */
    public function up()
    {
        return response('ok', 200)
            ->header('Content-Type', 'text/plain; charset=UTF-8')
            ->header('Cache-Control', 'no-store');
    }

    /**
     * GET /: a Blade page (so `php artisan view:cache` has something to compile).
     */
    public function home()
    {
        $file = base_path('RELEASE');

        return view('welcome', [
            'release' => is_file($file) ? trim((string) file_get_contents($file)) : null,
            'basePath' => base_path(),
        ]);
    }
}
