"""An SQLite index of the session files under a directory, for `sessrec ls`
and `sessrec search`.

The session files are the source of truth; the index is a cache of them. It
lives in DIR/.sessrec-index.sqlite, or under $XDG_CACHE_HOME/sessrec/ when DIR
is not writable (or the file there is not ours), or in memory as a last resort.
Each run brings it up to date incrementally: a file is (re)indexed when it is
new or its size or mtime changed (a file still being recorded grows), and
forgotten when it is gone. A missing, corrupt or older-schema index is rebuilt
from the files.

What is indexed: one row per session (header, trailer or what a scan found,
and damage), and one row per searchable event: exec (executable, argv), open
and chdir (the path, resolved when possible), connect (the destination). Forks
and exits are not indexed. A damaged file is indexed up to the damage and
flagged; a file that is not a session file is remembered with its error so it
is not read again until it changes.

Text from the files is stored decoded (UTF-8, undecodable bytes as \\xNN) and
unescaped, once each in a strings table that events refer to (paths, argv
and addresses repeat); whoever displays it escapes control characters.
Patterns match the strings table (SQL GLOB where it is equivalent to
fnmatch, else fnmatch), then events by string id.
"""

from __future__ import annotations

import calendar
import contextlib
import dataclasses
import datetime
import fnmatch
import functools
import hashlib
import ipaddress
import json
import os
import re
import sqlite3
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from replay.events import PathResolver
from replay.reader import open_session
from sessrec import format as fmt
from sessrec.errors import SessrecError, UsageError
from sessrec.event import TYPE_NAMES, Chdir, Connect, EventType, Exec, Exit, Open

INDEX_NAME = ".sessrec-index.sqlite"
# Bump when the tables change: an index of another version is rebuilt.
SCHEMA_VERSION = 2
SUFFIX = ".srec"

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

_SCHEMA = """
CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,      -- relative to the indexed directory
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    session_id TEXT,                -- the header's; NULL when unreadable
    error TEXT                      -- why the file could not be read at all
);
CREATE TABLE sessions (
    file_id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    user TEXT NOT NULL,
    uid INTEGER NOT NULL,
    login_uid INTEGER,
    audit_session_id INTEGER,
    hostname TEXT NOT NULL,
    kernel TEXT NOT NULL,
    command TEXT NOT NULL,          -- JSON list of str
    cwd TEXT NOT NULL,
    started_at TEXT NOT NULL,       -- as the header says
    ended_at TEXT,                  -- as the trailer says; NULL without one
    start_ns INTEGER NOT NULL,      -- clock.wall_ns
    end_ns INTEGER NOT NULL,        -- the later of the last event and ended_at
    exit_status INTEGER,
    end_reason TEXT,
    counts TEXT NOT NULL,           -- JSON {type name: events}
    lost TEXT NOT NULL,             -- JSON {type name: events lost}
    events INTEGER NOT NULL,        -- events read
    lost_total INTEGER NOT NULL,
    complete INTEGER NOT NULL,      -- a trailer and no damage
    damage_offset INTEGER,
    damage_reason TEXT,
    damage_truncated INTEGER,       -- 1 truncated, 0 corrupt
    format_version TEXT NOT NULL
);
CREATE TABLE strings (            -- every text, once: paths, argv, names repeat
    id INTEGER PRIMARY KEY,
    text TEXT NOT NULL UNIQUE
);
CREATE TABLE events (
    file_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,           -- position among the file's events
    type INTEGER NOT NULL,          -- sessrec.format.EventType
    time_ns INTEGER NOT NULL,       -- wall clock, ns since the epoch
    pid INTEGER NOT NULL,
    ppid INTEGER NOT NULL,
    comm INTEGER NOT NULL,          -- strings.id
    ret INTEGER NOT NULL,
    path INTEGER,                   -- exec, open, chdir: resolved, else as passed
    name INTEGER,                   -- exec: the executable's base name
    cmd INTEGER,                    -- exec: argv joined with spaces
    argv INTEGER,                   -- exec: argv as a JSON list
    flags INTEGER,                  -- open: O_* flags
    addr INTEGER,                   -- connect: address, unix path or @name
    port INTEGER,                   -- connect: port (inet)
    proto INTEGER,                  -- connect: tcp, udp, stream, ...
    PRIMARY KEY (file_id, seq)
) WITHOUT ROWID;                    -- clustered by file: no separate index for it
CREATE INDEX events_path ON events (path) WHERE path IS NOT NULL;
CREATE INDEX events_addr ON events (addr) WHERE addr IS NOT NULL;
"""

