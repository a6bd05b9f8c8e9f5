"""Inventory: hosts/*.yml -> typed Host objects.

Every file may have `defaults` (inherited by its hosts, a host overrides key by key, `fpm`
merged one level deep), `hosts`, `groups` and `example`. Host and group names are unique across files.
A file with `example: true` (hosts/example.yml) can be planned but never connected to:
check_controller_files() refuses its hosts, so nothing that connects ever reaches them.
Values are checked by the rules of deploy/values.py; the files a connection needs on the
controller (key, known_hosts) are checked by check_controller_files() before connecting.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import envvars, values, yamlfile
from .errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HOST_KEY_POLICIES = ("strict", "accept-new")

HOST_KEYS = {"address", "port", "user", "key", "known_hosts", "host_key_policy", "deploy_path",
             "web_user", "fpm", "health_url", "php", "connect_timeout", "command_timeout", "stall_timeout", "env",
             "workers", "primary"}
FPM_KEYS = {"socket", "reload", "file_cache"}
WORKER_KEYS = {"restart", "processes", "timeout"}


@dataclass(frozen=True)
class Fpm:
    socket: str
    reload: str | None = None      # shell command from the inventory (trusted, run as written)
    file_cache: str | None = None  # opcache.file_cache dir, cleared on reset when set


@dataclass(frozen=True)
class Workers:
    """The app's long-running PHP processes on a host (queue workers, Horizon, the scheduler)."""

    restart: str | None = None     # shell command (trusted); None: `php artisan queue:restart` in the live release
    processes: str | None = None   # ERE over command lines; None: artisan queue:work|horizon|schedule:work
    timeout: int = 30              # seconds to prove every such process runs the live release


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int = 22
    user: str = "deploy"
    key: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    host_key_policy: str = "strict"
    deploy_path: str = "/var/www/app"
    web_user: str = "www-data"
    fpm: Fpm = field(default_factory=lambda: Fpm(socket="/run/php/php-fpm.sock"))
    health_url: str | None = None
    php: str = "php"
    connect_timeout: int = 10
    command_timeout: int = 600
    stall_timeout: int = 15
    workers: Workers = field(default_factory=Workers)
    primary: bool = False          # runs the fleet's once-per-deploy steps (migrate)
    example: str | None = None     # "file:line" of the file's `example: true`: planned, never connected to
    env: dict = field(default_factory=dict, hash=False, compare=False)  # for run steps; see envvars
    source: str = ""               # "file:line", for messages
    # key -> (file, line, key path) of the inventory entry a value came from, for messages
    # about it after parsing (check_controller_files)
    origins: dict = field(default_factory=dict, hash=False, compare=False, repr=False)

    @property
    def is_root(self):
        return self.user == "root"


@dataclass
class Inventory:
    hosts: dict            # name -> Host
    groups: dict           # name -> [host names]
    files: list

    def select(self, spec):
        """Resolve `--host` (a host, a group, or a comma list of either) to Hosts, inventory order kept."""
        if not spec or not str(spec).strip():
            raise ConfigError("no host given (from --host)",
                              hint="pass --host NAME (a host, a group, or a comma-separated list)")
        wanted = {}  # an ordered set
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if part in self.hosts:
                names = [part]
            elif part in self.groups:
                names = self.groups[part]
            else:
                known, groups = _some(self.hosts), _some(self.groups)
                raise ConfigError(f"unknown host or group '{part}' (from --host)",
                                  ", ".join(str(f) for f in self.files),
                                  hint=f"hosts: {known}; groups: {groups}")
            for name in names:
                wanted.setdefault(name)
        if not wanted:
            raise ConfigError(f"no host given (from --host {spec!r})", hint="pass --host NAME (a host, a group, or a comma-separated list)")
        return [self.hosts[name] for name in wanted]


def _some(names, limit=20):
    names = sorted(names)
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return (", ".join(names[:limit]) + more) or "(none)"


