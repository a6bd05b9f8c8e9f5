<?php

use Illuminate\Support\Facades\Artisan;

Artisan::command('app:release', function () {
    $file = base_path('RELEASE');
    $this->line(is_file($file) ? trim(file_get_contents($file)) : '(no RELEASE file)');
})->purpose('Print the release id of this copy of the app');
