"""nginx configuration, as `nginx -T` prints it: the files, their directives (includes
followed, nginx's inheritance of fastcgi_param), and what the server of a deploy path passes to
PHP-FPM. Pure functions: text in, data out (tests/test_health_parsers.py feeds them tables).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from dataclasses import dataclass

from .model import FAIL, WARN

REALPATH_LINES = ("fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
                  "fastcgi_param DOCUMENT_ROOT $realpath_root;")


@dataclass
class Directive:
    name: str
    args: list
    file: str
    line: int
    block: list | None = None


def nginx_files(dump):
    """`nginx -T` output -> {path: text}, in dump order (the first one is the main config)."""
    files, cur, buf = {}, None, []
    for line in (dump or "").splitlines():
        m = re.match(r"^# configuration file (.+):$", line)
        if m:
            if cur is not None:
                files[cur] = "\n".join(buf)
            cur, buf = m.group(1), []
        elif cur is not None:
            buf.append(line)
    if cur is not None:
        files[cur] = "\n".join(buf)
    return files


def tokens(text):
    """nginx tokens: (token, line, quoted). Handles comments, quotes, ${var} inside words."""
    i, n, line = 0, len(text), 1
    out = []
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            out.append((c, line, False))
            i += 1
        elif c in "\"'":
            q, j, buf = c, i + 1, []
            while j < n and text[j] != q:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            out.append(("".join(buf), line, True))
            i = j + 1
        else:
            j, buf = i, []
            while j < n and not text[j].isspace() and text[j] not in ";{}\"'":
                if text[j] == "$" and j + 1 < n and text[j + 1] == "{":
                    k = text.find("}", j)
                    if k < 0:
                        break
                    buf.append(text[j:k + 1])
                    j = k + 1
                    continue
                buf.append(text[j])
                j += 1
            if j == i:
                i += 1
                continue
            out.append(("".join(buf), line, False))
            i = j
    return out


def _parse_block(toks, pos, file, files, main_dir, depth=0):
    out = []
    words = []
    while pos < len(toks):
        tok, line, quoted = toks[pos]
        if not quoted and tok == ";":
            if words:
                name, wline = words[0]
                args = [w for w, _ in words[1:]]
                if name == "include" and args and depth < 10:
                    out.extend(_include(args[0], files, main_dir, depth))
                else:
                    out.append(Directive(name, args, file, wline))
            words = []
        elif not quoted and tok == "{":
            name, wline = words[0] if words else ("", line)
            child, pos = _parse_block(toks, pos + 1, file, files, main_dir, depth)
            out.append(Directive(name, [w for w, _ in words[1:]], file, wline, child))
            words = []
        elif not quoted and tok == "}":
            return out, pos
        else:
            words.append((tok, line))
        pos += 1
    return out, pos


def _include(pattern, files, main_dir, depth):
    if not pattern.startswith("/"):
        pattern = posixpath.join(main_dir, pattern)
    out = []
    for path in sorted(p for p in files if fnmatch.fnmatch(p, pattern)):
        tree, _ = _parse_block(tokens(files[path]), 0, path, files, main_dir, depth + 1)
        out.extend(tree)
    return out


def nginx_tree(dump):
    files = nginx_files(dump)
    if not files:
        return None, None
    main = next(iter(files))
    tree, _ = _parse_block(tokens(files[main]), 0, main, files, posixpath.dirname(main))
    return main, tree


def _walk(block, chain):
    for d in block or []:
        yield d, chain
        if d.block is not None:
            yield from _walk(d.block, chain + [d])


def _params(block):
    return [d for d in block or [] if d.name == "fastcgi_param" and d.args]


def _effective_params(chain, loc):
    """nginx array inheritance: the innermost level that has any fastcgi_param wins, all of it."""
    for level in [loc] + list(reversed(chain)):
        ps = _params(level.block)
        if ps:
            return ps
    return []


def _last(params, name):
    found = [p for p in params if p.args[0] == name]
    return found[-1] if found else None


def _from_docroot(value, deploy_path):
    return any(v in value for v in ("$document_root", "$realpath_root", "$request_filename")) or deploy_path in value


def analyse_nginx(dump, deploy_path, socket, symlinked=True, in_place=False):
    """Pure analysis of an `nginx -T` dump for the server that serves deploy_path.

    in_place: the code lives directly under deploy_path (no current symlink, nothing is switched):
    the root must be deploy_path/public and $realpath_root is not required.
    Returns {"server": bool, "problems": [(status, evidence, fix)], "ok": [text], "location": "file:line"}.
    """
    main, tree = nginx_tree(dump)
    res = {"main": main, "server": False, "problems": [], "ok": [], "location": None}
    if tree is None:
        return res
    top = Directive("main", [], main, 0, tree)
    servers = [(d, chain) for d, chain in _walk(tree, [top]) if d.name == "server" and d.block is not None]
    current = deploy_path.rstrip("/") + "/current"
    ours = []
    for srv, chain in servers:
        roots = [d for d, _ in _walk(srv.block, []) if d.name == "root" and d.args]
        passes = [d for d, _ in _walk(srv.block, []) if d.name == "fastcgi_pass" and d.args]
        if any(r.args[0].startswith(deploy_path.rstrip("/") + "/") or r.args[0] == deploy_path for r in roots) or \
                any(p.args[0] in ("unix:" + socket, socket) for p in passes):
            ours.append((srv, chain, roots, passes))
    if not ours:
        return res
    res["server"] = True
    public = deploy_path.rstrip("/") + "/public"
    for srv, chain, roots, passes in ours:
        for r in roots:
            if in_place:
                if r.args[0].rstrip("/") != public:
                    res["problems"].append((WARN, f"{r.file}:{r.line}: root {r.args[0]} is not {public}: nginx does not"
                                                  " serve the tree the in-place deploy writes",
                                            f"human: root {public};"))
            elif not r.args[0].startswith(current):
                res["problems"].append((WARN, f"{r.file}:{r.line}: root {r.args[0]} is not under {current}: the switch"
                                              " of current does not change what nginx serves",
                                        f"human: root {current}/public;"))
        for d, ch in _walk(srv.block, chain + [srv]):
            if d.name != "location" or d.block is None:
                continue
            fp = [x for x in d.block if x.name == "fastcgi_pass" and x.args]
            if not fp:
                continue
            target = fp[-1].args[0]
            where = f"{d.file}:{d.line} location {' '.join(d.args)}"
            if target.startswith("unix:") and target != "unix:" + socket:
                res["problems"].append((FAIL, f"{where} passes PHP to {target}, but the pool listens on {socket}",
                                        f"human: fastcgi_pass unix:{socket}; (or fix fpm.socket in the inventory)"))
            params = _effective_params(ch, d)
            sf, dr = _last(params, "SCRIPT_FILENAME"), _last(params, "DOCUMENT_ROOT")
            if sf is not None and len(sf.args) > 1 and not _from_docroot(sf.args[1], deploy_path):
                continue   # e.g. FPM's own status/ping pages: no script from the document root
            res["location"] = f"{d.file}:{d.line}"
            if in_place:
                # Nothing is switched in place: whatever nginx passes names the one live tree.
                if sf is None or not sf.args[1:]:
                    res["problems"].append((WARN, f"{where} passes no SCRIPT_FILENAME: PHP-FPM cannot find the script",
                                            f"human: in {where}: fastcgi_param SCRIPT_FILENAME"
                                            " $document_root$fastcgi_script_name; (or include fastcgi.conf)"))
                else:
                    res["ok"].append(f"{where} passes SCRIPT_FILENAME {sf.args[1]} (in place: no symlink switch,"
                                     " $realpath_root not required)")
                continue
            bad = []
            if sf is None or not sf.args[1:] or not sf.args[1].startswith("$realpath_root"):
                val = "missing" if sf is None else f"{' '.join(sf.args[1:])} ({sf.file}:{sf.line})"
                bad.append(f"SCRIPT_FILENAME {val}")
            if dr is None or not dr.args[1:] or dr.args[1] != "$realpath_root":
                val = "missing" if dr is None else f"{' '.join(dr.args[1:])} ({dr.file}:{dr.line})"
                bad.append(f"DOCUMENT_ROOT {val}")
            if bad:
                status = FAIL if symlinked else WARN
                why = (" with current a symlink, workers resolve the old release (realpath cache, OPCache keys)"
                       if symlinked else " (fine while current is not a symlink)")
                res["problems"].append((status, f"{where} passes " + ", ".join(bad) + ":" + why,
                                        f"human: in {where}, after the include of fastcgi_params, put exactly: "
                                        + " ".join(REALPATH_LINES) + " then nginx -t && nginx -s reload"))
            else:
                res["ok"].append(f"{where} passes SCRIPT_FILENAME {sf.args[1]} and DOCUMENT_ROOT $realpath_root")
    return res


def test_errors(dump):
    """The `nginx: [emerg] ...` lines of a failed `nginx -t`/`-T`."""
    return [line for line in (dump or "").splitlines() if line.startswith("nginx: [")]