_TABLES = ("files", "sessions", "strings", "events")


# --- where the index lives --------------------------------------------------------


def _own_regular_file(path: str) -> bool | None:
    """True if path is a regular file of ours (not a symlink), None if absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def cache_index_path(root: str, environ: Mapping[str, str]) -> str:
    """$XDG_CACHE_HOME/sessrec/index-<hash of DIR>.sqlite (default ~/.cache)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache"
    )
    digest = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()[:20]
    return os.path.join(base, "sessrec", f"index-{digest}.sqlite")


def choose_index_path(root: str, environ: Mapping[str, str] | None = None) -> str:
    """Where the index of root goes: in root if we may write there and any
    existing index file is a regular file we own; else in the cache directory;
    else ":memory:"."""
    env = os.environ if environ is None else environ
    in_dir = os.path.join(root, INDEX_NAME)
    mine = _own_regular_file(in_dir)
    if mine or (mine is None and os.access(root, os.W_OK | os.X_OK)):
        return in_dir
    cached = cache_index_path(root, env)
    try:
        os.makedirs(os.path.dirname(cached), mode=0o700, exist_ok=True)
    except OSError:
        return ":memory:"
    if _own_regular_file(cached) is False or not os.access(
        os.path.dirname(cached), os.W_OK | os.X_OK
    ):
        return ":memory:"
    return cached


# --- query terms --------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL)


def _fnmatch(pattern: str | None, value: str | None) -> bool:
    if pattern is None or value is None:
        return False
    return _glob_regex(pattern).match(value) is not None


def sql_glob_equivalent(pattern: str) -> bool:
    """Whether SQLite's GLOB matches exactly as fnmatch.fnmatchcase does.

    Both treat * (any run, "/" included) and ? alike and are case-sensitive;
    they differ on bracket expressions ([!a] negates in fnmatch, [^a] in
    SQLite; an unclosed [ is literal in fnmatch only). So: without "[", GLOB."""
    return "[" not in pattern


def _glob_clause(column: str, pattern: str, params: list[Any]) -> str:
    params.append(pattern)
    if sql_glob_equivalent(pattern):
        return f"{column} GLOB ?"
    return f"sessrec_fnmatch(?, {column})"


def _ids(cond: str) -> str:
    """The ids of the strings whose text t matches cond."""
    return f"(SELECT t.id FROM strings t WHERE {cond})"


@dataclass(frozen=True)
class Dest:
    """A --dest term: an address, network, unix socket or port."""

    addresses: tuple[str, ...] = ()  # exact spellings of one address
    network: str | None = None  # CIDR, matched in Python
    unix: str | None = None  # glob on unix paths and @abstract names
    port: int | None = None
    text: str = ""


