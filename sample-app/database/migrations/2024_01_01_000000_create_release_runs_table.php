<?php

use Illuminate\Database\Migrations\Migration;
use Illuminate\Database\Schema\Blueprint;
use Illuminate\Support\Facades\Schema;

/**
 * One row per queued job or scheduled command run: which release ran it, on which host.
 */
class CreateReleaseRunsTable extends Migration
{
    public function up()
    {
        Schema::create('release_runs', function (Blueprint $table) {
            $table->id();
            $table->string('kind', 16);          // job | schedule
            $table->string('release', 128);
            $table->string('base_path', 255);
            $table->string('host', 64);
            $table->unsignedInteger('pid');
            $table->string('token', 64)->nullable()->index();
            $table->timestamp('created_at')->useCurrent();
            $table->index(['kind', 'id']);
        });
    }

    public function down()
    {
        Schema::dropIfExists('release_runs');
    }
}
