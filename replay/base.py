"""What every version's reader provides: the Session interface and Damage.

Shared by replay.reader (which dispatches) and replay.vN (which implement), so
neither imports the other's internals."""

from __future__ import annotations

import abc
import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from types import TracebackType

from sessrec.event import TYPE_NAMES, Event
from sessrec.format import Gap, GapSpan, Header, Trailer


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while objects that all stay alive
    are made (a chunk's events, a process model): its passes over them would
    find nothing, and cost a fifth of reading a chunk and more than half of
    `sessrec tree` on a million events.

    At the end the objects made go to the oldest generation at once
    (gc.freeze, then gc.unfreeze: two list splices) instead of waiting in
    the youngest, whose next pass would go over every one of them: a tenth
    of `export --format jsonl`."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


@dataclass(frozen=True, slots=True)
class Damage:
    """Where a file stops being readable, and why.

    truncated: the file simply ends early (a killed recorder, a copy in
    progress); False for corruption found in non-strict mode."""

    offset: int
    reason: str
    truncated: bool = True

    def __str__(self) -> str:
        what = "truncated" if self.truncated else "damaged"
        return f"{what} at byte {self.offset}: {self.reason}"

    def warning(self, path: str, events: int) -> str:
        """The one-line warning callers print after showing what was read."""
        return f"{path}: {self}; showing the {events} events before it"

    def as_dict(self) -> dict[str, object]:
        return {"offset": self.offset, "reason": self.reason}


def describe_gap(gap: Gap | GapSpan) -> str:
    """A stretch of a session whose events are missing (a "gap" map, format
    2.1), for people: every read command says it the same way."""
    dropped = sum((gap.get("dropped") or {}).values())
    what = f"{dropped} events not written" if dropped else "events missing"
    why = {"restart": "no daemon was recording", "output-error": "the file could not be "
           "written"}.get(gap["reason"], gap["reason"])
    return (f"gap from +{gap['ts'] / 1e9:.3f} s to +{gap['end'] / 1e9:.3f} s: {what} "
            f"({why}: {gap['detail']})")


class Session(abc.ABC):
    """An open session file. Use as a context manager.

    header: the validated header map (unknown extra keys kept).
    records(): the raw event arrays (format.EVENT_FIELDS layout), in file order.
    After records() is exhausted: trailer (None if the file has none), damage
    (None if the file was read to a valid end), stats_lost (latest cumulative
    lost counts by type name), counts (events yielded by type name),
    unknown_types (skipped events by unknown type number)."""

    def __init__(self, path: str, version: tuple[int, int], strict: bool):
        self.path = path
        self.version = version
        self.strict = strict
        self.header: Header  # set by the reader, which validated it
        self.trailer: Trailer | None = None
        self.damage: Damage | None = None
        self.stats_lost: dict[str, int] = {}
        self.gaps: list[Gap] = []  # "gap" maps (2.1), in file order
        self.unknown_types: dict[int, int] = {}
        self.unknown_records = 0
        self._counts: dict[int, int] = {}
        # What the read side's own bounds left out, asked after reading
        # (PathResolver.for_session adds its limit_warning).
        self.limited: list[Callable[[], str | None]] = []

    def records(self, follow: bool = False, poll_interval: float = 0.2) -> Iterator[Event]:
        """Iterate the events. Each call starts again after the header.

        follow=True: at the end of the data, wait poll_interval seconds and look
        again, until the trailer arrives (or KeyboardInterrupt)."""
        # Flattened in C: no generator's resumption per event.
        return chain.from_iterable(self.batches(follow, poll_interval))

    @abc.abstractmethod
    def batches(self, follow: bool = False, poll_interval: float = 0.2) -> Iterator[list[Event]]:
        """records' events in the lists they are read in (a few thousand at
        a time)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    @property
    def counts(self) -> dict[str, int]:
        """Events yielded so far by type name, every known type present."""
        return {name: self._counts.get(t, 0) for t, name in TYPE_NAMES.items()}

    @property
    def events_read(self) -> int:
        return sum(self._counts.values())

    @property
    def position(self) -> int:
        """How far into the file reading has got, in bytes (for progress
        bars); 0 when the reader cannot tell."""
        return 0

    @property
    def format_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    def damage_warning(self) -> str | None:
        """The warning to print, or None if the file was read to a valid end."""
        if self.damage is None:
            return None
        return self.damage.warning(self.path, self.events_read)

    def limit_warnings(self) -> list[str]:
        """What the read side's bounds left out (the warnings of limited)."""
        return [w for w in (warning() for warning in self.limited) if w]

    def warnings(self) -> list[str]:
        """What a command prints after reading: damage_warning, then
        limit_warnings."""
        damage = self.damage_warning()
        return ([damage] if damage else []) + self.limit_warnings()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