def _ip_spellings(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, ...]:
    """The ways the decoder may print ip: an IPv4 address is also reached
    through its v4-mapped IPv6 form."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return (f"::ffff:{mapped}", str(mapped))
        return (str(ip),)
    return (str(ip), f"::ffff:{ip}")


def parse_dest(text: str) -> Dest:
    """ADDR, ADDR:PORT, [V6ADDR]:PORT, :PORT, a CIDR network (10.0.0.0/8,
    optionally :PORT after it in brackets form), or a unix socket path or
    @abstract name (a glob)."""
    t = text.strip()
    if not t:
        raise UsageError("--dest needs an address")
    if t.startswith(("/", "@")):
        return Dest(unix=t, text=text)
    port: int | None = None
    host = t
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise UsageError(f"--dest {text!r}: missing ']'")
        host, rest = t[1:end], t[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"--dest {text!r}: expected ':PORT' after ']'")
            port = _port(rest[1:], text)
    elif t.count(":") == 1:  # IPv4:PORT or :PORT; a bare IPv6 has several colons
        host, _, p = t.partition(":")
        port = _port(p, text)
    if not host:
        return Dest(port=port, text=text)
    try:
        if "/" in host:
            net = ipaddress.ip_network(host, strict=False)
            return Dest(network=str(net), port=port, text=text)
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(
            f"--dest {text!r}: not an IP address, network, unix socket path or :PORT "
            "(session files hold addresses, not host names)"
        ) from None
    return Dest(addresses=_ip_spellings(ip), port=port, text=text)


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise UsageError(f"--dest {whole!r}: bad port {text!r}")
    return int(text)


@functools.lru_cache(maxsize=64)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _in_network(network: str | None, addr: str | None) -> bool:
    if network is None or addr is None:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return False
    net = _network(network)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        if isinstance(net, ipaddress.IPv4Network):
            return ip.ipv4_mapped in net
    return ip in net


_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now_ns: int, option: str = "--since") -> int:
    """A point in time, ns since the epoch: '7d', '12h', '30m', '2w', '90s'
    (ago), a date '2026-11-14' (midnight UTC), or RFC 3339 / ISO 8601
    ('2026-11-14T10:00:00Z', '2026-11-14 10:00+01:00'); without a zone, UTC."""
    m = _RELATIVE.match(text)
    if m:
        return now_ns - int(m.group(1)) * _UNIT_S[m.group(2).lower()] * 1_000_000_000
    try:
        dt = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: use a duration ago (7d, 12h, 30m) or a date or "
            "time (2026-11-14, 2026-11-14T10:00:00Z)"
        ) from None
    ns = _datetime_ns(dt)
    if ns is None:
        raise UsageError(f"{option} {text!r}: out of range")
    return ns


def _datetime_ns(dt: datetime.datetime) -> int | None:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    try:
        return calendar.timegm(dt.utctimetuple()) * 1_000_000_000 + dt.microsecond * 1000
    except (OverflowError, ValueError):
        return None


@dataclass
class Query:
    """A search: AND across kinds of terms, OR within one kind (or across the
    event kinds too, with any_kind)."""

    paths: list[str] = field(default_factory=list)
    cmds: list[str] = field(default_factory=list)
    dests: list[Dest] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    since_ns: int | None = None
    until_ns: int | None = None
    any_kind: bool = False

    def event_kinds(self) -> list[tuple[str, str, list[Any]]]:
        """(kind, SQL condition on events e, params) per event kind in use."""
        kinds: list[tuple[str, str, list[Any]]] = []
        if self.paths:
            params: list[Any] = []
            texts = " OR ".join(_glob_clause("t.text", p, params) for p in self.paths)
            types = f"{int(EventType.EXEC)}, {int(EventType.OPEN)}, {int(EventType.CHDIR)}"
            kinds.append(("path", f"(e.type IN ({types}) AND e.path IN {_ids(texts)})", params))
        if self.cmds:
            params = []
            texts = " OR ".join(_glob_clause("t.text", c, params) for c in self.cmds)
            ids = _ids(texts)
            kinds.append(("cmd", f"(e.type = {int(EventType.EXEC)} AND (e.cmd IN {ids} OR "
                                 f"e.path IN {ids} OR e.name IN {ids}))", params * 3))
        if self.dests:
            params = []
            ors = []
            for d in self.dests:
                parts = []
                if d.addresses:
                    marks = ", ".join("?" * len(d.addresses))
                    parts.append(f"e.addr IN {_ids(f't.text IN ({marks})')}")
                    params += d.addresses
                elif d.network is not None:
                    parts.append(f"e.addr IN {_ids('sessrec_in_network(?, t.text)')}")
                    params.append(d.network)
                elif d.unix is not None:
                    parts.append(f"e.addr IN {_ids(_glob_clause('t.text', d.unix, params))}")
                if d.port is not None:
                    parts.append("e.port = ?")
                    params.append(d.port)
                ors.append("(" + " AND ".join(parts or ["1"]) + ")")
            kinds.append(
                ("dest", f"(e.type = {int(EventType.CONNECT)} AND ({' OR '.join(ors)}))", params)
            )
        return kinds

    def time_clause(self, column: str, params: list[Any]) -> str:
        parts = []
        if self.since_ns is not None:
            parts.append(f"{column} >= ?")
            params.append(_clamp(self.since_ns))
        if self.until_ns is not None:
            parts.append(f"{column} < ?")
            params.append(_clamp(self.until_ns))
        return " AND ".join(parts) or "1"

    def session_clause(self, params: list[Any]) -> str:
        """Conditions on the sessions row s (user, and the time window when no
        event term carries it)."""
        parts = []
        if self.users:
            ors = []
            for u in self.users:
                ors.append("s.user = ?")
                params.append(u)
                if u.isdigit():
                    ors.append("s.uid = ?")
                    params.append(_clamp(int(u)))
            parts.append("(" + " OR ".join(ors) + ")")
        if not self.event_kinds():
            # A session overlapping [since, until).
            if self.since_ns is not None:
                parts.append("s.end_ns >= ?")
                params.append(_clamp(self.since_ns))
            if self.until_ns is not None:
                parts.append("s.start_ns < ?")
                params.append(_clamp(self.until_ns))
        return " AND ".join(parts) or "1"


# --- results ------------------------------------------------------------------------


@dataclass
class SessionRow:
    """One session as the index knows it."""

    file: str  # relative to the directory
    session_id: str
    user: str
    uid: int
    login_uid: int | None
    audit_session_id: int | None
    hostname: str
    kernel: str
    command: list[str]
    cwd: str
    started_at: str
    ended_at: str | None
    start_ns: int
    end_ns: int
    exit_status: int | None
    end_reason: str | None
    counts: dict[str, int]
    lost: dict[str, int]
    total_events: int
    lost_total: int
    complete: bool
    damage: dict[str, Any] | None
    format_version: str
    file_id: int = 0

    @property
    def status(self) -> str:
        """'complete', 'truncated' (ends early) or 'damaged' (corrupt)."""
        if self.complete:
            return "complete"
        if self.damage is not None and not self.damage["truncated"]:
            return "damaged"
        return "truncated"

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        del d["file_id"]
        d["status"] = self.status
        d["duration_s"] = round(self.duration_ns / 1e9, 6)
        return d


@dataclass
class EventRow:
    """A searchable event as the index stores it."""

    type: str
    time_ns: int
    pid: int
    ppid: int
    comm: str
    return_code: int
    path: str | None = None
    argv: list[str] | None = None
    flags: int | None = None
    dst_addr: str | None = None
    dst_port: int | None = None
    protocol: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": self.type,
            "time": fmt.TimeFormatter()(self.time_ns) if _time_ok(self.time_ns) else None,
            "time_ns": self.time_ns,
            "pid": self.pid,
            "ppid": self.ppid,
            "comm": self.comm,
        }
        if self.type == "exec":
            d.update(path=self.path, argv=self.argv)
        elif self.type == "open":
            flags = self.flags or 0
            d.update(path=self.path, flags=flags, flag_names=list(fmt.open_flag_names(flags)))
        elif self.type == "chdir":
            d.update(path=self.path)
        elif self.type == "connect":
            d.update(dst_addr=self.dst_addr, dst_port=self.dst_port, protocol=self.protocol)
        d["return_code"] = self.return_code
        return d


@dataclass
class Match:
    session: SessionRow
    matched_events: int
    events: list[EventRow]
    kinds: list[str]  # the event kinds that matched

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.session.as_dict(),
            "matched_kinds": self.kinds,
            "matched_events": self.matched_events,
            "events": [e.as_dict() for e in self.events],
        }


@dataclass
class SyncStats:
    """What one update of the index did, by file name."""

    added: list[str] = field(default_factory=list)
    grown: list[str] = field(default_factory=list)  # same session, more data
    replaced: list[str] = field(default_factory=list)  # changed otherwise
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, error)
    rebuilt: str | None = None  # why the index was rebuilt, if it was


def _time_ok(ns: int) -> bool:
    return 0 <= ns < 253402300800 * 1_000_000_000  # before year 10000


def format_time(ns: int, digits: int = 6) -> str:
    """RFC 3339 UTC with `digits` decimals; '?' for a time out of range."""
    if not _time_ok(ns):
        return "?"
    s = fmt.TimeFormatter()(ns)
    return s[: 20 + digits] + "Z" if digits else s[:19] + "Z"


def _clamp(v: int) -> int:
    return _I64_MIN if v < _I64_MIN else _I64_MAX if v > _I64_MAX else v


def _clamp_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_clamp(v) if type(v) is int else v for v in row)


def _parse_rfc3339(text: str) -> int | None:
    try:
        return _datetime_ns(datetime.datetime.fromisoformat(text))
    except ValueError:
        return None


# --- indexing one file ------------------------------------------------------------------

_BATCH = 5000
_TEXT = fmt.text


class _Interner:
    """Ids of texts in the strings table, cached for one update of the index."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.ids: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        i = self.ids.get(text)
        if i is None:
            row = self.conn.execute("SELECT id FROM strings WHERE text = ?", (text,)).fetchone()
            if row is None:
                new = self.conn.execute("INSERT INTO strings (text) VALUES (?)", (text,)).lastrowid
                assert new is not None
                i = new
            else:
                i = row[0]
            if len(self.ids) >= 1 << 20:
                self.ids.clear()
            self.ids[text] = i
        return i


