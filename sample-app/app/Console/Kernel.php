<?php

namespace App\Console;

use Illuminate\Console\Scheduling\Schedule;
use Illuminate\Foundation\Console\Kernel as ConsoleKernel;

class Kernel extends ConsoleKernel
{
    /**
     * Artisan commands provided by the application.
     *
     * @var array
     */
    protected $commands = [
        //
    ];

    /**
     * @param  \Illuminate\Console\Scheduling\Schedule  $schedule
     * @return void
     */
    protected function schedule(Schedule $schedule)
    {
        //
    }

    /**
     * Closure commands live in routes/console.php. (No $this->load() of app/Console/Commands:
     * that needs Composer's class map.)
     *
     * @return void
     */
    protected function commands()
    {
        require base_path('routes/console.php');
    }
}
