"""The health checks: one module per check, found here by discovery (a new check is one file).

Each module has:
  CHECK                         a Check: its name, title and order, and how remediation treats it
  check(ev, host, pipeline, release)   evidence (evidence.parse) -> a model.Finding; pure

CHECKS (the names, in order) and TITLES are read from the modules, never listed elsewhere.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    order: int
    needs_live: bool = True       # with no deploy path at all: "not checked" (warn), not run
    during_deploy: bool = True    # a deploy's own healing acts on its failures (else only `fab heal`)


def _discover():
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "CHECK", None)
        if isinstance(spec, Check):
            found[spec.name] = module
    return dict(sorted(found.items(), key=lambda item: item[1].CHECK.order))


MODULES = _discover()
CHECKS = tuple(MODULES)
TITLES = {name: m.CHECK.title for name, m in MODULES.items()}


def spec(name):
    module = MODULES.get(name)
    return module.CHECK if module else None
