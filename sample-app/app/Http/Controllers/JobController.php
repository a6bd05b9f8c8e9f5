<?php

namespace App\Http\Controllers;

use App\Jobs\RecordRelease;
use Illuminate\Support\Facades\DB;
use Lab\ReleaseStamp\ReleaseStamp;

class JobController extends Controller
{
    /**
     * POST /jobs/{token}: queue a RecordRelease job for that token (202).
     *
     * The web release that dispatched it is in the answer; the release that PROCESSED it is
     * what GET /jobs/{token} shows once a worker ran it.
     */
    public function dispatchJob(string $token)
    {
        RecordRelease::dispatch($token);

        return response()->json([
            'token' => $token,
            'queued' => true,
            'connection' => config('queue.default'),
            'dispatched_by' => ReleaseStamp::read(base_path()),
        ], 202)->header('Cache-Control', 'no-store');
    }

    /**
     * GET /jobs/{token}: the rows recorded for that token (200), or 404 while there is none.
     */
    public function show(string $token)
    {
        $runs = DB::table(ReleaseStamp::TABLE)->where('token', $token)->orderBy('id')->get();

        return response()->json(['token' => $token, 'runs' => $runs], $runs->isEmpty() ? 404 : 200)
            ->header('Cache-Control', 'no-store');
    }
}
