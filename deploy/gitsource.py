"""A git commit as the source to ship: `source: {git: REF}` in the playbook, or `--source git:REF`.

The commit is exported with `git archive` (so it is exactly what the commit holds: no
uncommitted edits, no untracked or ignored files, `export-ignore` honoured, submodules not
included) into a directory on the controller whose name is the commit, which `sync` ships like
any source directory. The same commit always gets the same directory, so a plan made on one
machine and run on another (same user id and temp dir, as CI runners have) names the same
rsync command. It is exported afresh for every deploy and `--check`: a copy that was edited in
between is never shipped.

A plan needs no export: the commit and its tree id are read from the repository
(docs/pipeline.md#source-a-git-commit).
"""

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ConfigError

PREFIX = "git:"
KEYS = ("git", "repo", "path")


@dataclass(frozen=True)
class GitSource:
    """What to ship: `ref` of the repository that holds `repo`, only `path` in it ('' = all).

    path None: the repository's own prefix of `repo` (--source git:REF on a directory source).
    After resolve(): the commit, its tree id (of `path`), and the work tree's changes there."""

    repo: str
    ref: str
    path: str | None = ""
    origin: str = "--source"     # where it was given, for messages: "file:line" or "--source"
    commit: str | None = None
    tree: str | None = None
    dirty: tuple = ()            # `git status --porcelain` lines under path (uncommitted changes)

    @property
    def short(self):
        return self.commit[:12] if self.commit else None

    def describe(self):
        where = f", path {self.path}" if self.path else ""
        changes = f"; {len(self.dirty)} uncommitted change(s) NOT shipped" if self.dirty else ""
        return f"git {self.ref} @ {self.short} (repo {self.repo}{where}{changes})"

    def as_dict(self):
        return {"repo": self.repo, "ref": self.ref, "path": self.path or "", "commit": self.commit,
                "tree": self.tree, "dirty": list(self.dirty)}


def override_ref(value):
    """`--source git:REF` -> REF; None for a directory."""
    if value is None or not str(value).startswith(PREFIX):
        return None
    ref = str(value)[len(PREFIX):]
    if not ref.strip():
        raise ConfigError("empty git ref in --source git:", hint="e.g. --source git:HEAD, git:main or git:v1.2.0")
    return ref


def parse(section, project):
    """The playbook's `source: {git: REF, repo: DIR, path: SUBDIR}` (a yamlfile.Section)."""
    ref = section.string("git", required=True, hint="the commit to ship: a branch, tag or sha, e.g. git: main")
    repo = section.string("repo", ".")
    path = section.string("path", "")
    section.done()
    repo_path = Path(repo).expanduser()
    if not repo_path.is_absolute():
        repo_path = (project / repo_path).resolve()
    if not repo_path.is_dir():
        raise section.error("repo", f"repository directory {repo_path} does not exist",
                            "repo: a directory of the git work tree (relative to the project root), default the project")
    clean = path.strip("/")
    if ".." in clean.split("/"):
        raise section.error("path", f"path must stay inside the repository, got {path!r}", "e.g. path: app")
    where = f"{section.file}:{section.line}"
    return GitSource(repo=str(repo_path), ref=ref, path=clean, origin=where)


def _git(repo, *args, check_input=None):
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60,
                              input=check_input)
    except FileNotFoundError:
        raise ConfigError("git is not installed on this machine (needed for a git source)",
                          hint="install git, or ship a directory (source: DIR)") from None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"git in {repo} did not answer within 60 s") from None


def resolve(src, allow_dirty=False):
    """The commit `ref` names, the tree id of `path` in it, and uncommitted changes under path.

    Uncommitted changes are refused unless allow_dirty: they would not be shipped, and a deploy
    of "what I have here" that silently leaves out the edit is worse than a refusal."""
    top = _git(src.repo, "rev-parse", "--show-toplevel")
    bare = _git(src.repo, "rev-parse", "--is-bare-repository")
    if top.returncode != 0 and bare.stdout.strip() != "true":
        raise ConfigError(f"{src.repo} is not in a git repository (from {src.origin})",
                          hint="point repo: at a git work tree, or ship a directory (source: DIR)")
    path = src.path
    if path is None:  # a directory source shipped as a commit: its own place in the repository
        path = _git(src.repo, "rev-parse", "--show-prefix").stdout.strip().strip("/")
    commit = _git(src.repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{src.ref}^{{commit}}")
    if commit.returncode != 0 or not commit.stdout.strip():
        raise ConfigError(f"git ref {src.ref!r} is not a commit in {src.repo} (from {src.origin})",
                          hint="a branch, tag or sha of that repository (git fetch first in CI)")
    sha = commit.stdout.strip()
    tree = _git(src.repo, "rev-parse", "--verify", "--quiet", f"{sha}:{path}" if path else f"{sha}^{{tree}}")
    if tree.returncode != 0:
        raise ConfigError(f"commit {sha[:12]} of {src.repo} has no directory {path!r} (from {src.origin})",
                          hint="path: a directory of the repository, relative to its top level")
    dirty = ()
    if top.returncode == 0:
        status = _git(top.stdout.strip(), "status", "--porcelain", "--untracked-files=normal", "--",
                      path or ".")
        dirty = tuple(line for line in status.stdout.splitlines() if line.strip())
    resolved = replace(src, path=path, commit=sha, tree=tree.stdout.strip(), dirty=dirty)
    if dirty and not allow_dirty:
        shown = ", ".join(line[3:] for line in dirty[:5]) + (f", ... ({len(dirty) - 5} more)" if len(dirty) > 5 else "")
        raise ConfigError(f"the work tree of {src.repo} has uncommitted changes under {path or '.'} that git "
                          f"{src.ref} ({sha[:12]}) does not contain: {shown} (from {src.origin})",
                          hint="commit them (or stash them), or pass --allow-dirty to ship the commit without them")
    return resolved


def export_dir(src):
    """Where the commit is exported: the same path for the same commit (and path) and user."""
    name = src.commit + (f"-{hashlib.sha256(src.path.encode()).hexdigest()[:8]}" if src.path else "")
    return str(Path(tempfile.gettempdir()) / f"deploy-git-{os.getuid()}" / name)


def export(src):
    """Export the resolved commit into export_dir(src), replacing what is there. Returns the dir."""
    dest = Path(export_dir(src))
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=".export-", dir=dest.parent))
    try:
        spec = f"{src.commit}:{src.path}" if src.path else src.commit
        proc = subprocess.Popen(["git", "-C", src.repo, "archive", "--format=tar", spec],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                # The archive of our own commit: its symlinks and modes kept; no absolute paths or '..'.
                archive.extractall(fresh, filter="tar")
        except tarfile.TarError as exc:
            proc.kill()
            error = f"unreadable archive: {exc}"
        else:
            error = None
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0 or error:
            raise ConfigError(f"git archive {spec} failed in {src.repo}: {err or error}")
        fresh.chmod(0o755)
        old = None
        if dest.exists():
            old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
            dest.rename(old)
        fresh.rename(dest)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    return str(dest)
