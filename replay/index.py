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

This module is the SQLite store and its result rows; where the index lives
is replay/index_location.py, reading a file into rows replay/index_extract.py,
and the query replay/index_query.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias, TypedDict, TypeVar

from replay.index_extract import Interner, index_file
from replay.index_location import choose_index_path
from replay.index_query import Query, SqlValue
from replay.terms import glob_match, in_network
from sessrec import format as fmt
from sessrec import linux
from sessrec.errors import SessrecError, UsageError
from sessrec.event import TYPE_NAMES

# Bump when the tables change: an index of another version is rebuilt.
SCHEMA_VERSION = 4
SUFFIX = ".srec"


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
    format_version TEXT NOT NULL,
    warnings TEXT NOT NULL          -- JSON list: what the read side's bounds left out
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
    tampered INTEGER NOT NULL,      -- 1: flagged tampered (replay/trust.py)
    PRIMARY KEY (file_id, seq)
) WITHOUT ROWID;                    -- clustered by file: no separate index for it
CREATE INDEX events_path ON events (path) WHERE path IS NOT NULL;
CREATE INDEX events_addr ON events (addr) WHERE addr IS NOT NULL;
CREATE INDEX events_tampered ON events (file_id) WHERE tampered;
"""

_TABLES = ("files", "sessions", "strings", "events")


# --- results ------------------------------------------------------------------------


class Damage(TypedDict):
    """SessionRow.damage: where the file stops being readable (replay.base.Damage)."""

    offset: int
    reason: str
    truncated: bool


# The columns of _SESSION_COLS and of the events search selects, as SQLite
# gives them (the tables' types above).
_SessionCols: TypeAlias = tuple[
    str, str, str, int, int | None, int | None, str, str, str, str, str, str | None, int, int,
    int | None, str | None, str, str, int, int, int, int | None, str | None, int | None, str,
    str, int]
_EventCols: TypeAlias = tuple[
    int, int, int, int, str, int, str | None, str | None, int | None, str | None, int | None,
    str | None, int]
_T = TypeVar("_T")


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
    damage: Damage | None
    format_version: str
    file_id: int = 0
    # what the read side's bounds left out while indexing it (Session.limit_warnings)
    warnings: list[str] = field(default_factory=list)

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

    def as_dict(self) -> dict[str, object]:
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
    tampered: bool = False

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
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
            d.update(path=self.path, flags=flags, flag_names=list(linux.open_flag_names(flags)))
        elif self.type == "chdir":
            d.update(path=self.path)
        elif self.type == "connect":
            d.update(dst_addr=self.dst_addr, dst_port=self.dst_port, protocol=self.protocol)
        elif self.type == "cgroup":
            d.update(path=self.path)
        d["return_code"] = self.return_code
        d["tampered"] = self.tampered
        return d


@dataclass
class Match:
    session: SessionRow
    matched_events: int
    events: list[EventRow]
    kinds: list[str]  # the event kinds that matched

    def as_dict(self) -> dict[str, object]:
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
        conn.create_function("sessrec_fnmatch", 2, glob_match, deterministic=True)
        conn.create_function("sessrec_in_network", 2, in_network, deterministic=True)
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

    def _guard(self, op: Callable[..., _T], *args: object) -> _T:
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
        intern = Interner(conn)
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
                   stats: SyncStats, intern: Interner) -> None:
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
                sid = index_file(conn, fid, full, intern)
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
        "s.format_version, s.warnings, s.file_id"  # file_id last: search keys by r[-1]
    )

    @staticmethod
    def _session(r: _SessionCols) -> SessionRow:
        damage: Damage | None = None
        if r[21] is not None:  # (written with its reason and truncated)
            damage = Damage(offset=r[21], reason=r[22] or "", truncated=bool(r[23]))
        return SessionRow(
            file=r[0], session_id=r[1], user=r[2], uid=r[3], login_uid=r[4],
            audit_session_id=r[5], hostname=r[6], kernel=r[7], command=json.loads(r[8]),
            cwd=r[9], started_at=r[10], ended_at=r[11], start_ns=r[12], end_ns=r[13],
            exit_status=r[14], end_reason=r[15], counts=json.loads(r[16]),
            lost=json.loads(r[17]), total_events=r[18], lost_total=r[19], complete=bool(r[20]),
            damage=damage, format_version=r[24], warnings=json.loads(r[25]), file_id=r[26],
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
        params: list[SqlValue] = []
        where = query.session_clause(params)
        candidates = {
            r[-1]: r for r in conn.execute(
                f"SELECT {self._SESSION_COLS} FROM sessions s JOIN files f ON f.id = s.file_id "
                f"WHERE {where}", params)
        }
        kinds = query.event_kinds()
        matched_kinds: dict[int, list[str]] = {fid: [] for fid in candidates}
        if kinds:
            tparams: list[SqlValue] = []
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
                eparams: list[SqlValue] = [p for _k, _c, ps in kinds for p in ps]
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
                        "s_path.text, s_argv.text, e.flags, s_addr.text, e.port, s_proto.text, "
                        "e.tampered "
                        f"{select} ORDER BY e.time_ns, e.seq LIMIT ?",
                        [fid, *eparams, limit])]
            matches.append(Match(session, total, events, matched_kinds[fid]))
        matches.sort(key=lambda m: (m.session.start_ns, m.session.file))
        return matches

    @staticmethod
    def _event(r: _EventCols) -> EventRow:
        return EventRow(
            type=TYPE_NAMES.get(r[0], f"type_{r[0]}"), time_ns=r[1], pid=r[2], ppid=r[3],
            comm=r[4], return_code=r[5], path=r[6],
            argv=None if r[7] is None else json.loads(r[7]), flags=r[8], dst_addr=r[9],
            dst_port=r[10], protocol=r[11], tampered=bool(r[12]),
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

