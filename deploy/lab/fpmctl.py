"""Talk FastCGI to a lab pool through the project's own client, deploy/remote/fpmctl.php.

The lab runs on this machine, where php-cli is installed (PACKAGES), so it uses the same
FastCGI client the deploy runs on its hosts instead of a second one in Python: `ping` for the
pool's ping.path, `wait` after a start, `request` for the pool's status page.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .messages import LabError
from .packages import PHP

FPMCTL = Path(__file__).resolve().parent.parent / "remote" / "fpmctl.php"
PING_PATH = "/fpm-ping"
STATUS_PATH = "/fpm-status"


def _run(action: str, socket: str, *flags: str, timeout: float) -> tuple[int, dict]:
    argv = [PHP, str(FPMCTL), action, f"--socket={socket}", f"--timeout={timeout:g}", *flags]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    except subprocess.TimeoutExpired:
        return 3, {"error": f"fpmctl {action} did not finish in {timeout + 10:g}s"}
    try:
        out = json.loads(r.stdout)
    except ValueError:
        out = {"error": (r.stdout + r.stderr).strip() or f"fpmctl {action} exited {r.returncode}"}
    return r.returncode, out


def pong(socket: str, timeout: float = 2.0) -> bool:
    """True if the pool answers its ping path with pong."""
    code, out = _run("ping", socket, f"--ping-path={PING_PATH}", timeout=timeout)
    return code == 0 and out.get("body") == "pong"


def wait(socket: str, timeout: float) -> None:
    """Until the pool answers its ping path; LabError when it does not within timeout seconds."""
    code, out = _run("wait", socket, f"--ping-path={PING_PATH}", timeout=timeout)
    if code != 0 or out.get("body") != "pong":
        raise LabError(f"FPM pool on {socket} does not answer {PING_PATH}: {out.get('error') or out}")


def status(socket: str, full: bool = False, timeout: float = 5.0) -> dict:
    """The pool's pm.status_path page (JSON) as a dict."""
    code, out = _run("request", socket, f"--script={STATUS_PATH}", f"--query={'json&full' if full else 'json'}",
                     timeout=timeout)
    if code != 0:
        raise LabError(f"FPM status of {socket}: {out.get('error') or out.get('reason') or out}")
    return json.loads(out["body"])