def load(paths):
    """Load one or more inventory files (a file, or every *.yml of a directory)."""
    files = []
    for path in ([paths] if isinstance(paths, (str, Path)) else paths):
        path = Path(path)
        if not path.exists():
            raise ConfigError("no inventory here", path,
                              hint="create hosts/NAME.yml (docs/inventory.md), pass --inventory FILE, "
                                   "or run `fab lab.up` for local sandbox hosts")
        if path.is_dir():
            files.extend(sorted(path.glob("*.yml")) + sorted(path.glob("*.yaml")))
        else:
            files.append(path)
    if not files:
        raise ConfigError("no inventory files found", paths, hint="create hosts/NAME.yml (see docs/inventory.md) or pass --inventory FILE")
    hosts, groups, group_files = {}, {}, {}
    for file in files:
        file_hosts, file_groups = _load_file(file)
        for name, host in file_hosts.items():
            if name in hosts or name in groups:
                raise ConfigError(f"host '{name}' is defined twice (also at {(hosts.get(name) or Host(name, '')).source or 'a group'})",
                                  file, int(host.source.rsplit(':', 1)[1]), f"hosts.{name}",
                                  "host and group names must be unique across inventory files")
            hosts[name] = host
        for name, (members, line) in file_groups.items():
            if name in groups or name in hosts:
                raise ConfigError(f"group '{name}' clashes with another host or group", file, line, f"groups.{name}",
                                  "host and group names must be unique across inventory files")
            groups[name] = members
            group_files[name] = (file, line)
    for name, members in groups.items():
        file, line = group_files[name]
        for member in members:
            if member not in hosts and member not in groups:
                raise ConfigError(f"unknown host '{member}' in group", file, line, f"groups.{name}",
                                  "define it under hosts: or remove it from the group")
    # Groups may name other groups: flatten once, in order. A group that reaches itself is an error.
    flat = {}
    for name in groups:
        _flatten(name, groups, [], group_files, flat)
    return Inventory(hosts=hosts, groups=flat, files=files)


def _flatten(name, groups, path, group_files, flat):
    """Members of group `name`, nested groups expanded (each group once: `flat` keeps results)."""
    if name in flat:
        return flat[name]
    if name in path:
        file, line = group_files[name]
        cycle = " -> ".join(path[path.index(name):] + [name])
        raise ConfigError(f"group '{name}' contains itself ({cycle})", file, line, f"groups.{name}",
                          "a group lists hosts or other groups, never itself (directly or through another group)")
    out, seen = [], set()
    for member in groups[name]:
        for host in (_flatten(member, groups, path + [name], group_files, flat) if member in groups else [member]):
            if host not in seen:
                seen.add(host)
                out.append(host)
    flat[name] = out
    return out


def _load_file(file):
    data = yamlfile.load(file)
    top = yamlfile.Section(data, file)
    defaults = top.section("defaults")
    hosts_section = top.section("hosts", required=True, hint="list the hosts, e.g. hosts: {prod1: {address: 10.0.0.11}}")
    groups_section = top.section("groups")
    example = f"{file}:{top.line_of('example')}" if top.boolean("example", False) else None
    top.done()
    _check_keys(defaults, HOST_KEYS - {"address"})
    # The file's defaults are checked once, then each host's own settings on top of them.
    base = _settings(defaults)
    hosts = {}
    for name in hosts_section.data:
        _check_name(hosts_section, name, "host")
        raw = hosts_section.data[name]
        if raw is None:
            raw = yamlfile.LineDict()
        if not isinstance(raw, dict):
            raise hosts_section.error(name, "expected a mapping of host settings, e.g. {address: 10.0.0.11}",
                                      "e.g. prod1: {address: 10.0.0.11}")
        hosts_section.seen.add(name)
        line = hosts_section.line_of(name)
        host_section = yamlfile.Section(raw, file, f"hosts.{name}", line)
        _check_keys(host_section, HOST_KEYS)
        hosts[name] = _build_host(name, host_section, base, f"{file}:{line}", example)
    groups = {}
    for name in groups_section.data:
        _check_name(groups_section, name, "group")
        members = groups_section.string_list(name)
        groups[name] = (members or [], groups_section.line_of(name))
    return hosts, groups


