"""A real lab (sshd + PHP-FPM + nginx per host) for behaviour tests, one per test module group.

Each user of this helper picks its own root and port bases so several labs can coexist.
"""

import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from deploy import lab
from helpers import PROJECT

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the lab starts sshd/nginx/FPM and needs root")


class Lab:
    def __init__(self, root, inventory, hosts):
        self.root = root
        self.inventory = str(inventory)
        self.hosts = {h.name: h for h in hosts}

    def url(self, name, path="/version"):
        return f"http://127.0.0.1:{self.hosts[name].http_port}{path}"

    def get(self, name, path="/version"):
        """(status, body) of an HTTP GET through the host's nginx."""
        try:
            with urllib.request.urlopen(self.url(name, path), timeout=10) as resp:
                return resp.status, resp.read().decode().strip()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace").strip()

    def deploy_path(self, name):
        return Path(self.hosts[name].deploy_path)

    def wipe(self, name):
        """A host with nothing deployed, and a pool with an empty OPCache."""
        path = self.deploy_path(name)
        if path.exists():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        lab.fpm_restart(name, root=self.root)
        lab.start_sshd(name, root=self.root)


def start(root, count, ssh_base, http_base, tmp_dir, **kw):
    lab.ensure_packages()
    inventory = Path(tmp_dir) / "lab.yml"
    hosts = lab.up(count, root=root, inventory=str(inventory), ssh_base=ssh_base, http_base=http_base, **kw)
    return Lab(root, inventory, hosts)


def app_copy(tmp_path, name="app", edit=None):
    """A copy of the sample app; `edit` maps relative paths to new content (or a callable)."""
    dest = Path(tmp_path) / name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(PROJECT / "sample-app", dest, symlinks=True)
    for rel, content in (edit or {}).items():
        target = dest / rel
        old = target.read_text() if target.exists() else ""
        target.write_text(content(old) if callable(content) else content)
    return dest


def wait_for(predicate, timeout=10, interval=0.1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def patch_controller(release_dir, suffix, past=2.5):
    """Edit the live release's code IN PLACE (as in the incident), as an editor does: a new file
    renamed over the old one (so hard-linked copies in other releases keep the old text), with
    an mtime `past` seconds ago (older than opcache.file_update_protection=2 s)."""
    f = release_dir / "app" / "Http" / "Controllers" / "VersionController.php"
    text = f.read_text()
    old = "return response($release, 200)"
    assert old in text
    tmp = f.with_name(f.name + ".new")
    tmp.write_text(text.replace(old, f"return response($release . {suffix!r}, 200)"))
    os.chmod(tmp, 0o644)
    os.replace(tmp, f)
    t = time.time() - past
    os.utime(f, (t, t))
    return f
