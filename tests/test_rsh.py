"""deploy/rsh.py + RshBridge: rsync's remote shell tunnelled through the tool's SSH connection."""

import os
import subprocess
import sys

from helpers import PROJECT
from deploy.transport import run_local

RSH = PROJECT / "deploy" / "rsh.py"


def test_rsh_refuses_to_run_outside_the_tool():
    env = {k: v for k, v in os.environ.items() if k != "DEPLOY_RSH_SOCKET"}
    r = subprocess.run([sys.executable, str(RSH), "-l", "deploy", "host", "rsync", "--server"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 255 and "DEPLOY_RSH_SOCKET" in r.stderr


def test_rsh_reports_an_unreachable_bridge(tmp_path):
    out, err, code = run_local(f"{sys.executable} {RSH} host true", env={"DEPLOY_RSH_SOCKET": str(tmp_path / "nope")})
    assert code == 255 and "cannot reach the tool's SSH connection" in err
