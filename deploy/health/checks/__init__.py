"""The health checks: one module per check, found here by discovery (a new check is one file).

Each module has:
  CHECK                         a Check: its name, title and order, and how remediation treats it
  check(ev, host, pipeline, release)   evidence (evidence.parse) -> a model.Finding; pure

CHECKS (the names, in order) and TITLES are read from the modules, never listed elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import discover


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    order: int
    needs_live: bool = True       # with no deploy path at all: "not checked" (warn), not run
    during_deploy: bool = True    # a deploy's own healing acts on its failures (else only `fab heal`)


MODULES = discover.declared(__name__, __path__, "CHECK", Check)
CHECKS = tuple(MODULES)
TITLES = {name: m.CHECK.title for name, m in MODULES.items()}


def spec(name):
    module = MODULES.get(name)
    return module.CHECK if module else None
