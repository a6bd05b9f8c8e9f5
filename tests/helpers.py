"""Shared test helpers: write YAML files, run `fab` as a user would."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
FAB = str(Path(sys.executable).parent / "fab")

# LAB_SLOT=N keeps this run's sandbox roots and ports apart from other runs on the same machine
# (several worktrees testing at once): roots get a -sN suffix, ports move up by N * 10000. The
# labs' ports stay below 13000, so slots 0-5 fit under 65536.
SLOT = int(os.environ.get("LAB_SLOT", "0"))
if not 0 <= SLOT <= 5:
    raise SystemExit(f"LAB_SLOT={SLOT}: use 0 to 5 (ports move up by LAB_SLOT * 10000 and must stay below 65536)")


def slot_root(path):
    return f"{path}-s{SLOT}" if SLOT else path


def slot_port(base):
    return base + 10000 * SLOT


def write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def composer_install(app_dir):
    """vendor/ for a copy of the sample app installed by hand (what the pipeline's composer step does)."""
    home = tempfile.mkdtemp(prefix="composer-home-")
    try:
        r = subprocess.run(["composer", "install", "--no-dev", "--optimize-autoloader", "--no-interaction", "--quiet"],
                           cwd=app_dir, capture_output=True, text=True, timeout=120, env=dict(os.environ, COMPOSER_HOME=home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert r.returncode == 0, f"composer install in {app_dir}: {r.stdout}{r.stderr}"


def fab(*args, timeout=300, env=None):
    """Run `fab ARGS` from the project root; returns CompletedProcess with text output."""
    full_env = dict(os.environ, COLUMNS="200", **(env or {}))
    return subprocess.run([FAB, *args], cwd=PROJECT, capture_output=True, text=True, timeout=timeout, env=full_env)


def process_gone(pid, timeout=5):
    """Has process `pid` ended (or become a zombie) within `timeout` seconds?"""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def wait_exec(pid, program, timeout=5):
    """Wait until process `pid` runs `program` (its argv[0]: the exec happened), at most `timeout` s."""
    want = program.encode()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == want:
                return
        except OSError:
            pass
        time.sleep(0.01)