def _check_name(section, name, what):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise section.error(name, f"invalid {what} name", "use letters, digits, '.', '_' and '-'")


def _check_keys(section, allowed):
    for key in section.data:
        if key not in allowed:
            raise section.error(key, "unknown key", "known keys: " + ", ".join(sorted(allowed)))


def _pattern(text):
    """A process pattern (grep -E on the host): refused when it cannot be a regular expression."""
    try:
        re.compile(text)
    except re.error as exc:
        raise values.Invalid(f"not a regular expression: {exc}", "e.g. 'artisan (queue:work|horizon)'") from None
    return text


def _policy(text):
    if text not in HOST_KEY_POLICIES:
        raise values.Invalid(f"unknown policy '{text}'", "use 'strict' (default) or 'accept-new'")
    return text


# Host keys read the same way in `defaults` and on a host: (Section getter, its arguments).
# Host's dataclass defaults are the tool's defaults for what neither sets.
SETTINGS = {
    "port": ("integer", {"minimum": 1, "maximum": 65535}),
    "user": ("string", {"rule": values.user_name}),
    "key": ("string", {}),
    "known_hosts": ("string", {}),
    "host_key_policy": ("string", {"rule": _policy}),
    "deploy_path": ("string", {"rule": values.host_dir}),
    "web_user": ("string", {"rule": values.user_name}),
    "health_url": ("string", {"rule": values.http_url}),
    "php": ("string", {"rule": values.command_name}),
    "connect_timeout": ("integer", {"minimum": 1}),
    "command_timeout": ("integer", {"minimum": 1}),
    "stall_timeout": ("integer", {"minimum": 1}),
}
ORIGINS = ("key", "known_hosts", "host_key_policy")  # named by check_controller_files


def _settings(section):
    """The settings one section (a host, or a file's defaults) gives itself, checked."""
    out = {key: getattr(section, getter)(key, **kw) for key, (getter, kw) in SETTINGS.items() if section.has(key)}
    out = {key: value for key, value in out.items() if value is not None}
    fpm = {}
    if section.has("fpm"):
        sub = section.section("fpm")
        _check_keys(sub, FPM_KEYS)
        fpm = {key: sub.string(key, **FPM_RULES[key]) for key in FPM_KEYS if sub.has(key)}
    else:
        section.seen.add("fpm")
    out["fpm"] = {key: value for key, value in fpm.items() if value is not None}
    workers = {}
    if section.has("workers"):
        sub = section.section("workers")
        _check_keys(sub, WORKER_KEYS)
        workers = {"restart": sub.string("restart", multiline=True), "processes": sub.string("processes", rule=_pattern),
                   "timeout": sub.integer("timeout", minimum=1)}
    else:
        section.seen.add("workers")
    out["workers"] = {key: value for key, value in workers.items() if value is not None}
    if section.has("primary"):
        if section.key_path("primary").startswith("defaults"):
            raise section.error("primary", "primary marks one host", "set primary: true on the one host that runs migrations")
        out["primary"] = section.boolean("primary", False)
    out["env"] = envvars.parse(section.section("env"))
    out["origins"] = {key: (section.file, section.line_of(key), section.key_path(key))
                      for key in ORIGINS if key in out}
    return out


def _build_host(name, host, base, source, example=None):
    """A host's own value wins over the file's defaults, which win over the tool's default;
    fpm and env merge one level deep."""
    address = host.string("address", required=True, hint="the IP address or DNS name to connect to",
                          rule=values.address)
    own = _settings(host)
    fpm = {**base["fpm"], **own["fpm"]}
    if "socket" not in fpm:
        raise host.error(None, "missing fpm.socket", "set fpm: {socket: /run/php/php8.x-fpm.sock} in defaults or on the host")
    merged = {**base, **own, "fpm": Fpm(**fpm), "env": {**base["env"], **own["env"]},
              "workers": Workers(**{**base["workers"], **own["workers"]}),
              "origins": {**base["origins"], **own["origins"]}}
    return Host(name=name, address=address, source=source, example=example, **merged)


