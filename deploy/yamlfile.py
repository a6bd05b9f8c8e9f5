"""YAML loading that remembers where every value came from, so errors can name file and line.

The file is checked as bytes and text first (size, UTF-8, control characters), then read as
YAML events (libyaml when PyYAML has it) straight into plain dicts/lists whose containers also
carry the line of each key. Only plain data is accepted: one document, the core tags (strings,
numbers, true/false, null, lists, mappings), aliases within a budget (an alias shares the
anchored value, it is never copied, and the budget is checked before any of it is used).
Validation code then reads values through `Section`, which raises ConfigError with file, line
and key already filled in.
"""

import codecs
import os
import re
from pathlib import Path

import yaml

from . import values
from .errors import ConfigError

MAX_BYTES = 4 * 1024 * 1024   # ~70,000 hosts in one inventory file; split bigger ones under hosts/
MAX_DEPTH = 64                # mappings/lists nested deeper than this are not configuration
ALIAS_BUDGET = 10_000         # values reached through aliases, beyond the size of the file itself

_FILE_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}
_MERGE = _CORE + "merge"


class _Resolver(yaml.resolver.Resolver):
    # YAML 1.1 timestamps become strings (a date is never a setting here); '=' is a plain string.
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_CORE + "timestamp", _CORE + "value")]
        for first, resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.items()}


