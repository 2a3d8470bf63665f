"""Text output of `sessrec ls` and `sessrec search`.

Everything shown comes from untrusted files: control characters and escape
sequences are printed escaped, never sent to the terminal."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from replay.index import EventRow, Match, SessionRow, SyncStats, format_time
from replay.text import duration_text, printable
from sessrec import linux
from sessrec.cli import Streams
from sessrec.linux import result


def _start(ns: int) -> str:
    t = format_time(ns, 0)
    return t if t == "?" else t[:10] + " " + t[11:19]


def _table(header: Sequence[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    lines = []
    for r in [list(header), *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def format_sessions(rows: Sequence[SessionRow]) -> str:
    """The `sessrec ls` table (times UTC)."""
    if not rows:
        return ""
    header = ("STARTED (UTC)", "DURATION", "USER", "AUDIT", "HOST", "EVENTS", "EXEC", "OPEN",
              "CONN", "LOST", "STATUS", "SESSION", "FILE")
    table = [
        [
            _start(r.start_ns), duration_text(r.duration_ns), printable(r.user),
            "-" if r.audit_session_id is None else str(r.audit_session_id),
            printable(r.hostname), str(r.total_events), str(r.counts.get("exec", 0)),
            str(r.counts.get("open", 0)), str(r.counts.get("connect", 0)), str(r.lost_total),
            r.status, printable(r.session_id), printable(r.file),
        ]
        for r in rows
    ]
    return _table(header, table, right={1, 5, 6, 7, 8, 9})


def _result(ret: int) -> str:
    return f"= {result(ret)}"


def describe(e: EventRow) -> str:
    """The detail of a searchable event, escaped."""
    text = _describe(e)
    return f"{text} [TAMPERED]" if e.tampered else text


def _describe(e: EventRow) -> str:
    if e.type == "exec":
        argv = e.argv or []
        exe = f" [{e.path}]" if e.path and (not argv or e.path != argv[0]) else ""
        return printable(f"{shlex.join(argv)}{exe} {_result(e.return_code)}")
    if e.type == "open":
        flags = "|".join(linux.open_flag_names(e.flags or 0))
        return printable(f"{e.path} {flags} {_result(e.return_code)}")
    if e.type == "chdir":
        return printable(f"{e.path} {_result(e.return_code)}")
    if e.type == "cgroup":
        return printable(f"moved to cgroup {e.path}")
    if e.type == "connect":
        if e.dst_port is None:
            where = e.dst_addr or "?"
        elif e.dst_addr and ":" in e.dst_addr:
            where = f"[{e.dst_addr}]:{e.dst_port}"
        else:
            where = f"{e.dst_addr}:{e.dst_port}"
        proto = f" {e.protocol}" if e.protocol else ""
        return printable(f"{where}{proto} {_result(e.return_code)}")
    return printable(_result(e.return_code))


def format_matches(matches: Sequence[Match], *, max_events: int | None) -> str:
    """The `sessrec search` text: a line per session, then its matching events."""
    out = []
    for m in matches:
        s = m.session
        out.append(
            f"{printable(s.session_id)}  {printable(s.user)}@{printable(s.hostname)}  "
            f"{_start(s.start_ns)}Z  {duration_text(s.duration_ns)}  {s.status}  "
            f"{printable(s.file)}\n"
        )
        if m.kinds:
            n = m.matched_events
            out.append(f"  matched {', '.join(m.kinds)}: {n} event{'s' if n != 1 else ''}\n")
        if m.events:
            rows = [[format_time(e.time_ns), str(e.pid), printable(e.comm), e.type, describe(e)]
                    for e in m.events]
            out.append("".join("  " + line + "\n"
                               for line in _table(("TIME", "PID", "COMM", "TYPE", "DETAIL"),
                                                  rows, right={1}).splitlines()[1:]))
            more = m.matched_events - len(m.events)
            if more > 0 and max_events is not None:
                out.append(f"  ... {more} more (--max-events 0 shows all)\n")
    return "".join(out)


def warn_sessions(rows: Sequence[SessionRow], io: Streams) -> None:
    """What the read side's bounds left out of each session while it was
    indexed (its relative paths past the path resolver's budget)."""
    for r in rows:
        for warning in r.warnings:
            io.warn(f"{r.file}: {warning}")


def warn_sync(stats: SyncStats, db_path: str, io: Streams) -> None:
    """Warnings about the index update: unreadable files, a corrupt index."""
    for _name, error in stats.unreadable:
        io.warn(f"{printable(error)}; skipped")
    why = stats.rebuilt
    if why is not None and why != "missing" and not why.startswith("schema version"):
        if why != "asked for":
            io.warn(f"the index {printable(db_path)} was {why}; rebuilt it from the files")
    if db_path == ":memory:":
        io.warn("no writable place for the index; it was built in memory for this run")
