"""The one summary of a session file: what `sessrec info`, the index of `ls`
and `search`, and the HTML page all show, so that "complete", the duration,
the exit status and the losses mean one thing everywhere.

- complete: the file has its trailer and nothing in it is damaged;
- status: "complete", "truncated" (it ends early: a killed recorder, a copy
  in progress) or "damaged" (corrupt);
- start: the header's clock (wall time of the recording's start); end: the
  trailer's ended_at, or the last event's time when that is later or when
  there is no trailer; duration: end - start;
- exit status: the trailer's; without a trailer, the leader's exit event;
- counts, truncations and unknown types: of the events read, when they were
  read; else the trailer's. Losses: the trailer's, else the latest stats
  record's.

A summary is made from the trailer alone (`info`, which reads no event:
body_checked is False) or from a reading of every event (Tally: the index,
the HTML page, `info` of a file without a trailer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from replay.base import Damage, Session
from replay.terms import parse_instant
from sessrec import linux
from sessrec.event import ARGV_TRUNCATED, PATH_TRUNCATED, TAMPERED, TYPE_NAMES, Event, Exit
from sessrec.format import Gap, GapSpan, Header, Trailer, Truncated


@dataclass(frozen=True)
class SessionSummary:
    header: Header
    trailer: Trailer | None
    format_version: str
    ended_at: str | None  # as the trailer says
    end_reason: str | None
    start_ns: int  # wall time, ns since the epoch
    end_ns: int | None  # None: no trailer and no event
    exit_status: int | None  # as a shell reports it
    counts: dict[str, int]  # every known type name, then any others
    lost: dict[str, int]
    truncated: Truncated
    unknown_types: int
    damage: Damage | None
    # Events flagged tampered (BPF ABI 2, replay/trust.py): the kernel's
    # objects contradict the caller's, or a process left the session's cgroup.
    tampered: int
    events_read: int | None  # None when the events were not read
    body_checked: bool  # whether every event was read (and its chunk checked)
    # Gap maps (format 2.1): the trailer's, or those read in an unfinished file
    gaps: tuple[Gap | GapSpan, ...] = ()

    @property
    def complete(self) -> bool:
        return self.trailer is not None and self.damage is None

    @property
    def status(self) -> str:
        if self.complete:
            return "complete"
        if self.damage is not None and not self.damage.truncated:
            return "damaged"
        return "truncated"

    @property
    def duration_ns(self) -> int | None:
        """None without an end, or when the file's end is before its start."""
        if self.end_ns is None or self.end_ns < self.start_ns:
            return None
        return self.end_ns - self.start_ns

    @property
    def lost_total(self) -> int:
        return sum(v for v in self.lost.values() if v > 0)


def per_type(counts: Mapping[str, int]) -> dict[str, int]:
    """Every known type name (0 if absent), then any others the file has."""
    out = {name: counts.get(name, 0) for name in TYPE_NAMES.values()}
    out.update((k, v) for k, v in counts.items() if k not in out)
    return out


def _end(header: Header, trailer: Trailer | None, last_ts: int | None) -> int | None:
    ends = []
    if trailer is not None:
        ended = parse_instant(trailer["ended_at"])
        if ended is not None:
            ends.append(ended)
    if last_ts is not None:
        ends.append(header["clock"]["wall_ns"] + last_ts)
    return max(ends) if ends else None


def from_trailer(session: Session, trailer: Trailer) -> SessionSummary:
    """The summary of a completed file from its header and trailer, without
    reading its events (body_checked False)."""
    header = session.header
    return SessionSummary(
        header=header, trailer=trailer, format_version=session.format_version,
        ended_at=trailer["ended_at"], end_reason=trailer["end_reason"],
        start_ns=header["clock"]["wall_ns"], end_ns=_end(header, trailer, None),
        exit_status=trailer["exit_status"], counts=per_type(trailer["counts"]),
        lost=per_type(trailer["lost"]), truncated=trailer["truncated"].copy(),
        unknown_types=trailer["unknown_types"], damage=None,
        tampered=trailer.get("tampered", 0), events_read=None,
        body_checked=False, gaps=tuple(trailer.get("gaps", ())),
    )


class Tally:
    """What a summary needs from the events, given one by one as they are
    read (add); summary() once session.records() is exhausted."""

    __slots__ = ("argv_truncated", "exit_status", "last_ts", "leader", "path_truncated",
                 "tampered")

    def __init__(self, header: Header):
        self.leader: int = header["leader_pid"]
        self.last_ts: int | None = None
        self.exit_status: int | None = None
        self.argv_truncated = 0
        self.path_truncated = 0
        self.tampered = 0

    def add(self, ev: Event) -> None:
        ts = ev.ts
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        flags = ev.flags
        if flags:
            self.argv_truncated += bool(flags & ARGV_TRUNCATED)
            self.path_truncated += bool(flags & PATH_TRUNCATED)
            self.tampered += bool(flags & TAMPERED)
        if type(ev) is Exit and ev.pid == self.leader:
            self.exit_status = linux.shell_status(ev.exit_code_raw)

    def summary(self, session: Session) -> SessionSummary:
        header = session.header
        trailer = session.trailer
        lost = per_type(session.stats_lost if trailer is None else trailer["lost"])
        exit_status = self.exit_status if trailer is None else trailer["exit_status"]
        counts = session.counts
        truncated: Truncated = {"argv": self.argv_truncated, "path": self.path_truncated}
        unknown = sum(session.unknown_types.values())
        return SessionSummary(
            header=header, trailer=trailer, format_version=session.format_version,
            ended_at=None if trailer is None else trailer["ended_at"],
            end_reason=None if trailer is None else trailer["end_reason"],
            start_ns=header["clock"]["wall_ns"], end_ns=_end(header, trailer, self.last_ts),
            exit_status=exit_status, counts=counts, lost=lost, truncated=truncated,
            unknown_types=unknown, damage=session.damage, tampered=self.tampered,
            events_read=session.events_read,
            body_checked=True,
            gaps=tuple(session.gaps if trailer is None else trailer.get("gaps", ())),
        )
