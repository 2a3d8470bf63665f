"""recorder/ringbuf.py on a memfd laid out like the kernel's mapping: a
consumer page, a producer page, then the data pages twice in a row."""

from __future__ import annotations

import mmap
import os
import struct

import pytest

from recorder.ringbuf import BUSY, DISCARD, RingReader

PAGE = mmap.PAGESIZE
SIZE = PAGE  # one data page


class FakeRing:
    def __init__(self) -> None:
        self.fd = os.memfd_create("ring")
        os.ftruncate(self.fd, 2 * PAGE + 2 * SIZE)
        self.data = bytearray(SIZE)
        self.prod = 0

    def put(self, payload: bytes, flags: int = 0, at: int | None = None) -> None:
        pos = self.prod if at is None else at
        rec = struct.pack("<II", len(payload) | flags, 0) + payload
        rec += b"\0" * (-len(rec) % 8)
        for i, b in enumerate(rec):
            self.data[(pos + i) % SIZE] = b
        self.prod = pos + len(rec)
        self.sync()

    def sync(self) -> None:
        os.pwrite(self.fd, struct.pack("<Q", self.prod), PAGE)
        os.pwrite(self.fd, bytes(self.data) * 2, 2 * PAGE)

    def consumer_pos(self) -> int:
        return int(struct.unpack("<Q", os.pread(self.fd, 8, 0))[0])

    def set_consumer(self, pos: int) -> None:
        os.pwrite(self.fd, struct.pack("<Q", pos), 0)


@pytest.fixture
def ring() -> FakeRing:
    return FakeRing()


def drain(r: RingReader, limit: int = 65536, max_bytes: int = 1 << 20) -> list[bytes]:
    got: list[bytes] = []
    r.drain(lambda v, off, n: got.append(bytes(v[off + 8 : off + 8 + n])), limit, max_bytes)
    return got


def test_records_in_order_and_consumer_published(ring: FakeRing) -> None:
    reader = RingReader(ring.fd, SIZE)
    ring.put(b"one")
    ring.put(b"second record")
    assert drain(reader) == [b"one", b"second record"]
    assert ring.consumer_pos() == ring.prod
    assert drain(reader) == []


def test_busy_record_stops_the_drain_until_committed(ring: FakeRing) -> None:
    reader = RingReader(ring.fd, SIZE)
    ring.put(b"done")
    start = ring.prod
    ring.put(b"in progress", flags=BUSY)
    assert drain(reader) == [b"done"]
    assert ring.consumer_pos() == start
    ring.put(b"in progress", at=start)  # committed now
    assert drain(reader) == [b"in progress"]


def test_discarded_records_are_skipped(ring: FakeRing) -> None:
    reader = RingReader(ring.fd, SIZE)
    ring.put(b"dropped", flags=DISCARD)
    ring.put(b"kept")
    assert drain(reader) == [b"kept"]


def test_a_record_across_the_end_reads_whole(ring: FakeRing) -> None:
    start = SIZE - 16  # the header fits, the payload wraps
    ring.prod = start
    ring.set_consumer(start)
    reader = RingReader(ring.fd, SIZE)
    payload = bytes(range(40))
    ring.put(payload)
    assert drain(reader) == [payload]
    assert ring.consumer_pos() == start + 8 + 40


def test_limit_bounds_one_drain(ring: FakeRing) -> None:
    reader = RingReader(ring.fd, SIZE)
    for i in range(10):
        ring.put(b"%d" % i)
    # The limit is checked where the position is published (every 4096 records),
    # so a small ring drains whole; what matters is that nothing is skipped.
    assert drain(reader, limit=1) == [b"%d" % i for i in range(10)]


def test_max_bytes_bounds_one_drain(ring: FakeRing) -> None:
    reader = RingReader(ring.fd, SIZE)
    records = [bytes([i]) * 100 for i in range(10)]  # 8 + 100, padded: 112 bytes each
    for r in records:
        ring.put(r)
    # Records that start before the 250th byte: those at 0, 112 and 224.
    assert drain(reader, max_bytes=250) == records[:3]
    assert ring.consumer_pos() == 3 * 112
    assert drain(reader) == records[3:]


def test_drain_all_leaves_nothing_behind(ring: FakeRing) -> None:
    """At the end of a session one drain is not enough: it stops at about
    max_bytes (1 MiB), and the ring may hold more."""
    reader = RingReader(ring.fd, SIZE)
    records = [bytes([i]) * 100 for i in range(30)]  # 112 bytes each in the ring
    for r in records:
        ring.put(r)
    got: list[bytes] = []

    def keep(v: memoryview, off: int, n: int) -> None:
        got.append(bytes(v[off + 8 : off + 8 + n]))

    assert reader.pending()
    assert reader.drain(keep, max_bytes=500) == 5  # records at 0, 112, ... 448
    assert reader.pending()
    assert reader.drain_all(keep, max_bytes=500) == 25  # in five drains
    assert got == records and not reader.pending()


def test_size_must_be_a_power_of_two_of_pages(ring: FakeRing) -> None:
    with pytest.raises(ValueError):
        RingReader(ring.fd, 3 * PAGE)
