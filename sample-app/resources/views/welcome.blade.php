@extends('layouts.app')

@section('title', config('app.name').' '.($release ?? 'unknown'))

@section('content')
    <h1>{{ config('app.name') }}</h1>
    @if ($release)
        <p>Release <code id="release">{{ $release }}</code></p>
    @else
        <p>No RELEASE file in this copy.</p>
    @endif
    <p>Served from <code>{{ $basePath }}</code></p>
@endsection
