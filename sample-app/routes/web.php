<?php

use App\Http\Controllers\JobController;
use App\Http\Controllers\VersionController;
use Illuminate\Support\Facades\Route;

Route::get('/', [VersionController::class, 'home'])->name('home');
Route::get('/version', [VersionController::class, 'show'])->name('version');
Route::get('/up', [VersionController::class, 'up'])->name('up');

// Need the database and the queue (see config/database.php, config/queue.php).
Route::post('/jobs/{token}', [JobController::class, 'dispatchJob'])->where('token', '[A-Za-z0-9_-]{1,64}')->name('jobs.dispatch');
Route::get('/jobs/{token}', [JobController::class, 'show'])->where('token', '[A-Za-z0-9_-]{1,64}')->name('jobs.show');
