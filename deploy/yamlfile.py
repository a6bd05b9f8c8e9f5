"""YAML loading that remembers where every value came from, so errors can name file and line.

PyYAML's composer gives nodes with marks; we turn them into plain dicts/lists whose
containers also carry the line of each key. Validation code then reads values through
`Section`, which raises ConfigError with file, line and key already filled in.
"""

from pathlib import Path

import yaml

from .errors import ConfigError


class LineDict(dict):
    """A dict that also knows the line of the mapping and of each key."""

    line = None
    key_lines = None


class LineList(list):
    line = None
    item_lines = None


def _convert(node, file):
    if isinstance(node, yaml.MappingNode):
        out = LineDict()
        out.line = node.start_mark.line + 1
        out.key_lines = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError("YAML merge keys (<<) are not supported", file, key_node.start_mark.line + 1)
            key = _convert(key_node, file)
            if not isinstance(key, str):
                raise ConfigError(f"keys must be strings, got {key!r}", file, key_node.start_mark.line + 1)
            if key in out:
                raise ConfigError("duplicate key", file, key_node.start_mark.line + 1, key,
                                  "remove one of the two entries")
            out[key] = _convert(value_node, file)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        out = LineList(_convert(item, file) for item in node.value)
        out.line = node.start_mark.line + 1
        out.item_lines = [item.start_mark.line + 1 for item in node.value]
        return out
    # Scalars: let PyYAML's resolver decide int/bool/null/str as usual.
    return _scalar(node)


_scalar_loader = yaml.SafeLoader("")


def _scalar(node):
    return _scalar_loader.construct_object(node)


def load(path):
    """Parse a YAML file into LineDict/LineList/scalars. Raises ConfigError on syntax errors."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError("file not found", path, hint="check the path, or pass the right --inventory/--pipeline") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", path, line,
                          hint="fix the syntax at that line (indentation, a missing ':' or quote)") from None
    if node is None:
        return LineDict()
    return _convert(node, path)


class Section:
    """Typed, line-aware access to one mapping of a YAML file.

    Every getter raises ConfigError naming the file, the key's line and a dotted key path.
    `done()` rejects keys nobody asked for, so typos are errors, not silently ignored.
    """

    def __init__(self, data, file, prefix="", line=None):
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {_kind(data)}", file, line or getattr(data, "line", None), prefix or None)
        self.data = data
        self.file = file
        self.prefix = prefix
        # The line of the key that holds this mapping reads best in "missing key" errors.
        self.line = line or getattr(data, "line", None)
        self.seen = set()

    def key_path(self, key):
        return f"{self.prefix}.{key}" if self.prefix else key

    def line_of(self, key):
        lines = getattr(self.data, "key_lines", None) or {}
        return lines.get(key, self.line)

    def error(self, key, message, hint=None):
        return ConfigError(message, self.file, self.line_of(key) if key else self.line,
                           self.key_path(key) if key else (self.prefix or None), hint)

    def has(self, key):
        return key in self.data

    def get(self, key, types, default=None, required=False, hint=None):
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise ConfigError("missing required key", self.file, self.line, self.key_path(key),
                                  hint or f"add '{key}:' to this section")
            return default
        value = self.data[key]
        if types is int and isinstance(value, bool):
            raise self.error(key, f"expected an integer, got {value!r}")
        if not isinstance(value, types):
            raise self.error(key, f"expected {_type_name(types)}, got {_kind(value)} {value!r}", hint)
        return value

    def string(self, key, default=None, required=False, hint=None):
        value = self.get(key, (str, int, float), default, required, hint)
        if value is None or isinstance(value, bool):
            if isinstance(value, bool):
                raise self.error(key, f"expected a string, got {value!r}", hint)
            return value
        return str(value)

    def integer(self, key, default=None, required=False, minimum=None):
        value = self.get(key, int, default, required)
        if value is not None and minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def boolean(self, key, default=None):
        return self.get(key, bool, default)

    def section(self, key, required=False):
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise ConfigError("missing required key", self.file, self.line, self.key_path(key))
            return Section(LineDict(), self.file, self.key_path(key), self.line_of(key))
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {_kind(value)}")
        return Section(value, self.file, self.key_path(key), self.line_of(key))

    def string_list(self, key, default=None, required=False):
        value = self.get(key, (list, str), default, required)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        for item in value:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise self.error(key, f"expected a list of strings, found {_kind(item)} {item!r}")
        return [str(item) for item in value]

    def done(self, allowed_hint=None):
        unknown = [key for key in self.data if key not in self.seen]
        if unknown:
            key = unknown[0]
            known = ", ".join(sorted(self.seen))
            raise self.error(key, "unknown key", allowed_hint or f"known keys here: {known}")


def _type_name(types):
    if not isinstance(types, tuple):
        types = (types,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
             list: "a list", dict: "a mapping"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


def _kind(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"
