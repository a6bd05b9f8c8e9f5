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
        Commands\RecordScheduleRun::class,
    ];

    /**
     * Run by `php artisan schedule:work` (a supervised process on the hosts). Laravel 8 has
     * no sub-minute scheduling: every minute is the shortest interval.
     *
     * @param  \Illuminate\Console\Scheduling\Schedule  $schedule
     * @return void
     */
    protected function schedule(Schedule $schedule)
    {
        $schedule->command('app:record-schedule-run')->everyMinute();
    }

    /**
     * Closure commands live in routes/console.php. (Commands are listed in $commands above
     * rather than discovered with $this->load(), which scans app/Console/Commands.)
     *
     * @return void
     */
    protected function commands()
    {
        require base_path('routes/console.php');
    }
}
