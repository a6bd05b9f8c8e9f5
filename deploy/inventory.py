"""Inventory: hosts/*.yml -> typed Host objects.

Every file may have `defaults` (inherited by its hosts, a host overrides key by key, `fpm`
merged one level deep), `hosts` and `groups`. Host and group names are unique across files.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import envvars, yamlfile
from .errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
HOST_KEY_POLICIES = ("strict", "accept-new")

HOST_KEYS = {"address", "port", "user", "key", "known_hosts", "host_key_policy", "deploy_path",
             "web_user", "fpm", "health_url", "php", "connect_timeout", "command_timeout", "stall_timeout", "env"}
FPM_KEYS = {"socket", "reload", "file_cache"}


@dataclass(frozen=True)
class Fpm:
    socket: str
    reload: str | None = None      # shell command from the inventory (trusted, run as written)
    file_cache: str | None = None  # opcache.file_cache dir, cleared on reset when set


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
    env: dict = field(default_factory=dict, hash=False, compare=False)  # for run steps; see envvars
    source: str = ""               # "file:line", for messages

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
            raise ConfigError("no host given", hint="pass --host NAME (a host, a group, or a comma-separated list)")
        wanted = []
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if part in self.hosts:
                names = [part]
            elif part in self.groups:
                names = self.groups[part]
            else:
                known = ", ".join(sorted(self.hosts)) or "(none)"
                groups = ", ".join(sorted(self.groups)) or "(none)"
                raise ConfigError(f"unknown host or group '{part}' (from --host)",
                                  ", ".join(str(f) for f in self.files),
                                  hint=f"hosts: {known}; groups: {groups}")
            for name in names:
                if name not in wanted:
                    wanted.append(name)
        if not wanted:
            raise ConfigError("no host given", hint="pass --host NAME")
        return [self.hosts[name] for name in wanted]


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
    # Groups may name other groups: flatten once, in order.
    flat = {name: _flatten(name, groups, set()) for name in groups}
    return Inventory(hosts=hosts, groups=flat, files=files)


def _flatten(name, groups, seen):
    if name in seen:
        return []
    seen.add(name)
    out = []
    for member in groups[name]:
        for host in (_flatten(member, groups, seen) if member in groups else [member]):
            if host not in out:
                out.append(host)
    return out


def _load_file(file):
    data = yamlfile.load(file)
    top = yamlfile.Section(data, file)
    defaults = top.section("defaults")
    hosts_section = top.section("hosts", required=True)
    groups_section = top.section("groups")
    top.done()
    _check_keys(defaults, HOST_KEYS - {"address"})
    hosts = {}
    for name in hosts_section.data:
        _check_name(hosts_section, name, "host")
        raw = hosts_section.data[name]
        if raw is None:
            raw = yamlfile.LineDict()
        if not isinstance(raw, dict):
            raise hosts_section.error(name, "expected a mapping of host settings, e.g. {address: 10.0.0.11}")
        hosts_section.seen.add(name)
        host_section = yamlfile.Section(raw, file, f"hosts.{name}", hosts_section.line_of(name))
        _check_keys(host_section, HOST_KEYS)
        hosts[name] = _build_host(name, host_section, defaults, file, hosts_section.line_of(name))
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


def _pick(key, host, defaults, getter, default=None, **kw):
    """A host's own value wins over the file's defaults, which win over the tool's default."""
    if host.has(key):
        return getattr(host, getter)(key, **kw)
    if defaults.has(key):
        return getattr(defaults, getter)(key, **kw)
    return default


def _build_host(name, host, defaults, file, line):
    address = host.string("address", required=True, hint="the IP address or DNS name to connect to")
    port = _pick("port", host, defaults, "integer", 22, minimum=1)
    if port > 65535:
        raise (host if host.has("port") else defaults).error("port", f"port out of range: {port}")
    policy = _pick("host_key_policy", host, defaults, "string", "strict")
    if policy not in HOST_KEY_POLICIES:
        src = host if host.has("host_key_policy") else defaults
        raise src.error("host_key_policy", f"unknown policy '{policy}'", "use 'strict' (default) or 'accept-new'")
    deploy_path = _pick("deploy_path", host, defaults, "string", "/var/www/app")
    if not deploy_path.startswith("/") or deploy_path.rstrip("/") == "":
        src = host if host.has("deploy_path") else defaults
        raise src.error("deploy_path", f"must be an absolute path other than /, got {deploy_path!r}")
    health_url = _pick("health_url", host, defaults, "string")
    if health_url is not None and not re.match(r"^https?://", health_url):
        src = host if host.has("health_url") else defaults
        raise src.error("health_url", f"must start with http:// or https://, got {health_url!r}")
    fpm = _fpm(host, defaults)
    return Host(
        name=name,
        address=address,
        port=port,
        user=_pick("user", host, defaults, "string", "deploy"),
        key=_pick("key", host, defaults, "string"),
        known_hosts=_pick("known_hosts", host, defaults, "string", "~/.ssh/known_hosts"),
        host_key_policy=policy,
        deploy_path=deploy_path.rstrip("/"),
        web_user=_pick("web_user", host, defaults, "string", "www-data"),
        fpm=fpm,
        health_url=health_url,
        php=_pick("php", host, defaults, "string", "php"),
        connect_timeout=_pick("connect_timeout", host, defaults, "integer", 10, minimum=1),
        command_timeout=_pick("command_timeout", host, defaults, "integer", 600, minimum=1),
        stall_timeout=_pick("stall_timeout", host, defaults, "integer", 15, minimum=1),
        env={**envvars.parse(defaults.section("env")), **envvars.parse(host.section("env"))},
        source=f"{file}:{line}",
    )


def _fpm(host, defaults):
    merged = {}
    for section in (defaults, host):
        if section.has("fpm"):
            sub = section.section("fpm")
            _check_keys(sub, FPM_KEYS)
            for key in FPM_KEYS:
                if sub.has(key):
                    merged[key] = sub.string(key)
        else:
            section.seen.add("fpm")
    if "socket" not in merged:
        raise host.error(None, "missing fpm.socket", "set fpm: {socket: /run/php/php8.x-fpm.sock} in defaults or on the host")
    return Fpm(**merged)
