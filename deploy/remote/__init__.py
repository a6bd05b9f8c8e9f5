"""Programs that run on the hosts: the files next to this one (POSIX sh and PHP).

They are real files so they can be read, linted (shellcheck, `php -l`) and unit-tested
without SSH (tests/test_remote_scripts.py). Plans name each one with its sha256 prefix
(`<deploy/remote/verify.sh@1a2b3c4d>`), so a reviewer reads exactly that file here.

Two ways to reach a host, by kind:

* Shell programs travel inline, as the script argument of `sh -c`, inside the session that
  needs them: never stale on the host, no install step, no extra round trip, and nothing is
  written for read-only commands (`fab releases`, `fab plan --check`).
* PHP programs (fpmctl.php) must be files: php-cli runs them by path, and the FastCGI probe
  they hand to the pool must be readable by the pool. They live in
  `<deploy_path>/.deploy/bin/` and are installed over the tool's own SSH connection (no SFTP)
  only when the host's copy differs: an operation's first session lists the sha256 of what
  the host has (`listing`), and the executor ships what is missing (`Runner.install`).
"""

import functools
import hashlib
import posixpath
from pathlib import Path

from ..commands import Program

DIR = Path(__file__).resolve().parent
SHELL, PHP = ".sh", ".php"


def names(suffix=None):
    """Every program shipped to hosts (of one kind: SHELL or PHP)."""
    return sorted(p.name for p in DIR.iterdir() if p.suffix in ((suffix,) if suffix else (SHELL, PHP)))


def local_path(name):
    path = DIR / name
    if path.suffix not in (SHELL, PHP) or not path.is_file():
        raise KeyError(f"no remote program {name!r} in {DIR}")
    return path


@functools.lru_cache(maxsize=None)
def digest(name):
    return hashlib.sha256(local_path(name).read_bytes()).hexdigest()


def label(name):
    """How plans show a program: its path in this repository and its hash."""
    return f"deploy/remote/{name}@{digest(name)[:8]}"


def bin_dir(paths):
    return posixpath.join(paths.meta, "bin")


def host_path(paths, name):
    return posixpath.join(bin_dir(paths), name)


def run(ctx, name, *args, **kw):
    """The command that runs program `name` on the host with quoted arguments.

    Shell: `sh -c <its text> NAME ARGS` ($0 is the name, so its messages name it). PHP: the
    host's php-cli on the installed copy."""
    if name.endswith(PHP):
        return ctx.cmd("{} {}" + " {}" * len(args), ctx.php(), host_path(ctx.paths, name), *args, **kw)
    text = local_path(name).read_text()
    return ctx.cmd("sh -c {} {}" + " {}" * len(args), Program(text, label(name)), name, *args, **kw)


def listing(ctx):
    """List the sha256 of the host's installed programs (kept as the `programs` fact)."""
    return ctx.cmd("cd {} 2>/dev/null && sha256sum -- *.php 2>/dev/null; true", bin_dir(ctx.paths),
                   capture="programs", desc="which of the tool's installed programs the host has")


def missing(listed):
    """The installed-kind programs whose host copy is absent or different, from `listing`."""
    have = {}
    for line in (listed or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            have[parts[1].lstrip("*")] = parts[0]
    return [n for n in names(PHP) if have.get(n) != digest(n)]


def installed_note(ctx):
    """The plan's line for the install that follows the listing, when needed."""
    return ("then, only where the host's copy differs, installed into " + bin_dir(ctx.paths)
            + " over this connection: " + ", ".join(label(n) for n in names(PHP)))