FPM_RULES = {"socket": {"rule": values.fpm_socket},
             "reload": {"multiline": True},
             "file_cache": {"rule": values.host_dir}}


# ---------------------------------------------------------------------------- the controller's files

def check_controller_files(hosts):
    """Before connecting: no host comes from an example file; every key file exists and is a
    readable file; every known_hosts is a file, and exists unless host_key_policy is accept-new
    (which creates it). Raises ConfigError naming the inventory entry. Every command that
    connects calls it first; `fab plan` does not (it never connects)."""
    refuse_examples(hosts)
    for host in hosts:
        if host.key:
            path = os.path.expanduser(host.key)
            problem = _file_problem(path)
            if problem:
                raise _origin_error(host, "key", f"key file {path} {problem} (host {host.name})",
                                    f"fix the path, or create the key (ssh-keygen -t ed25519 -f {path}) and add "
                                    f"{path}.pub to {host.user}'s ~/.ssh/authorized_keys on the host")
        path = os.path.expanduser(host.known_hosts)
        known = f"[{host.address}]:{host.port}" if host.port != 22 else host.address
        if os.path.isdir(path):
            raise _origin_error(host, "known_hosts", f"known_hosts {path} is a directory (host {host.name})",
                                "point known_hosts at a file (OpenSSH's format), e.g. ~/.ssh/known_hosts")
        if not os.path.exists(path):
            if host.host_key_policy == "accept-new":
                parent = _existing_parent(path)
                if not os.path.isdir(parent):
                    raise _origin_error(host, "known_hosts", f"known_hosts {path} cannot be created: {parent} is not a directory",
                                        "point known_hosts at a file in a directory")
                continue
            raise _origin_error(host, "known_hosts",
                                f"known_hosts {path} does not exist, so the key of host {host.name} ({known}) cannot be checked "
                                "(host_key_policy: strict)",
                                f"add the host's key: ssh-keyscan -p {host.port} {host.address} >> {path} (compare "
                                f"`ssh-keygen -lf {path}` with the fingerprint on the host's console), or set "
                                "host_key_policy: accept-new where the first connection is trusted")
        elif not os.access(path, os.R_OK):
            raise _origin_error(host, "known_hosts", f"known_hosts {path} cannot be read by this user (host {host.name})",
                                "fix its permissions, or point known_hosts at a readable file")


def refuse_examples(hosts):
    """An example inventory (`example: true`) is there to be read and planned: a command that
    would connect to one of its hosts stops here, before any connection."""
    for host in hosts:
        if host.example:
            file, line = host.example.rsplit(":", 1)
            raise ConfigError(f"host '{host.name}' is an example (this file says example: true): "
                              "nothing connects to it; fab plan shows what a deploy would run",
                              file, int(line), "example",
                              "copy the file to hosts/NAME.yml, remove its `example: true` line, rename the hosts "
                              "and set your own addresses (hosts/README.md)")


def _file_problem(path):
    if not os.path.exists(path):
        return "does not exist"
    if os.path.isdir(path):
        return "is a directory, not a key file"
    if not os.access(path, os.R_OK):
        return "cannot be read by this user"
    return None


def _existing_parent(path):
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return parent


def _origin_error(host, key, message, hint):
    file, line, key_path = host.origins.get(key) or (*host.source.rsplit(":", 1), f"hosts.{host.name}")
    if key not in host.origins:
        message += f" (the default {key}; it is not set in the inventory)"
    return ConfigError(message, file, int(line) if str(line).isdigit() else None, key_path, hint)
