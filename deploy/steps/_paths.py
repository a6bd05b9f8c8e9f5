"""Validation shared by steps that take paths relative to the release."""

import posixpath


def relative_paths(section, key, default):
    paths = section.string_list(key, default)
    for path in paths:
        norm = posixpath.normpath(path)
        if path.startswith("/") or norm.startswith("..") or norm in (".", ""):
            raise section.error(key, f"'{path}' must be a path inside the release (relative, no '..')",
                                "e.g. storage or bootstrap/cache (relative to the release directory)")
    return [posixpath.normpath(p) for p in paths]
