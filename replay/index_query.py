"""The query of `sessrec search` as SQL over the index (replay/index.py's
tables): its terms are replay/terms.py's (path and command globs,
destinations, times), combined AND across kinds and OR within one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from replay.terms import Dest
from sessrec.event import EventType

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1

# What SQLite stores and gives back (sqlite3's own types), and a row of it.
SqlValue: TypeAlias = int | float | str | bytes | None
SqlRow: TypeAlias = tuple[SqlValue, ...]


def clamp(v: int) -> int:
    """v within SQLite's 64-bit integers."""
    return _I64_MIN if v < _I64_MIN else _I64_MAX if v > _I64_MAX else v


def sql_glob_equivalent(pattern: str) -> bool:
    """Whether SQLite's GLOB matches exactly as fnmatch.fnmatchcase does.

    Both treat * (any run, "/" included) and ? alike and are case-sensitive;
    they differ on bracket expressions ([!a] negates in fnmatch, [^a] in
    SQLite; an unclosed [ is literal in fnmatch only). So: without "[", GLOB."""
    return "[" not in pattern


def _glob_clause(column: str, pattern: str, params: list[SqlValue]) -> str:
    params.append(pattern)
    if sql_glob_equivalent(pattern):
        return f"{column} GLOB ?"
    return f"sessrec_fnmatch(?, {column})"


def _ids(cond: str) -> str:
    """The ids of the strings whose text t matches cond."""
    return f"(SELECT t.id FROM strings t WHERE {cond})"


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
    tampered: bool = False

    def event_kinds(self) -> list[tuple[str, str, list[SqlValue]]]:
        """(kind, SQL condition on events e, params) per event kind in use."""
        kinds: list[tuple[str, str, list[SqlValue]]] = []
        if self.paths:
            params: list[SqlValue] = []
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
        if self.tampered:
            kinds.append(("tampered", "(e.tampered = 1)", []))
        return kinds

    def time_clause(self, column: str, params: list[SqlValue]) -> str:
        parts = []
        if self.since_ns is not None:
            parts.append(f"{column} >= ?")
            params.append(clamp(self.since_ns))
        if self.until_ns is not None:
            parts.append(f"{column} < ?")
            params.append(clamp(self.until_ns))
        return " AND ".join(parts) or "1"

    def session_clause(self, params: list[SqlValue]) -> str:
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
                    params.append(clamp(int(u)))
            parts.append("(" + " OR ".join(ors) + ")")
        if not self.event_kinds():
            # A session overlapping [since, until).
            if self.since_ns is not None:
                parts.append("s.end_ns >= ?")
                params.append(clamp(self.since_ns))
            if self.until_ns is not None:
                parts.append("s.start_ns < ?")
                params.append(clamp(self.until_ns))
        return " AND ".join(parts) or "1"


def clamp_row(row: SqlRow) -> SqlRow:
    return tuple(clamp(v) if type(v) is int else v for v in row)
