"""Packages whose modules declare themselves (the step kinds, the health checks): adding one is
adding a file."""

import importlib
import pkgutil


def declared(package, path, attr, kind):
    """{name: module} of the modules of `package` (its `__path__`) whose `attr` is a `kind`
    instance, ordered by that declaration's `order`; `_private` modules are skipped."""
    found = {}
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        spec = getattr(module, attr, None)
        if isinstance(spec, kind):
            found[spec.name] = module
    return dict(sorted(found.items(), key=lambda item: getattr(item[1], attr).order))
