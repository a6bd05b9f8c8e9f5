"""A real-sized Laravel app for the benchmark: the sample app plus a generated vendor/ tree
(about 10,000 PHP files, about 100 MB, file sizes spread like a real vendor/), and a shared
storage dir with 100,000 files (uploads, cache, sessions) created on the host before the
first deploy. Deterministic: the same seed gives the same tree.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from pathlib import Path

MEAN_SIZE = 10 * 1024
MAX_SIZE = 256 * 1024
MIN_SIZE = 300


def _sizes(rng, count, total):
    """Log-normal sizes (most files a few KB, a few large ones), scaled to `total` bytes."""
    sigma = 1.0
    mu = math.log(total / count) - sigma * sigma / 2
    raw = [min(MAX_SIZE, max(MIN_SIZE, rng.lognormvariate(mu, sigma))) for _ in range(count)]
    scale = total / sum(raw)
    return [max(MIN_SIZE, int(s * scale)) for s in raw]


def _methods(rng, n=400):
    words = ["get", "set", "resolve", "make", "build", "handle", "parse", "format", "load", "merge", "apply",
             "filter", "map", "reduce", "validate", "normalize", "dispatch", "fetch", "store", "cache"]
    nouns = ["Config", "Value", "Item", "Request", "Response", "Token", "Node", "Path", "Key", "Option",
             "Stream", "Event", "Listener", "Handler", "Factory", "Driver", "Record", "Query", "Rule", "Schema"]
    out = []
    for i in range(n):
        name = rng.choice(words) + rng.choice(nouns) + str(i)
        arg = rng.choice(nouns).lower()
        body = "\n".join(f"        ${arg}{j} = ${arg}[{rng.randint(0, 99)}] ?? {rng.randint(0, 10**6)};"
                         for j in range(rng.randint(1, 8)))
        out.append(f"""
    /**
     * {name.capitalize()} the given {arg} ({rng.getrandbits(64):016x}).
     *
     * @param  array  ${arg}
     * @return mixed
     */
    public function {name}(array ${arg})
    {{
{body}
        return ${arg}0 ?? null;
    }}
""")
    return out


def make_app(base, dest, files=10000, total_mb=100, seed=1):
    """Copy `base` (the sample app, composer-installed if it is a composer app) to `dest` and
    add vendor/benchgen/ so that the tree holds about `files` files and `total_mb` MB.
    Returns {"files": N, "bytes": B} of the whole tree."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest, symlinks=True)
    have = [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()]
    n = max(0, files - len(have))
    total = max(n * MIN_SIZE, total_mb * 1024 * 1024 - sum(p.stat().st_size for p in have))
    rng = random.Random(seed)
    methods = _methods(rng)
    packages = max(1, n // 100)
    for i, size in enumerate(_sizes(rng, n, total) if n else []):
        pkg = i % packages
        sub = ("Support", "Http", "Console", "Database", "Events")[i // packages % 5]
        d = dest / "vendor" / "benchgen" / f"package{pkg:03d}" / "src" / sub
        if i < packages * 5:
            d.mkdir(parents=True, exist_ok=True)
        cls = f"Class{i:05d}"
        parts = [f"<?php\n\nnamespace Benchgen\\Package{pkg:03d}\\{sub};\n\nclass {cls}\n{{"]
        length = len(parts[0])
        while length < size - 2:
            m = methods[rng.randrange(len(methods))]
            parts.append(m)
            length += len(m)
        parts.append("}\n")
        (d / f"{cls}.php").write_text("".join(parts))
    return tree_size(dest)


def tree_size(path):
    count = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                count += 1
                size += os.path.getsize(p)
    return {"files": count, "bytes": size}


def make_storage(storage, skeleton, files=100000, per_dir=1000, seed=2):
    """A shared storage dir as a live app has one: the app's storage skeleton plus `files`
    small files (uploads) in dirs of `per_dir`. Created directly on the host's disk."""
    storage = Path(storage)
    if Path(skeleton).is_dir():
        shutil.copytree(skeleton, storage, symlinks=True, dirs_exist_ok=True)
    rng = random.Random(seed)
    blob = bytes(rng.getrandbits(8) for _ in range(4096))
    for i in range(files):
        if i % per_dir == 0:
            d = storage / "app" / "uploads" / f"{i // per_dir:04d}"
            d.mkdir(parents=True, exist_ok=True)
        size = 100 + (i * 7919) % 1900
        fd = os.open(d / f"upload-{i:06d}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, blob[i % 2048:][:size])
        finally:
            os.close(fd)
    return files
