<?php

/*
| Autoloading: Debian's Laravel plus Composer's vendor/.
|
| Debian's php-laravel-framework ships Laravel 8.83 under /usr/share/php/Illuminate
| together with its dependencies (Symfony, Monolog, phpdotenv, Carbon, ...), each with
| its own autoload.php: Laravel is not installed by Composer here (no Packagist).
|
| vendor/ is built by `composer install` from composer.lock (the deploy's composer step,
| or CI): it autoloads the app's own classes (App\ -> app/) and its packages
| (lab/release-stamp, from the path repository packages/). Without vendor/ the app
| cannot start, on purpose: a release that was never built must fail loudly.
*/

require_once '/usr/share/php/Illuminate/autoload.php';

require __DIR__.'/../vendor/autoload.php';
