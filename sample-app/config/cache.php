<?php

return [

    'default' => env('CACHE_DRIVER', 'file'),

    'stores' => [

        'array' => [
            'driver' => 'array',
            'serialize' => false,
        ],

        'file' => [
            'driver' => 'file',
            'path' => storage_path('framework/cache/data'),
        ],

        'redis' => [
            'driver' => 'redis',
            'connection' => 'cache',
            'lock_connection' => 'default',
        ],

    ],

    // `php artisan queue:restart` writes its signal into this cache: hosts that share one
    // Redis but have their own CACHE_PREFIX restart only their own workers.
    'prefix' => env('CACHE_PREFIX', 'sample_app_cache'),

];
