<?php

/*
| Autoloading without Composer.
|
| Debian's php-laravel-framework ships Laravel 8.83 under /usr/share/php/Illuminate
| together with its dependencies (Symfony, Monolog, phpdotenv, Carbon, ...), each with
| its own autoload.php. The application's own classes (App\ -> app/) are loaded by the
| PSR-4 style loader below.
*/

require_once '/usr/share/php/Illuminate/autoload.php';

spl_autoload_register(function ($class) {
    $prefix = 'App\\';

    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }

    $file = dirname(__DIR__).'/app/'.str_replace('\\', '/', substr($class, strlen($prefix))).'.php';

    if (is_file($file)) {
        require $file;
    }
});
