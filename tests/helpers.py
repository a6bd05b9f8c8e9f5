"""Shared test helpers: write YAML files, run `fab` as a user would."""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
FAB = str(Path(sys.executable).parent / "fab")

# LAB_SLOT=N keeps this run's sandbox roots and ports apart from other runs on the same machine
# (several worktrees testing at once): roots get a -sN suffix, ports move up by N * 10000. Past
# 65535 (slots 6 and up) they wrap around by 64000: slot 8 is +16000, 9 +26000, 10 +36000. The
# tests' bases span less than 10000, so 0, 8, 9 and 10 never share a port, but a wrapped slot
# does share ports with two low ones (9 with 2 and 3): do not run those at the same time.
SLOT = int(os.environ.get("LAB_SLOT", "0"))


def slot_root(path):
    return f"{path}-s{SLOT}" if SLOT else path


def slot_port(base):
    port = base + 10000 * SLOT
    while port > 65535:
        port -= 64000
    return port


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
