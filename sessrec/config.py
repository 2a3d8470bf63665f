"""The daemon's configuration, /etc/sessrec/sessrec.toml: its one schema.

Key names are a contract (other tools write them): they are the names of
SCHEMA's entries, dotted for tables ("users.include"). Every problem, an
unknown key, a wrong type or a bad value, is a ConfigError naming the file,
the line and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sessrec.errors import SessrecError

DEFAULT_PATH: Final = "/etc/sessrec/sessrec.toml"
EVENT_KINDS: Final = ("command", "disk", "network")
ENROLMENTS: Final = ("pam", "logind")
PAGE: Final = 4096


class ConfigError(SessrecError):
    """A configuration file that cannot be used; the message names where."""

    exit_status = 2


@dataclass(frozen=True)
class Config:
    enabled: bool = True
    output_dir: str = "/var/lib/sessrec/sessions"
    control_socket: str = "/run/sessrec/control.sock"
    events: tuple[str, ...] = EVENT_KINDS
    # bytes; each session's own ring: 1,000 sessions lock 1,000 of them
    # (docs/PERFORMANCE.md)
    ring_size: int = 1 << 20
    cgroup_root: str = "sessrec"
    # Compare each open's path buffer at the call's start and end, and flag a
    # rewrite (the TOCTOU race): costs every open on the host (docs/SECURITY.md)
    race_check: bool = False
    linger: float = 600.0  # seconds a session waits for its processes after its end
    enrolment: str = "pam"
    # systemd-logind's user.slice, relative to the cgroup2 mount: the scopes
    # the logind enrolment adopts, and PAM logins follow (docs/NODE.md)
    logind_root: str = "user.slice"
    users_include: tuple[str | int, ...] = ()  # empty: everyone
    users_exclude: tuple[str | int, ...] = ()
    retention_max_age: float | None = None  # seconds
    retention_max_total_size: int | None = None  # bytes
    source: str | None = field(default=None, compare=False)  # the file read, if any

    def records_user(self, name: str | None, uid: int | None) -> bool:
        """Whether a session of this user is recorded: exclude wins, and an
        empty include means everyone. "%group" entries match the members of
        a group (primary or supplementary, from the system's databases)."""
        who: set[str | int] = {x for x in (name, uid) if x is not None}
        if any(isinstance(x, str) and x.startswith("%")
               for x in (*self.users_include, *self.users_exclude)):
            who |= _groups_of(name, uid)
        if who & set(self.users_exclude):
            return False
        return not self.users_include or bool(who & set(self.users_include))


def _groups_of(name: str | None, uid: int | None) -> set[str | int]:
    """"%name" of each group the user is in; nothing for an unknown user."""
    import grp
    import pwd
    try:
        if name is not None:
            pw = pwd.getpwnam(name)
        elif uid is not None:
            pw = pwd.getpwuid(uid)
        else:
            return set()
    except KeyError:
        return set()
    out: set[str | int] = set()
    for gid in os.getgrouplist(pw.pw_name, pw.pw_gid):
        try:
            out.add("%" + grp.getgrgid(gid).gr_name)
        except KeyError:
            pass
    return out


# --- value parsers: each takes the TOML value, returns the Python one or
# raises ValueError with what is wrong --------------------------------------

_UNITS: Final = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]iB|B)?\s*$")
_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_size(v: object) -> int:
    """'4MiB', '20GiB', '512KiB', '100B', or an integer of bytes."""
    if type(v) is int:
        n = v
    elif isinstance(v, str):
        m = _SIZE.match(v)
        if not m:
            raise ValueError(f"{v!r} is not a size (use a unit: \"4MiB\", \"20GiB\")")
        n = int(m.group(1)) * _UNITS[m.group(2) or ""]
    else:
        raise ValueError(f"should be a size string like \"4MiB\", not {_tname(v)}")
    if n <= 0:
        raise ValueError("should be more than 0")
    return n


def parse_duration(v: object) -> float:
    """'90d', '10m', '30s', '2h', '1w', or a number of seconds."""
    if type(v) in (int, float):
        n = float(v)  # type: ignore[arg-type]
    elif isinstance(v, str):
        m = _DURATION.match(v)
        if not m:
            raise ValueError(f"{v!r} is not a duration (use a unit: \"30s\", \"10m\", \"90d\")")
        n = float(m.group(1)) * _SECONDS[m.group(2)]
    else:
        raise ValueError(f"should be a duration like \"10m\", not {_tname(v)}")
    if n < 0:
        raise ValueError("should not be negative")
    return n


def _ring_size(v: object) -> int:
    n = parse_size(v)
    if n % PAGE or n & (n - 1):
        raise ValueError(f"{n} bytes is not a power of two of 4 KiB pages (e.g. \"32MiB\")")
    return n


def _bool(v: object) -> bool:
    if type(v) is not bool:
        raise ValueError(f"should be true or false, not {_tname(v)}")
    return v


def _abs_path(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError(f"should be a string, not {_tname(v)}")
    if not v.startswith("/") or "\0" in v:
        raise ValueError(f"{v!r} is not an absolute path")
    return v


def _cgroup_name(v: object) -> str:
    if not isinstance(v, str):
        raise ValueError(f"should be a string, not {_tname(v)}")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v) or v in (".", ".."):
        raise ValueError(f"{v!r} is not a cgroup name (letters, digits, '_', '.', '-')")
    return v