def _index_file(conn: sqlite3.Connection, file_id: int, full: str, intern: _Interner) -> str:
    """Read one session file into sessions and events rows; return its session
    id. FormatError/SessrecError if it has no readable header."""
    with open_session(full, strict=False) as session:
        header = session.header
        wall_ns: int = header["clock"]["wall_ns"]
        resolve = PathResolver.from_header(header).apply
        # By the bytes of the file: each distinct value decoded and interned once.
        comms: dict[bytes, int] = {}
        paths: dict[bytes, tuple[int, int]] = {}  # path -> (path id, base name id)
        argvs: dict[tuple[bytes, ...], tuple[int, int]] = {}  # -> (cmd id, argv id)
        connects: dict[tuple[bytes, int, int], tuple[int | None, int | None, int | None]] = {}

        def path_ids(raw: bytes) -> tuple[int, int]:
            ids = paths.get(raw)
            if ids is None:
                if len(paths) >= 1 << 18:
                    paths.clear()
                ids = paths[raw] = (intern(_TEXT(raw)), intern(_TEXT(raw.rsplit(b"/", 1)[-1])))
            return ids

        batch: list[tuple[Any, ...]] = []
        row: tuple[Any, ...]
        last_ts = 0
        leader = header["leader_pid"]
        exit_status: int | None = None
        seq = 0
        for ev in session.records():
            seq += 1
            ts = ev.ts
            if ts > last_ts:
                last_ts = ts
            path = resolve(ev)
            if type(ev) is Exit:
                if ev.pid == leader:
                    exit_status = fmt.shell_status(ev.exit_code_raw)
                continue
            if not isinstance(ev, Exec | Open | Connect | Chdir):
                continue
            comm = comms.get(ev.comm)
            if comm is None:
                comm = comms[ev.comm] = intern(_TEXT(ev.comm))
            common = (file_id, seq, ev.type, wall_ns + ts, ev.pid, ev.ppid, comm, ev.ret)
            if type(ev) is Open:
                pid_ = path_ids(path if path is not None else ev.requested_path)[0]
                row = (*common, pid_, None, None, None, ev.open_flags, None, None, None)
            elif type(ev) is Exec:
                pid_, name = path_ids(path if path is not None else ev.requested_path)
                key = tuple(ev.argv)
                cmd = argvs.get(key)
                if cmd is None:
                    if len(argvs) >= 1 << 16:
                        argvs.clear()
                    texts = [_TEXT(a) for a in key]
                    cmd = argvs[key] = (intern(" ".join(texts)), intern(json.dumps(texts)))
                row = (*common, pid_, name, *cmd, None, None, None, None)
            elif type(ev) is Connect:
                ckey = (ev.sockaddr, ev.sock_type, ev.protocol)
                dest = connects.get(ckey)
                if dest is None:
                    a = fmt.decode_sockaddr(ckey[0])
                    proto = fmt.protocol_name(a.family, ckey[1], ckey[2])
                    dest = connects[ckey] = (
                        None if a.address is None else intern(a.address), a.port,
                        None if proto is None else intern(proto),
                    )
                row = (*common, None, None, None, None, None, *dest)
            elif type(ev) is Chdir:
                req = ev.requested_path if ev.fd == -1 else b""
                target = path if path is not None else req
                row = (*common, path_ids(target)[0] if target else None, None, None, None,
                       None, None, None, None)
            batch.append(row)
            if len(batch) >= _BATCH:
                _insert_events(conn, batch)
                batch = []
        if batch:
            _insert_events(conn, batch)
        trailer = session.trailer
        damage = session.damage
        counts = session.counts
        for tnum, n in session.unknown_types.items():
            counts[f"type_{tnum}"] = n
        if trailer is not None:
            lost = dict(trailer["lost"])
            exit_status = trailer["exit_status"]
            ended_ns = _parse_rfc3339(trailer["ended_at"])
        else:
            lost = dict(session.stats_lost)
            ended_ns = None
        end_ns = wall_ns + last_ts
        if ended_ns is not None and ended_ns > end_ns:
            end_ns = ended_ns
        srow = (
            file_id, header["session_id"], header["user"], header["uid"],
            header["login_uid"], header["audit_session_id"], header["hostname"],
            header["kernel"], json.dumps(header["command"]), _TEXT(header["cwd"]),
            header["started_at"], None if trailer is None else trailer["ended_at"],
            wall_ns, end_ns, exit_status, None if trailer is None else trailer["end_reason"],
            json.dumps(counts), json.dumps(lost), session.events_read,
            sum(v for v in lost.values() if v > 0),
            int(trailer is not None and damage is None),
            None if damage is None else damage.offset,
            None if damage is None else damage.reason,
            None if damage is None else int(damage.truncated),
            session.format_version,
        )
        _insert(conn, f"INSERT INTO sessions VALUES ({', '.join('?' * len(srow))})", [srow])
        sid: str = header["session_id"]
        return sid


