"""Validation shared by steps that take paths relative to the release."""

import posixpath


def relative_paths(section, key, default):
    paths = section.string_list(key, default)
    for path in paths:
        norm = posixpath.normpath(path)
        if path.startswith("/") or norm.startswith("..") or norm in (".", ""):
            raise section.error(key, f"'{path}' must be a path inside the release (relative, no '..')")
    return [posixpath.normpath(p) for p in paths]
