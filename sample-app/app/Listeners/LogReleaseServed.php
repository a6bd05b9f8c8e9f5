<?php

namespace App\Listeners;

use App\Events\ReleaseServed;
use Illuminate\Support\Facades\Log;

class LogReleaseServed
{
    /**
     * Debug-level only: with the default LOG_LEVEL=debug this writes one line per
     * /version request to storage/logs/laravel.log when LOG_RELEASE_SERVED=true.
     */
    public function handle(ReleaseServed $event)
    {
        if (config('app.log_release_served')) {
            Log::debug('release served', ['release' => $event->release]);
        }
    }
}