def _cgroup_path(v: object) -> str:
    """A cgroup path relative to the cgroup2 mount: names joined by '/'."""
    if not isinstance(v, str):
        raise ValueError(f"should be a string, not {_tname(v)}")
    parts = v.split("/")
    if not v or len(parts) > 16:
        raise ValueError(f"{v!r} is not a cgroup path relative to the cgroup2 mount "
                         "(e.g. \"user.slice\")")
    for p in parts:
        _cgroup_name(p)
    return v


def _events(v: object) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"should be a list of {', '.join(EVENT_KINDS)}")
    bad = [x for x in v if x not in EVENT_KINDS]
    if bad:
        raise ValueError(f"unknown kind {bad[0]!r} (kinds: {', '.join(EVENT_KINDS)})")
    if "command" not in v:
        raise ValueError("must include \"command\" (processes are the session's skeleton)")
    return tuple(k for k in EVENT_KINDS if k in v)


def _enrolment(v: object) -> str:
    if v not in ENROLMENTS:
        raise ValueError(f"should be one of {', '.join(map(repr, ENROLMENTS))}, not {v!r}")
    return str(v)


def _users(v: object) -> tuple[str | int, ...]:
    if not isinstance(v, list):
        raise ValueError(f"should be a list of user names or uids, not {_tname(v)}")
    out: list[str | int] = []
    for x in v:
        if type(x) is int and 0 <= x < 2**32 - 1:
            out.append(x)
        elif isinstance(x, str) and x and not any(c.isspace() or ord(c) < 32 for c in x):
            out.append(x)
        else:
            raise ValueError(f"{x!r} is not a user name, uid or %group")
    return tuple(out)


def _tname(v: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(v), type(v).__name__)


# The schema: TOML key (dotted within tables) -> (Config attribute, parser).
SCHEMA: Final[Mapping[str, tuple[str, Callable[[object], Any]]]] = {
    "enabled": ("enabled", _bool),
    "output_dir": ("output_dir", _abs_path),
    "control_socket": ("control_socket", _abs_path),
    "events": ("events", _events),
    "ring_size": ("ring_size", _ring_size),
    "cgroup_root": ("cgroup_root", _cgroup_name),
    "race_check": ("race_check", _bool),
    "linger": ("linger", parse_duration),
    "enrolment": ("enrolment", _enrolment),
    "logind_root": ("logind_root", _cgroup_path),
    "users.include": ("users_include", _users),
    "users.exclude": ("users_exclude", _users),
    "retention.max_age": ("retention_max_age", parse_duration),
    "retention.max_total_size": ("retention_max_total_size", parse_size),
}
TABLES: Final = frozenset(k.partition(".")[0] for k in SCHEMA if "." in k)


def load(path: str | None = None) -> Config:
    """The configuration in path (DEFAULT_PATH if None: defaults when that
    file does not exist)."""
    explicit = path is not None
    p = path or DEFAULT_PATH
    try:
        text = Path(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{p}: no such file") from None
        return Config()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    return parse(text, p)


def parse(text: str, path: str) -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    values: dict[str, Any] = {}
    for key, value in _flatten(doc):
        where = f"{path}:{_line_of(text, key)}"
        if key not in SCHEMA:
            table = key.partition(".")[0]
            hint = "" if "." in key and table in TABLES else \
                f" (keys: {', '.join(k for k in SCHEMA if '.' not in k)}, [" + "], [".join(
                    sorted(TABLES)) + "])"
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")
        attr, parser = SCHEMA[key]
        try:
            values[attr] = parser(value)
        except ValueError as e:
            raise ConfigError(f"{where}: key '{key}': {e}") from None
    return Config(**values, source=path)


def _flatten(doc: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in doc.items():
        if k in TABLES and isinstance(v, dict):
            out += [(f"{k}.{sk}", sv) for sk, sv in v.items()]
        else:
            out.append((k, v))
    return out


def _line_of(text: str, key: str) -> int:
    """The line where key (dotted: in its table) is set; tomllib gives none."""
    current = ""
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.match(r"^\[\s*([^\]]+?)\s*\]", s)
        if m:
            current = m.group(1).strip('"')
            if current == key:  # a table that is not one of ours
                return i
            continue
        m = re.match(r'^"?([A-Za-z0-9_.-]+?)"?\s*=', s)
        if not m:
            continue
        full = f"{current}.{m.group(1)}" if current else m.group(1)
        if full == key:
            return i
    return 1


def effective_toml(cfg: Config) -> str:
    """The effective configuration, as a TOML file with every key."""
    def val(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, tuple):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float):
            return f'"{v:g}s"'
        return str(v)

    shown = {
        "ring_size": f'"{_human_size(cfg.ring_size)}"',
        "retention.max_total_size": None if cfg.retention_max_total_size is None
        else f'"{_human_size(cfg.retention_max_total_size)}"',
    }
    lines: list[str] = []
    if cfg.source:
        lines.append(f"# effective configuration of {cfg.source}")
    else:
        lines.append("# effective configuration (defaults: no file)")
    table = ""
    for key, (attr, _) in SCHEMA.items():
        t, _, name = key.rpartition(".")
        if t != table:
            lines += ["", f"[{t}]"]
            table = t
        v = getattr(cfg, attr)
        text = shown.get(key) or (None if v is None else val(v))
        lines.append(f"# {name} is not set" if text is None else f"{name} = {text}")
    return "\n".join(lines) + "\n"


def _human_size(n: int) -> str:
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return f"{n}B"
