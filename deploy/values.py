"""The rules for single values, shared by the YAML files and the command-line flags.

Each rule takes the text as given and returns the value to use (normalised where that matters,
like a deploy path) or raises Invalid with what is wrong and what to write instead. Callers add
the place: yamlfile.Section names file, line and key; deploy/cliargs.py names the flag.
"""

import ipaddress
import posixpath
import re
from urllib.parse import urlsplit


class Invalid(ValueError):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint


# C0 controls except tab and newline, DEL, C1 controls, and the invisible bidirectional
# overrides/isolates that make text read differently from what it is ("Trojan source").
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ONE_LINE_CONTROL = re.compile(CONTROL.pattern[:-1] + r"\t\n\r]")


def describe_char(ch):
    names = {"\x00": "NUL", "\t": "a tab", "\n": "a newline", "\r": "a carriage return", "\x1b": "ESC",
             "\x7f": "DEL"}
    return names.get(ch, f"U+{ord(ch):04X}")


def one_line(text):
    """No control characters at all (a path, a name, a URL): they are never meant."""
    match = ONE_LINE_CONTROL.search(text)
    if match:
        raise Invalid(f"contains a control character ({describe_char(match.group())}) in {text!r}",
                      "remove it (a YAML escape like \\n or \\t in a double-quoted string makes one)")
    return text


def multi_line(text):
    """Commands may span lines (a `run: |` block); other control characters are still refused."""
    match = CONTROL.search(text)
    if match:
        raise Invalid(f"contains a control character ({describe_char(match.group())})",
                      "remove it (a YAML escape in a double-quoted string makes one)")
    return text


def nonempty(text, hint="give a value, or leave the key out to get the default"):
    if not text.strip():
        raise Invalid("must not be empty", hint)
    return text


# The directories the OS owns: deploying into them, or anything inside them, is always a mistake.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
                "/sys", "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libexec", "/usr/sbin")
# Directories that hold other things: an app lives in a directory of its own below them, never in
# them (a releases/ or an in-place rsync --delete there would touch everything else they hold).
SHARED_ROOTS = ("/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/usr", "/usr/local", "/usr/share",
                "/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib", "/var/local", "/var/log", "/var/mail",
                "/var/opt", "/var/spool", "/var/tmp")


def absolute_path(text):
    """A path on a host that must not depend on the login directory."""
    one_line(text)
    nonempty(text, "give an absolute path, e.g. /var/www/app")
    if not text.startswith("/"):
        raise Invalid(f"must be an absolute path, got {text!r}", "start it with /, e.g. /var/www/app")
    return text


def host_dir(text):
    """An absolute directory on a host that the tool creates and deletes things in (deploy_path,
    fpm.file_cache). Normalised (posixpath.normpath, so `..` is resolved here, and the commands use
    exactly the path that was checked); refused when relative, `/`, or a system directory."""
    absolute_path(text)
    norm = posixpath.normpath(text)
    if norm.startswith("//"):  # normpath keeps a leading "//" (POSIX allows it to mean something else)
        norm = "/" + norm.lstrip("/")
    resolved = f" ({text!r} resolves to {norm})" if norm != (text.rstrip("/") or "/") else ""
    if norm in SHARED_ROOTS:
        raise Invalid(f"must not be {norm}{resolved}: it holds more than this app",
                      f"use a directory of its own, e.g. {'/var/www' if norm == '/' else norm.rstrip('/')}/app")
    for tree in SYSTEM_TREES:
        if norm == tree or norm.startswith(tree + "/"):
            raise Invalid(f"must not be inside the system directory {tree}{resolved}",
                          "use a directory of its own, e.g. /var/www/app or /srv/app")
    return norm


# POSIX portable user names (letters, digits, '.', '_', '-', not starting with '-'), at most 32
# characters as on Linux; a leading digit is refused as useradd does.
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


def user_name(text):
    one_line(text)
    nonempty(text, "a user name, e.g. deploy")
    if not USER_RE.match(text):
        raise Invalid(f"is not a valid user name: {text!r}",
                      "letters, digits, '.', '_' and '-', starting with a letter or '_', at most 32 characters")
    return text


HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOSTNAME_RE = re.compile(rf"^(?=.{{1,253}}\.?$){HOST_LABEL}(?:\.{HOST_LABEL})*\.?$")


def address(text):
    """An IP address (v4, v6) or a DNS name: what the TCP connection goes to."""
    one_line(text)
    nonempty(text, "the IP address or DNS name to connect to")
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not HOSTNAME_RE.match(text):
        raise Invalid(f"is not an IP address or DNS name: {text!r}",
                      "e.g. 10.0.0.11, 2001:db8::11 or web1.example.com (no user@, port or scheme: use user: and port:)")
    return text


def http_url(text):
    """An http:// or https:// URL with a host, as curl on the host fetches it."""
    one_line(text)
    nonempty(text, "e.g. http://127.0.0.1/version")
    if not re.match(r"^https?://", text):
        raise Invalid(f"must start with http:// or https://, got {text!r}", "e.g. http://127.0.0.1/version")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise Invalid(f"is not a valid URL: {text!r} ({exc})", "e.g. http://127.0.0.1:8080/version") from None
    if not parts.hostname or any(c.isspace() for c in text):
        raise Invalid(f"is not a valid URL (no host, or a space in it): {text!r}", "e.g. http://127.0.0.1/version")
    return text


def fpm_socket(text):
    """The pool's listen address: a unix socket path or tcp://HOST:PORT."""
    one_line(text)
    nonempty(text, "the pool's listen address, e.g. /run/php/php8.2-fpm.sock")
    if text.startswith("/"):
        return text
    match = re.match(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[^:/\s]+):(\d{1,5})$", text)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise Invalid(f"must be a unix socket path (/run/php/php8.2-fpm.sock) or tcp://HOST:PORT, got {text!r}",
                      "the pool's listen = value, e.g. /run/php/php8.2-fpm.sock or tcp://127.0.0.1:9000")
    return text


def command_name(text):
    """One command name or path (quoted as one word): no spaces, options or shell syntax."""
    one_line(text)
    nonempty(text, "e.g. php8.2 or /usr/bin/php8.2")
    if not re.fullmatch(r"[A-Za-z0-9._+/][A-Za-z0-9._+/-]*", text):
        raise Invalid(f"must be one command name or path, got {text!r}",
                      "e.g. php8.2 or /usr/bin/php8.2 (it is quoted as one word, so options cannot go here)")
    return text
