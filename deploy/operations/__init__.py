"""Operations on one host, each ending in one named state (results.py; docs/commands.md):

  deploy.py    deploy_host: the deploy state machine (and the fleet's lock pass)
  rollback.py  rollback_host: `fab rollback`
  state.py     host_state, unlock_host: `fab releases`, `fab unlock` (read-only / the lock)
  results.py   the states and HostResult
"""

from ..session import connect
from .deploy import deploy_host, live_release, lock_host, open_host, release_lock
from .results import (DEPLOYED, FAILED, FAILED_BEFORE_SWITCH, LOCKED, NEEDS_HUMAN, OK_STATES, PLANNED, ROLLED_BACK,
                      UNREACHABLE, UNTOUCHED, HostResult)
from .rollback import rollback_host, rollback_target
from .state import host_state, read_state, unlock_host

__all__ = ["connect", "deploy_host", "live_release", "lock_host", "release_lock", "DEPLOYED", "FAILED",
           "FAILED_BEFORE_SWITCH", "LOCKED", "NEEDS_HUMAN", "OK_STATES", "PLANNED", "ROLLED_BACK", "UNREACHABLE",
           "UNTOUCHED", "HostResult", "rollback_host", "rollback_target", "host_state", "read_state", "unlock_host"]