_EVENT_INSERT = "INSERT INTO events VALUES (" + ", ".join("?" * 16) + ")"


def _insert_events(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    _insert(conn, _EVENT_INSERT, rows)


def _insert(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn.execute("SAVEPOINT batch")
    try:
        conn.executemany(sql, rows)
    except OverflowError:
        # An integer beyond SQLite's 64 bits in a hostile file: undo the rows
        # before it, and clamp.
        conn.execute("ROLLBACK TO batch")
        conn.executemany(sql, [_clamp_row(r) for r in rows])
    conn.execute("RELEASE batch")


# --- the index ---------------------------------------------------------------------------


def find_session_files(root: str) -> Iterator[str]:
    """*.srec files under root (recursively, hidden directories skipped), as
    paths relative to root."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if name.endswith(SUFFIX) and not name.startswith("."):
                yield name if rel == "." else os.path.join(rel, name)


class SessionIndex:
    """The index of one directory. Use as a context manager; call sync()
    before querying."""

    def __init__(self, root: str, *, db_path: str | None = None,
                 environ: Mapping[str, str] | None = None):
        if not os.path.isdir(root):
            raise UsageError(f"{root} is not a directory")
        self.root = root
        self.db_path = db_path or choose_index_path(root, environ)
        self.rebuilt: str | None = None
        self.conn = self._open()

    # --- opening and rebuilding ---

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        except sqlite3.Error as e:
            raise SessrecError(f"cannot open the index {self.db_path}: {e}") from None
        conn.create_function("sessrec_fnmatch", 2, _fnmatch, deterministic=True)
        conn.create_function("sessrec_in_network", 2, _in_network, deterministic=True)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA trusted_schema = OFF")
        return conn

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        problem = self._check(conn)
        if problem is None:
            return conn
        conn.close()
        return self._rebuild(problem)

    @staticmethod
    def _check(conn: sqlite3.Connection) -> str | None:
        """Why this database is not a usable index, or None."""
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return "missing"
            if version != SCHEMA_VERSION:
                return f"schema version {version}, this sessrec uses {SCHEMA_VERSION}"
            if not set(_TABLES) <= tables:
                return "tables missing"
            for t in _TABLES:
                conn.execute(f"SELECT * FROM {t} LIMIT 1").fetchall()
        except sqlite3.DatabaseError as e:
            return f"unreadable ({e})"
        return None

    def _rebuild(self, why: str) -> sqlite3.Connection:
        self.rebuilt = why
        if self.db_path != ":memory:":
            for suffix in ("", "-journal", "-wal", "-shm"):
                try:
                    os.unlink(self.db_path + suffix)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    raise SessrecError(
                        f"cannot rebuild the index {self.db_path}: {e.strerror}") from None
        conn = self._connect()
        try:
            conn.executescript(
                f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.Error as e:
            conn.close()
            raise SessrecError(f"cannot create the index {self.db_path}: {e}") from None
        if self.db_path != ":memory:":
            with contextlib.suppress(OSError):
                os.chmod(self.db_path, 0o600)
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> SessionIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guard(self, op: Any, *args: Any) -> Any:
        """Run op; if the index turns out to be corrupt midway, rebuild it and
        run op again (the files are the source of truth)."""
        try:
            return op(*args)
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                raise SessrecError(f"the index {self.db_path} is busy: {e}") from None
            why = f"unusable ({e})"
        except sqlite3.DatabaseError as e:
            why = f"corrupt ({e})"
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        self.conn = self._rebuild(why)
        return op(*args)

    # --- updating ---

    def sync(self) -> SyncStats:
        """Bring the index up to date with the files under root."""
        stats: SyncStats = self._guard(self._sync)
        stats.rebuilt = self.rebuilt
        return stats

    def _sync(self) -> SyncStats:
        stats = SyncStats()
        conn = self.conn
        known = {
            name: (fid, size, mtime, sid, err)
            for fid, name, size, mtime, sid, err in conn.execute(
                "SELECT id, name, size, mtime_ns, session_id, error FROM files")
        }
        seen: set[str] = set()
        intern = _Interner(conn)
        for name in find_session_files(self.root):
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            if shown != name:  # undecodable bytes: SQLite and JSON take only text
                stats.unreadable.append(
                    (shown, f"{shown}: the file name is not UTF-8; rename it to index it"))
                continue
            full = os.path.join(self.root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            seen.add(name)
            old = known.get(name)
            if old is not None and old[1] == st.st_size and old[2] == st.st_mtime_ns:
                stats.unchanged += 1
                if old[4] is not None:
                    stats.unreadable.append((name, old[4]))
                continue
            self._index_one(name, full, st, old, stats, intern)
        for name, (fid, *_rest) in known.items():
            if name not in seen:
                conn.execute("BEGIN IMMEDIATE")
                self._forget(fid)
                conn.execute("DELETE FROM files WHERE id = ?", (fid,))
                conn.execute("COMMIT")
                stats.removed.append(name)
        return stats

    def _forget(self, fid: int) -> None:
        self.conn.execute("DELETE FROM events WHERE file_id = ?", (fid,))
        self.conn.execute("DELETE FROM sessions WHERE file_id = ?", (fid,))

    def _index_one(self, name: str, full: str, st: os.stat_result,
                   old: tuple[int, int, int, str | None, str | None] | None,
                   stats: SyncStats, intern: _Interner) -> None:
        conn = self.conn
        # IMMEDIATE: take the write lock first, so that two sessrec runs
        # updating one index wait for each other instead of failing.
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = conn.execute("SELECT id, size, mtime_ns, session_id, error FROM files "
                               "WHERE name = ?", (name,)).fetchone()
            if now is not None and now[1] == st.st_size and now[2] == st.st_mtime_ns:
                conn.execute("COMMIT")  # another run indexed it meanwhile
                stats.unchanged += 1
                return
            if now is None:
                fid = conn.execute(
                    "INSERT INTO files (name, size, mtime_ns) VALUES (?, ?, ?)",
                    (name, st.st_size, st.st_mtime_ns)).lastrowid
                assert fid is not None
            else:
                fid = now[0]
                self._forget(fid)
            error = None
            sid: str | None = None
            try:
                sid = _index_file(conn, fid, full, intern)
            except SessrecError as e:
                error = str(e)
                self._forget(fid)  # rows of a file that failed midway
            conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, session_id = ?, error = ? "
                "WHERE id = ?", (st.st_size, st.st_mtime_ns, sid, error, fid))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            intern.ids.clear()  # ids of strings inserted by the rolled back transaction
            raise
        if error is not None:
            stats.unreadable.append((name, error))
        if old is None:
            stats.added.append(name)
        elif sid is not None and sid == old[3] and st.st_size > old[1]:
            stats.grown.append(name)
        else:
            stats.replaced.append(name)

    # --- querying ---

    _SESSION_COLS = (
        "f.name, s.session_id, s.user, s.uid, s.login_uid, s.audit_session_id, "
        "s.hostname, s.kernel, s.command, s.cwd, s.started_at, s.ended_at, s.start_ns, "
        "s.end_ns, s.exit_status, s.end_reason, s.counts, s.lost, s.events, s.lost_total, "
        "s.complete, s.damage_offset, s.damage_reason, s.damage_truncated, "
        "s.format_version, s.file_id"
    )

    @staticmethod
    def _session(r: tuple[Any, ...]) -> SessionRow:
        damage = None
        if r[21] is not None:
            damage = {"offset": r[21], "reason": r[22], "truncated": bool(r[23])}
        return SessionRow(
            file=r[0], session_id=r[1], user=r[2], uid=r[3], login_uid=r[4],
            audit_session_id=r[5], hostname=r[6], kernel=r[7], command=json.loads(r[8]),
            cwd=r[9], started_at=r[10], ended_at=r[11], start_ns=r[12], end_ns=r[13],
            exit_status=r[14], end_reason=r[15], counts=json.loads(r[16]),
            lost=json.loads(r[17]), total_events=r[18], lost_total=r[19], complete=bool(r[20]),
            damage=damage, format_version=r[24], file_id=r[25],
        )

    def sessions(self) -> list[SessionRow]:
        """Every indexed session, by start time."""
        rows = self._guard(lambda: self.conn.execute(
            f"SELECT {self._SESSION_COLS} FROM sessions s JOIN files f ON f.id = s.file_id "
            "ORDER BY s.start_ns, f.name").fetchall())
        return [self._session(r) for r in rows]

    def search(self, query: Query, *, max_events: int | None = 20,
               with_events: bool = True) -> list[Match]:
        """Sessions matching query, by start time, each with up to max_events
        of its matching events (None: all) in time order."""
        result: list[Match] = self._guard(self._search, query, max_events, with_events)
        return result

    def _search(self, query: Query, max_events: int | None, with_events: bool) -> list[Match]:
        conn = self.conn
        params: list[Any] = []
        where = query.session_clause(params)
        candidates = {
            r[-1]: r for r in conn.execute(
                f"SELECT {self._SESSION_COLS} FROM sessions s JOIN files f ON f.id = s.file_id "
                f"WHERE {where}", params)
        }
        kinds = query.event_kinds()
        matched_kinds: dict[int, list[str]] = {fid: [] for fid in candidates}
        if kinds:
            tparams: list[Any] = []
            tclause = query.time_clause("e.time_ns", tparams)
            hits: set[int] | None = None
            for kind, cond, kparams in kinds:
                fids = {r[0] for r in conn.execute(
                    f"SELECT DISTINCT e.file_id FROM events e WHERE {cond} AND {tclause}",
                    [*kparams, *tparams])}
                for fid in fids & candidates.keys():
                    matched_kinds[fid].append(kind)
                if query.any_kind:
                    hits = fids if hits is None else hits | fids
                else:
                    hits = fids if hits is None else hits & fids
            selected = [fid for fid in candidates if fid in (hits or set())]
        else:
            selected = list(candidates)
        matches = []
        for fid in selected:
            session = self._session(candidates[fid])
            events: list[EventRow] = []
            total = 0
            if kinds:
                cond = " OR ".join(c for _k, c, _p in kinds)
                eparams: list[Any] = [p for _k, _c, ps in kinds for p in ps]
                tclause = query.time_clause("e.time_ns", eparams)
                base = f"FROM events e WHERE e.file_id = ? AND ({cond}) AND {tclause}"
                total = conn.execute(f"SELECT count(*) {base}", [fid, *eparams]).fetchone()[0]
                if with_events and max_events != 0:
                    limit = -1 if max_events is None else max_events
                    texts = "".join(
                        f" LEFT JOIN strings s_{c} ON s_{c}.id = e.{c}"
                        for c in ("comm", "path", "argv", "addr", "proto"))
                    select = base.replace("FROM events e", f"FROM events e{texts}", 1)
                    events = [self._event(r) for r in conn.execute(
                        "SELECT e.type, e.time_ns, e.pid, e.ppid, s_comm.text, e.ret, "
                        "s_path.text, s_argv.text, e.flags, s_addr.text, e.port, s_proto.text "
                        f"{select} ORDER BY e.time_ns, e.seq LIMIT ?",
                        [fid, *eparams, limit])]
            matches.append(Match(session, total, events, matched_kinds[fid]))
        matches.sort(key=lambda m: (m.session.start_ns, m.session.file))
        return matches

    @staticmethod
    def _event(r: tuple[Any, ...]) -> EventRow:
        return EventRow(
            type=TYPE_NAMES.get(r[0], f"type_{r[0]}"), time_ns=r[1], pid=r[2], ppid=r[3],
            comm=r[4], return_code=r[5], path=r[6],
            argv=None if r[7] is None else json.loads(r[7]), flags=r[8], dst_addr=r[9],
            dst_port=r[10], protocol=r[11],
        )


def open_index(root: str, *, reindex: bool = False,
               environ: Mapping[str, str] | None = None) -> tuple[SessionIndex, SyncStats]:
    """Open root's index and bring it up to date; reindex: start from scratch."""
    index = SessionIndex(root, environ=environ)
    try:
        if reindex:
            index.conn.close()
            index.conn = index._rebuild("asked for")
        stats = index.sync()
    except BaseException:
        index.close()
        raise
    return index, stats

