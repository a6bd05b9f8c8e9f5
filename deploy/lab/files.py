"""Files of the lab: atomic writes, owned directories, log tails, the per-root lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically (tmp + rename) with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def mkdir(path: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, uid, gid)


@contextlib.contextmanager
def locked(root: Path):
    """Serialise up/down/helpers on one root (several processes may drive the lab)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lab.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def tail(path: str | os.PathLike, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def logged_since(path: str, offset: int, needles) -> bool:
    """True if a log got one of needles written after offset (a size() taken before)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return False
    return any(n in text for n in needles)
