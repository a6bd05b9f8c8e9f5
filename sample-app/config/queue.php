<?php

return [

    // sync (run at once, in the web request) unless .env says otherwise; the lab's stack
    // sets QUEUE_CONNECTION=redis, worked off by `php artisan queue:work redis`.
    'default' => env('QUEUE_CONNECTION', 'sync'),

    'connections' => [

        'sync' => [
            'driver' => 'sync',
        ],

        'redis' => [
            'driver' => 'redis',
            'connection' => 'default',
            'queue' => env('REDIS_QUEUE', 'default'),
            'retry_after' => 90,
            'block_for' => null,
            'after_commit' => false,
        ],

    ],

    'failed' => [
        'driver' => 'null',
    ],

];
