"""The rollout's arithmetic, as data: batches (canary first), the failure threshold per batch,
and the host that runs the once-per-fleet steps. Pure functions, shared by the plan (which
shows them) and the fleet (which runs them)."""

import math

from .errors import ConfigError

DEFAULT_PARALLEL = 10


def batches(hosts, serial):
    """Split hosts by `serial` (counts or percentages of the whole fleet); the last size repeats."""
    out, i, total = [], 0, len(hosts)
    sizes = list(serial) or ["100%"]
    k = 0
    while i < total:
        spec = sizes[min(k, len(sizes) - 1)]
        text = str(spec)
        size = math.ceil(total * int(text[:-1]) / 100) if text.endswith("%") else int(spec)
        size = max(1, size)
        out.append(hosts[i:i + size])
        i += size
        k += 1
    return out


def threshold(max_fail, batch_size):
    """How many failed hosts a batch tolerates."""
    text = str(max_fail)
    if text.endswith("%"):
        return math.floor(batch_size * int(text[:-1]) / 100)
    return int(max_fail)


def primary(hosts, pipeline):
    """The host that runs the once-per-fleet steps (migrate): the one marked `primary: true`,
    else the first. Returns (primary name or None when the pipeline has no such step, hosts in
    deploy order: the primary first, so it is in the first batch)."""
    if not any(s.spec.once_per_fleet for s in pipeline.steps) or not hosts:
        return None, list(hosts)
    marked = [h for h in hosts if h.primary]
    if len(marked) > 1:
        raise ConfigError(f"{len(marked)} hosts are marked primary: {', '.join(h.name for h in marked)}",
                          marked[1].source, key="primary",
                          hint="mark one host primary: true (it runs the migrations), or deploy them separately")
    first = marked[0] if marked else hosts[0]
    return first.name, [first] + [h for h in hosts if h is not first]
