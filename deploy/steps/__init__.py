"""Step kinds: one module per kind, found here by discovery (adding a kind is one new file).

Each module has:
  KIND          a Kind: the name used in playbooks and what the orchestration needs to know
  parse(sec)    validate its settings (a yamlfile.Section) and return them
  plan(s, ctx)  the commands, as data; it never runs them

Deploy, rollback, the plan's footer, the order checks and remediation read the declarations
of Kind, never a list of kind names.
"""

from dataclasses import dataclass

from .. import discover

BUILD = "build"    # builds the new release: before the switch
SWITCH = "switch"  # moves current: exactly one per pipeline
LIVE = "live"      # works on the live release: after the switch
ANY = "any"        # either side (run; the pool steps, which matter after the switch)


@dataclass(frozen=True)
class Kind:
    name: str
    order: int                    # where it usually goes in a pipeline (lists of kinds, docs)
    phase: str                    # BUILD, SWITCH, LIVE or ANY
    summary: str                  # what it does, in plain English (plans)
    on_rollback: bool = False     # planned again for the release a rollback goes back to
    resets_pool: bool = False     # makes the PHP-FPM pool drop the code it cached
    healable: bool = False        # failing after the switch: heal the host first, then retry
    ships_code: bool = False      # a pipeline needs one of these before the switch
    once_per_fleet: bool = False  # runs on one host per deploy (the primary); the fleet holds
                                  # every host's switch until it ended


KINDS = discover.declared(__name__, __path__, "KIND", Kind)


def spec(kind):
    """The Kind of a step kind name, or None for the tool's own steps (lock, prepare, finalize...)."""
    module = KINDS.get(kind)
    return module.KIND if module else None


def is_switch(kind):
    s = spec(kind)
    return s is not None and s.phase == SWITCH
