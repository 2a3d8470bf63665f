"""A progress bar on stderr for long exports, by bytes of the file read.

Shown only when stderr is a terminal, and only once an export has run for
half a second: short exports and pipelines stay silent."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from replay.base import Session
from sessrec.event import Event

DELAY = 0.5  # seconds an export runs before its bar appears


class Progress:
    """Draws '  42% [########............]  12.3 / 29.0 MB' on one line."""

    def __init__(
        self,
        stream: TextIO,
        total: int,
        *,
        delay: float | None = None,
        interval: float = 0.1,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream
        self.total = max(total, 1)
        self.delay = DELAY if delay is None else delay
        self.interval = interval
        self.width = width
        self.clock = clock
        self.start = clock()
        self.next_draw = self.start + self.delay
        self.drawn = False

    def update(self, done: int) -> None:
        now = self.clock()
        if now < self.next_draw:
            return
        self.next_draw = now + self.interval
        frac = min(max(done / self.total, 0.0), 1.0)
        fill = int(frac * self.width)
        bar = "#" * fill + "." * (self.width - fill)
        self.stream.write(
            f"\r{frac:4.0%} [{bar}] {done / 1e6:7.1f} / {self.total / 1e6:.1f} MB"
        )
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        """Erase the bar, if one was drawn."""
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False


class ProgressSession(Session):
    """A session whose events (batches(), and records() through it) report
    progress as they are read; everything else is the wrapped session's
    (and its state is copied back at the end, so writers can read trailer,
    damage and counts from either)."""

    EVERY = 4096  # events between two looks at the clock

    def __init__(self, inner: Session, progress: Progress):
        super().__init__(inner.path, inner.version, inner.strict)
        self.inner = inner
        self.header = inner.header
        self.progress = progress

    def batches(self, follow: bool = False, poll_interval: float = 0.2
                ) -> Iterator[list[Event]]:
        inner = self.inner
        update = self.progress.update
        n = 0
        try:
            for events in inner.batches(follow=follow, poll_interval=poll_interval):
                yield events
                n += len(events)
                if n >= self.EVERY:
                    n = 0
                    update(inner.position)
        finally:
            self.progress.finish()
            self.trailer = inner.trailer
            self.damage = inner.damage
            self.stats_lost = inner.stats_lost
            self.unknown_types = inner.unknown_types
            self.unknown_records = inner.unknown_records
            self._counts = inner._counts

    @property
    def position(self) -> int:
        return self.inner.position

    def close(self) -> None:
        self.inner.close()


def with_progress(session: Session, stderr: TextIO, stdout: TextIO) -> Session:
    """session, wrapped to draw a progress bar when stderr is a terminal
    (and stdout is not: the bar would tear the output)."""
    if not _isatty(stderr) or _isatty(stdout):
        return session
    try:
        total = os.path.getsize(session.path)
    except OSError:
        return session
    return ProgressSession(session, Progress(stderr, total))


def _isatty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except ValueError:  # a closed stream
        return False
