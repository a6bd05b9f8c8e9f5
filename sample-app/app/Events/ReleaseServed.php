<?php

namespace App\Events;

use Illuminate\Foundation\Events\Dispatchable;

class ReleaseServed
{
    use Dispatchable;

    /** @var string */
    public $release;

    public function __construct(string $release)
    {
        $this->release = $release;
    }
}
