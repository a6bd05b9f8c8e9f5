<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Support\Facades\DB;
use Lab\ReleaseStamp\ReleaseStamp;

/**
 * A queued job that records which release processed it.
 *
 * base_path() is the real release directory of the worker that runs the job (PHP resolves
 * the artisan script's path when the worker starts), so a worker that was not restarted
 * after a switch records the OLD release here: that is what this job is for.
 */
class RecordRelease implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable;

    /** @var string */
    public $token;

    public function __construct(string $token)
    {
        $this->token = $token;
    }

    public function handle()
    {
        DB::table(ReleaseStamp::TABLE)->insert(
            ReleaseStamp::row('job', base_path(), config('app.instance'), $this->token)
        );
    }
}
