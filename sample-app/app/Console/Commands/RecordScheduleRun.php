<?php

namespace App\Console\Commands;

use Illuminate\Console\Command;
use Illuminate\Support\Facades\DB;
use Lab\ReleaseStamp\ReleaseStamp;

/**
 * Scheduled every minute (App\Console\Kernel): records which release ran it.
 *
 * `schedule:work` starts `schedule:run` in its own working directory, which is the release
 * the scheduler process started in: a scheduler left running after a switch keeps
 * recording the old release.
 */
class RecordScheduleRun extends Command
{
    protected $signature = 'app:record-schedule-run';

    protected $description = 'Record in the database which release ran the scheduler';

    public function handle()
    {
        $row = ReleaseStamp::row('schedule', base_path(), config('app.instance'));
        DB::table(ReleaseStamp::TABLE)->insert($row);
        $this->line("recorded release {$row['release']}");

        return 0;
    }
}
