"""Extraction: one session file read into the index's rows (replay/index.py's
tables): its summary (replay/summary.py) as a sessions row, and one events
row per searchable event (exec, open, chdir, connect), with text interned in
the strings table."""

from __future__ import annotations

import json
import sqlite3

from replay.events import PathResolver
from replay.index_query import SqlRow, clamp_row
from replay.reader import open_session
from replay.summary import Tally
from replay.trust import kernel_dst, tampered
from sessrec import format as fmt
from sessrec import linux
from sessrec.event import Cgroup, Chdir, Connect, Exec, Open

_BATCH = 5000
_TEXT = fmt.text


class Interner:
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


def index_file(conn: sqlite3.Connection, file_id: int, full: str, intern: Interner) -> str:
    """Read one session file into sessions and events rows; return its session
    id. FormatError/SessrecError if it has no readable header."""
    with open_session(full, strict=False) as session:
        header = session.header
        wall_ns: int = header["clock"]["wall_ns"]
        resolve = PathResolver.for_session(session).apply
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

        batch: list[SqlRow] = []
        row: SqlRow
        tally = Tally(header)
        add = tally.add
        seq = 0
        for ev in session.records():
            seq += 1
            add(ev)
            path = resolve(ev)
            if not isinstance(ev, Exec | Open | Connect | Chdir | Cgroup):
                continue
            comm = comms.get(ev.comm)
            if comm is None:
                comm = comms[ev.comm] = intern(_TEXT(ev.comm))
            ret = 0 if isinstance(ev, Cgroup) else ev.ret
            common = (file_id, seq, ev.type, wall_ns + ev.ts, ev.pid, ev.ppid, comm, ret)
            bad = int(tampered(ev))
            if type(ev) is Open:
                pid_ = path_ids(path if path is not None else ev.requested_path)[0]
                row = (*common, pid_, None, None, None, ev.open_flags, None, None, None, bad)
            elif type(ev) is Exec:
                pid_, name = path_ids(path if path is not None else ev.requested_path)
                key = tuple(ev.argv)
                cmd = argvs.get(key)
                if cmd is None:
                    if len(argvs) >= 1 << 16:
                        argvs.clear()
                    texts = [_TEXT(a) for a in key]
                    cmd = argvs[key] = (intern(" ".join(texts)), intern(json.dumps(texts)))
                row = (*common, pid_, name, *cmd, None, None, None, None, bad)
            elif type(ev) is Connect:
                # The destination the kernel connected to, where it says.
                kdst = kernel_dst(ev)
                ckey = (ev.sockaddr if kdst is None else kdst, ev.sock_type, ev.protocol)
                dest = connects.get(ckey)
                if dest is None:
                    a = linux.decode_sockaddr(ckey[0])
                    proto = linux.protocol_name(a.family, ckey[1], ckey[2])
                    dest = connects[ckey] = (
                        None if a.address is None else intern(a.address), a.port,
                        None if proto is None else intern(proto),
                    )
                row = (*common, None, None, None, None, None, *dest, bad)
            elif type(ev) is Chdir:
                req = ev.requested_path if ev.fd == -1 else b""
                target = path if path is not None else req
                row = (*common, path_ids(target)[0] if target else None, None, None, None,
                       None, None, None, None, bad)
            elif type(ev) is Cgroup:
                row = (*common, intern(_TEXT(ev.dst_path)), None, None, None, None, None, None,
                       None, bad)
            batch.append(row)
            if len(batch) >= _BATCH:
                _insert_events(conn, batch)
                batch = []
        if batch:
            _insert_events(conn, batch)
        summary = tally.summary(session)
        damage = summary.damage
        srow = (
            file_id, header["session_id"], header["user"], header["uid"],
            header["login_uid"], header["audit_session_id"], header["hostname"],
            header["kernel"], json.dumps(header["command"]), _TEXT(header["cwd"]),
            header["started_at"], summary.ended_at, summary.start_ns,
            summary.start_ns if summary.end_ns is None else summary.end_ns,
            summary.exit_status, summary.end_reason, json.dumps(summary.counts),
            json.dumps(summary.lost), session.events_read, summary.lost_total,
            int(summary.complete),
            None if damage is None else damage.offset,
            None if damage is None else damage.reason,
            None if damage is None else int(damage.truncated),
            session.format_version,
            # the damage is in its own columns; the bounds' warnings here
            json.dumps(session.limit_warnings()),
        )
        _insert(conn, f"INSERT INTO sessions VALUES ({', '.join('?' * len(srow))})", [srow])
        sid: str = header["session_id"]
        return sid


_EVENT_INSERT = "INSERT INTO events VALUES (" + ", ".join("?" * 17) + ")"


def _insert_events(conn: sqlite3.Connection, rows: list[SqlRow]) -> None:
    _insert(conn, _EVENT_INSERT, rows)


def _insert(conn: sqlite3.Connection, sql: str, rows: list[SqlRow]) -> None:
    conn.execute("SAVEPOINT batch")
    try:
        conn.executemany(sql, rows)
    except OverflowError:
        # An integer beyond SQLite's 64 bits in a hostile file: undo the rows
        # before it, and clamp.
        conn.execute("ROLLBACK TO batch")
        conn.executemany(sql, [clamp_row(r) for r in rows])
    conn.execute("RELEASE batch")
