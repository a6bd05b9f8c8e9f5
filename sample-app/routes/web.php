<?php

use App\Http\Controllers\VersionController;
use Illuminate\Support\Facades\Route;

Route::get('/', [VersionController::class, 'home'])->name('home');
Route::get('/version', [VersionController::class, 'show'])->name('version');
Route::get('/up', [VersionController::class, 'up'])->name('up');
