"""The lab's one error type and its progress lines on stderr (`LAB_QUIET=1` silences them).

The lab prints plainly: it is test infrastructure that must not depend on the tool's output
layer (deploy/report.py), so `python -m deploy.lab` works on its own.
"""

from __future__ import annotations

import os
import sys


class LabError(RuntimeError):
    """A lab daemon could not be started/stopped, or the lab is in a state we refuse."""


def log(msg: str) -> None:
    if os.environ.get("LAB_QUIET") != "1":
        print(f"[lab] {msg}", file=sys.stderr, flush=True)
