<?php

namespace App\Providers;

use Illuminate\Foundation\Support\Providers\EventServiceProvider as ServiceProvider;

class EventServiceProvider extends ServiceProvider
{
    /**
     * Event listener mappings (cached by `php artisan event:cache`).
     *
     * @var array
     */
    protected $listen = [
        \App\Events\ReleaseServed::class => [
            \App\Listeners\LogReleaseServed::class,
        ],
    ];

    /**
     * @return bool
     */
    public function shouldDiscoverEvents()
    {
        return false;
    }
}