_resolver = _Resolver()
_constructor = yaml.SafeLoader("")
_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A dict that also knows the line of the mapping and of each key."""

    line = None
    key_lines = None


class LineList(list):
    line = None
    item_lines = None


def load(path):
    """Parse a YAML file into LineDict/LineList/scalars. Raises ConfigError for anything that is
    not one plain YAML document: bad bytes, syntax errors, tags, alias bombs, oversized files."""
    path = Path(path)
    text = _read_text(path)
    try:
        return _Builder(path).build(_Parser(text))
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, path, text) from None
    except yaml.YAMLError as exc:  # anything else the parser refuses, without a position
        raise ConfigError(f"invalid YAML: {exc}", path, hint="fix the syntax (indentation, a missing ':' or quote)") from None


def _read_text(path):
    try:
        with open(path, "rb") as fh:
            # Refused by its size before reading (st_size), and never more read than the limit
            # (a FIFO or a device reports no size).
            too_big = os.fstat(fh.fileno()).st_size > MAX_BYTES
            data = b"" if too_big else fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("file not found", path, hint="check the path, or pass the right --inventory/--pipeline") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", path, hint="pass the file itself") from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path) from None
    if too_big or len(data) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB; not read", path,
                          hint="split it: an inventory can be several files in one directory (--inventory DIR)")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"not valid UTF-8: byte 0x{data[exc.start]:02x} at column {column}", path, line,
                          hint="save the file as UTF-8 (iconv -f LATIN1 -t UTF-8, or your editor's encoding setting)") from None
    match = _FILE_CONTROL.search(text)
    if match:
        pos = match.start()
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        raise ConfigError(f"control character {values.describe_char(match.group())} at column {column}", path, line,
                          hint="remove it: only printable text, tabs and newlines belong in a YAML file")
    return text


def _position(mark):
    return mark.line + 1 if mark else None


def _syntax_error(exc, path, text):
    """Point at where the problem starts: an unclosed bracket or quote is reported at its opening
    (PyYAML's context_mark), with the place the parser gave up (problem_mark) named after it."""
    context, problem = exc.context_mark, exc.problem_mark
    opened = exc.context and any(w in exc.context for w in ("flow mapping", "flow sequence", "quoted scalar"))
    at_end = problem is not None and problem.index >= len(text.rstrip())
    start = context if context is not None and (opened or at_end) else (problem or context)
    what = (exc.problem or str(exc)).replace("<stream end>", "the end of the file")
    if "end of stream" in what:
        what = what.replace("end of stream", "end of the file")
    if "<document start>" in what:  # text after a '...' (the end of the document)
        what = "text after the end of the YAML document ('...'); a file holds one document"
    if start is context and context is not None and problem is not None and problem.line != context.line:
        opener = text[context.index] if context.index < len(text) else ""
        opener = f"the quote {opener}" if opener and opener in "'\"" else f"'{opener}'"
        what = (f"{exc.context} ({opener} opened here is not closed): {what} at {path}:{_position(problem)}"
                if opened else f"{exc.context}: {what} at {path}:{_position(problem)}")
    hint = "fix the syntax at that line (indentation, a missing ':' or quote)"
    if problem is not None and problem.index < len(text) and text[problem.index] == "\t":
        hint = "indent with spaces: YAML does not allow tabs for indentation"
    elif opened:
        hint = "close it (the matching '}', ']' or quote), or quote a value that contains , : [ ] { } or #"
    return ConfigError(f"invalid YAML: {what}", path, _position(start), hint=hint)


def _tag_name(tag):
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Builder:
    """YAML events -> LineDict/LineList/scalars, with an explicit stack (no recursion limit)."""

    def __init__(self, file):
        self.file = file
        self.anchors = {}      # name -> (value, size in values)
        self.nodes = 0         # values written in the file
        self.via_alias = 0     # values reached through aliases

    def error(self, message, event, key=None, hint=None):
        return ConfigError(message, self.file, event.start_mark.line + 1, key, hint)

    def build(self, parser):
        stack = []             # frames: [container, pending key or _NO_KEY, key line, anchor, size, start event]
        root = _EMPTY = object()
        documents = 0
        try:
            while True:
                event = parser.get_event()
                kind = type(event)
                if kind is yaml.ScalarEvent or kind is yaml.AliasEvent:
                    value, size = self.scalar(event) if kind is yaml.ScalarEvent else self.alias(event, stack)
                    self.nodes += 1
                    if stack:
                        self.add(stack[-1], value, size, event)
                    else:
                        root = value
                    if kind is yaml.ScalarEvent and event.anchor:
                        self.anchors[event.anchor] = (value, 1)
                elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                    self.check_tag(event, "map" if kind is yaml.MappingStartEvent else "seq")
                    if stack and isinstance(stack[-1][0], dict) and stack[-1][1] is _NO_KEY:
                        raise self.error("keys must be strings, got a " + ("mapping" if kind is yaml.MappingStartEvent else "list"),
                                         event, hint="write the key as plain text")
                    if len(stack) >= MAX_DEPTH:
                        raise self.error(f"nested deeper than {MAX_DEPTH} levels", event,
                                         hint="inventories and pipelines need a few levels; check the brackets")
                    container = LineDict() if kind is yaml.MappingStartEvent else LineList()
                    container.line = event.start_mark.line + 1
                    if kind is yaml.MappingStartEvent:
                        container.key_lines = {}
                    else:
                        container.item_lines = []
                    self.nodes += 1
                    stack.append([container, _NO_KEY, None, event.anchor, 1, event])
                elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                    container, _, _, anchor, size, start = stack.pop()
                    if anchor:
                        self.anchors[anchor] = (container, size)
                    if stack:
                        self.add(stack[-1], container, size, start)
                    else:
                        root = container
                elif kind is yaml.DocumentStartEvent:
                    documents += 1
                    if documents > 1:
                        raise self.error("a second YAML document starts here; a file holds one", event,
                                         hint="remove the '---' line (and what follows), or move it into a file of its own")
                elif kind is yaml.StreamEndEvent:
                    break
        finally:
            dispose = getattr(parser, "dispose", None)
            if dispose:
                dispose()
        return LineDict() if root is _EMPTY or root is None else root

    def check_tag(self, event, kind):
        tag = event.tag
        if tag is None or tag == "!" or tag == _CORE + kind:
            return
        raise self.error(f"YAML tag {_tag_name(tag)} is not allowed", event,
                         hint="remove the tag: only plain values (strings, numbers, true/false, null, lists, mappings) are read")

    def scalar(self, event):
        tag = event.tag
        if tag is None:
            tag = _resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
        elif tag == "!":
            tag = _CORE + "str"
        elif tag not in _SCALAR_TAGS:
            raise self.error(f"YAML tag {_tag_name(tag)} is not allowed", event,
                             hint="remove the tag: only plain values (strings, numbers, true/false, null, lists, mappings) are read")
        if tag == _CORE + "str":
            return event.value, 1
        if tag == _MERGE:
            raise self.error("YAML merge keys (<<) are not supported", event,
                             hint="write the keys out (defaults: in an inventory file is inherited by every host)")
        try:
            return _constructor.yaml_constructors[tag](_constructor, yaml.ScalarNode(tag, event.value)), 1
        except (ValueError, TypeError):
            raise self.error(f"{event.value!r} is not a valid {_tag_name(tag)}", event, hint="remove the tag or fix the value") from None

    def alias(self, event, stack):
        name = event.anchor
        if name not in self.anchors:
            if any(frame[3] == name for frame in stack):
                raise self.error(f"alias *{name} is inside the value it refers to (a recursive alias)", event,
                                 hint="a value cannot contain itself; remove the alias")
            raise self.error(f"alias *{name} refers to no anchor &{name} above it", event,
                             hint=f"define &{name} before using *{name}, or quote a value that starts with *")
        value, size = self.anchors[name]
        self.via_alias += size
        if self.via_alias > ALIAS_BUDGET and self.via_alias > self.nodes:
            raise self.error(f"too much aliasing: aliases up to here stand for {self.via_alias} values, "
                             f"more than the {self.nodes} written in the file", event,
                             hint="write the values out, or alias plain lists and mappings only once or twice")
        return value, size

    def add(self, frame, value, size, event):
        container = frame[0]
        frame[4] += size
        line = event.start_mark.line + 1
        if isinstance(container, list):
            container.append(value)
            container.item_lines.append(line)
            return
        key = frame[1]
        if key is _NO_KEY:
            if not isinstance(value, str):
                raise self.error(f"keys must be strings, got {value!r}", event, hint="quote the key")
            if value in container:
                raise self.error("duplicate key", event, value, "remove one of the two entries")
            frame[1], frame[2] = value, line
            return
        container[key] = value
        container.key_lines[key] = frame[2]
        frame[1] = _NO_KEY


_NO_KEY = object()


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
            raise self.error(key, f"expected an integer, got {value!r}", hint or _example(key, types))
        if not isinstance(value, types):
            raise self.error(key, f"expected {_type_name(types)}, got {_kind(value)} {value!r}", hint or _example(key, types))
        return value

    def string(self, key, default=None, required=False, hint=None, rule=None, empty=False, multiline=False):
        """A text value. One line and not empty unless told otherwise; `rule` (from deploy/values.py)
        checks and may normalise it. Numbers are taken as their text."""
        value = self.get(key, (str, int, float), default, required, hint)
        if isinstance(value, bool):
            raise self.error(key, f"expected a string, got {value!r}", hint)
        if value is None or key not in self.data:
            return value
        return self.text(key, str(value), rule, empty, multiline, hint)

    def text(self, key, value, rule=None, empty=False, multiline=False, hint=None):
        """Apply the value rules to one text read from `key` (a string, or an item of a list)."""
        try:
            value = values.multi_line(value) if multiline else values.one_line(value)
            if rule:  # every rule refuses an empty value itself, with a hint of its own
                return rule(value)
            return value if empty else values.nonempty(value)
        except values.Invalid as exc:
            raise self.error(key, exc.message, exc.hint or hint) from None

    def integer(self, key, default=None, required=False, minimum=None, maximum=None):
        value = self.get(key, int, default, required)
        if value is not None and minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}", f"a whole number >= {minimum}")
        if value is not None and maximum is not None and value > maximum:
            raise self.error(key, f"out of range: {value} (at most {maximum})", f"a whole number {minimum or 0}-{maximum}")
        return value

    def boolean(self, key, default=None):
        return self.get(key, bool, default)

    def section(self, key, required=False, hint=None):
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise ConfigError("missing required key", self.file, self.line, self.key_path(key),
                                  hint or f"add '{key}:' to this section")
            return Section(LineDict(), self.file, self.key_path(key), self.line_of(key))
        value = self.data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {_kind(value)}", _example(key, dict))
        return Section(value, self.file, self.key_path(key), self.line_of(key))

    def string_list(self, key, default=None, required=False, multiline=False):
        value = self.get(key, (list, str), default, required)
        if value is None:
            return None
        if key not in self.data:
            return list(value)
        items = [value] if isinstance(value, str) else value
        for item in items:
            if not isinstance(item, (str, int, float)) or isinstance(item, bool):
                raise self.error(key, f"expected a list of strings, found {_kind(item)} {item!r}",
                                 f"write {key}: [a, b] (quote items YAML would read as true/false or null)")
        return [self.text(key, str(item), multiline=multiline) for item in items]

    def done(self, allowed_hint=None):
        unknown = [key for key in self.data if key not in self.seen]
        if unknown:
            key = unknown[0]
            known = ", ".join(sorted(self.seen))
            raise self.error(key, "unknown key", allowed_hint or f"known keys here: {known}")


_EXAMPLES = {int: "a whole number, e.g. {key}: 10", float: "a number, e.g. {key}: 0.5", bool: "{key}: true or {key}: false",
             list: "a list, e.g. {key}: [a, b]", dict: "a mapping, e.g. {key}: {{name: value}}",
             str: "text, e.g. {key}: some-value (quote it if YAML would read it as a number, true/false or null)"}


def _example(key, types):
    first = types[0] if isinstance(types, tuple) else types
    return "write " + _EXAMPLES.get(first, "{key}: VALUE").format(key=key)


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
