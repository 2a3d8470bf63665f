"""auditd's events on the replay timeline: `sessrec replay --audit-log`
(docs/AUDIT.md). replay/auditlog.py reads the log; this pairs its syscall
events with the session's and merges the two by time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import TextIO, TypeVar

from replay.auditlog import AuditEvent
from replay.base import Session
from replay.events import with_paths
from replay.text import ascii_safe, encodable, printable
from replay.timeline import EventFilter, Filters, Pacer, Style, format_event, rel_time
from sessrec.event import TYPE_NAMES, Chdir, Connect, Event, Exec, Open

_NUMBER = re.compile(r"[0-9]{1,20}")
_SIGNED = re.compile(r"-?[0-9]{1,20}")

T = TypeVar("T")

# Syscall numbers of the calls sessrec records, for logs without the
# ENRICHED SYSCALL= name; by auditd's arch= value.
_SYSCALLS: Mapping[str, Mapping[str, str]] = {
    "c000003e": {"2": "open", "257": "openat", "437": "openat2", "85": "creat", "59": "execve",
                 "322": "execveat", "42": "connect", "80": "chdir", "81": "fchdir"},
    "c00000b7": {"56": "openat", "437": "openat2", "221": "execve", "281": "execveat",
                 "203": "connect", "49": "chdir", "50": "fchdir"},
}
_SESSREC_TYPE = {"open": "open", "openat": "open", "openat2": "open", "creat": "open",
                 "execve": "exec", "execveat": "exec", "connect": "connect", "chdir": "chdir",
                 "fchdir": "chdir"}
# How far ahead of a session event an audit event is looked for, and how long
# one waits for its session event before it is shown on its own.
LOOKAHEAD_NS = 50_000_000
PAIR_WAIT_NS = 500_000_000

Key = Hashable


def syscall_name(event: AuditEvent) -> str | None:
    rec = event.record("SYSCALL")
    if rec is None:
        return None
    name = rec.interpreted.get("SYSCALL")
    if name:
        return name
    return _SYSCALLS.get(rec.get("arch") or "", {}).get(rec.get("syscall") or "")


def audit_pair_key(event: AuditEvent) -> Key | None:
    """("exec", pid, result) for the audit event of a syscall that sessrec
    also records (exec, open, connect, chdir); None for the others."""
    name = syscall_name(event)
    kind = _SESSREC_TYPE.get(name or "")
    rec = event.record("SYSCALL")
    if kind is None or rec is None:
        return None
    pid, result = rec.get("pid") or "", rec.get("exit") or ""
    if not _NUMBER.fullmatch(pid) or not _SIGNED.fullmatch(result):
        return None  # int() would refuse more than 4,300 digits
    return kind, int(pid), int(result)


def event_pair_key(ev: Event) -> Key | None:
    """The same key for a session event."""
    if isinstance(ev, Exec | Open | Connect | Chdir):
        return TYPE_NAMES[ev.type], ev.pid, ev.ret
    return None


def merge_by_time(events: Iterable[T], event_time: Callable[[T], int],
                  audit: Iterable[AuditEvent], *,
                  event_key: Callable[[T], Key | None] | None = None,
                  audit_key: Callable[[AuditEvent], Key | None] = audit_pair_key,
                  ) -> Iterator[T | AuditEvent]:
    """events (wall-clock ns by event_time) and audit events in one stream,
    by time, lazily. Each input keeps its order, except for pairs:

    With event_key, an audit event with a key goes right before the session
    event with the same key (the same syscall of the same process with the
    same result, as seen by auditd and by sessrec), first come first paired.
    Audit times are taken at syscall entry from a coarse clock and printed in
    ms, so by time alone they land a few ms early, often before other events.
    An audit event whose session event does not come within PAIR_WAIT_NS
    (not recorded, or lost) is shown by time, that late at most."""
    upcoming = iter(audit)
    pending: list[tuple[AuditEvent, Key | None]] = []  # read ahead, in log order
    nxt = next(upcoming, None)
    for ev in events:
        t = event_time(ev)
        while nxt is not None and nxt.time_ns <= t + LOOKAHEAD_NS:
            pending.append((nxt, None if event_key is None else audit_key(nxt)))
            nxt = next(upcoming, None)
        if pending:
            keep: list[tuple[AuditEvent, Key | None]] = []
            for a, k in pending:
                due = a.time_ns + (PAIR_WAIT_NS if k is not None else 0)
                if due <= t:
                    yield a
                else:
                    keep.append((a, k))
            pending = keep
            key = None if event_key is None else event_key(ev)
            if key is not None:
                for i, (a, k) in enumerate(pending):
                    if k == key:
                        del pending[i]
                        yield a
                        break
        yield ev
    for a, _ in pending:
        yield a
    while nxt is not None:
        yield nxt
        nxt = next(upcoming, None)


def audit_failed(event: AuditEvent) -> bool:
    """res=failed (user records) or success=no (syscalls)."""
    res = event.value("res")
    return event.value("success") == "no" or res in ("failed", "0")


def keep_audit(event: AuditEvent, filters: Filters, wall_ns: int) -> bool:
    """The replay filters that apply to an audit event: --pid (that process
    only, as auditd names no parent), --failed, --since and --until. The
    event filters (--type, --path, --dest) leave audit events alone."""
    ts = event.time_ns - wall_ns
    if filters.pid is not None and event.pid != filters.pid:
        return False
    if filters.failed and not audit_failed(event):
        return False
    if filters.since is not None and ts < filters.since:
        return False
    return filters.until is None or ts <= filters.until


def format_audit(event: AuditEvent, wall_ns: int, style: Style) -> str:
    """A timeline line for an audit event, in the columns of the others."""
    who = str(event.pid) if event.pid is not None else "-"
    comm = printable(event.value("comm") or "")
    kind = style.fail(f"{'audit':<7}") if audit_failed(event) else f"{'audit':<7}"
    return (f"{style.dim(f'{rel_time(event.time_ns - wall_ns):>9}')} {who:>7} {comm:<15} "
            f"{kind} {printable(event.summary())}")


def write_merged_timeline(session: Session, out: TextIO, audit: Iterable[AuditEvent], *,
                          filters: Filters | None = None, style: Style | None = None,
                          pacer: Pacer | None = None) -> int:
    """write_timeline (replay.timeline) with audit events interleaved by
    time; returns the number of lines."""
    filters = filters or Filters()
    style = style or Style(False)
    keep = EventFilter(filters, session.header["leader_pid"])
    wall_ns = session.header["clock"]["wall_ns"]
    safe = encodable(out)
    n = 0
    events = with_paths(session)
    merged = merge_by_time(events, lambda e: wall_ns + e[0].ts, audit,
                           event_key=lambda e: event_pair_key(e[0]))
    for item in merged:
        if isinstance(item, AuditEvent):
            if not keep_audit(item, filters, wall_ns):
                continue
            ts = item.time_ns - wall_ns
            line = format_audit(item, wall_ns, style)
        else:
            ev, path = item
            if not keep(ev, path):
                continue
            ts = ev.ts
            line = format_event(ev, path, style)
        if pacer is not None:
            pacer.wait(ts)
            out.write((line if safe else ascii_safe(line)) + "\n")
            out.flush()
        else:
            out.write((line if safe else ascii_safe(line)) + "\n")
        n += 1
    return n
