"""recorder.record's Dispatcher and SessionSink without a kernel: ring
records (the real ones of raw-abi2.bin, the recorder's ABI) laid out as in a
session's ring, counted, and copied with their ring frame into the session
file, where the reader decodes them. The kernel tier drains real rings."""

from __future__ import annotations

import struct
from pathlib import Path

from srec_util import HEADER, TRAILER, as_written, capture, from_json, read_all

from recorder.record import Dispatcher, SessionSink
from recorder.ringbuf import BUSY, DISCARD
from recorder.writer import SessionWriter
from sessrec import records
from sessrec.event import EventFlag, make

CGROUP_AT = records.HEADER.offsets()["cgroup_id"]


class Ring:
    """recs laid out as in a BPF ring (recorder/ringbuf.py): 8-byte header
    (length and flags, page offset), the record, padding to 8 bytes; a
    record may be marked discarded, and the last one still busy."""

    def __init__(self, recs: list[bytes], discard: int = -1, busy_last: bool = False) -> None:
        data = bytearray()
        for i, r in enumerate(recs):
            flags = DISCARD if i == discard else 0
            if busy_last and i == len(recs) - 1:
                flags |= BUSY
            data += struct.pack("<II", len(r) | flags, 0xAB) + r + b"\xee" * (-len(r) % 8)
        self.view = memoryview(bytes(data))
        self.cons = 0

    def span(self, max_bytes: int) -> tuple[memoryview, int, int, int, int]:
        return self.view, 0, (1 << 30) - 1, self.cons, min(len(self.view), self.cons + max_bytes)

    def publish(self, pos: int) -> None:
        self.cons = pos


def test_records_are_copied_framed_and_counted(tmp_path: Path) -> None:
    raw, expected = capture("raw-abi2")
    assert expected["abi_version"] == records.ABI_VERSION
    cg = struct.unpack_from("<Q", raw[0], CGROUP_AT)[0]
    other = bytearray(raw[0])
    struct.pack_into("<Q", other, CGROUP_AT, cg + 1)  # another session's
    unknown = bytearray(raw[0])
    unknown[0] = 77
    short = raw[0][: records.HEADER_SIZE + 4]  # an exec record cut short
    flagged = bytearray(raw[9])  # an open
    assert flagged[0] == records.OPEN
    flagged[2] = EventFlag.PATH_TRUNCATED
    feed = [*raw, bytes(unknown), short, bytes(other), bytes(flagged), raw[0]]

    path = tmp_path / "s.srec"
    clock = {**HEADER["clock"], "mono_ns": expected["mono_origin_ns"]}
    w = SessionWriter(path, {**HEADER, "abi_version": records.ABI_VERSION, "clock": clock})
    d = Dispatcher()
    sink = SessionSink(cg, w)
    d.sinks[cg] = sink
    # `other` is discarded (bpf_ringbuf_discard), the last record still busy.
    r = Ring(feed, discard=len(raw) + 2, busy_last=True)
    assert d.drain(r, cg, 1 << 20) == len(feed) - 1  # stops at the busy record
    assert r.cons < len(r.view)
    w.close(TRAILER)

    assert d.orphan_records == 0
    assert sink.unknown == 2  # the unknown type and the short record: not written
    want: dict[int, int] = {}
    for e in expected["events"]:
        if e:  # not an argv part: those count with their exec
            want[e[0]] = want.get(e[0], 0) + 1
    want[records.OPEN] += 1
    assert sink.counts == want
    assert (sink.truncated_path, sink.truncated_argv) == (1, 0)
    got, s = read_all(path)
    assert got[:-1] == [as_written(make(from_json(e))) for e in expected["events"] if e]
    assert got[-1][7] == EventFlag.PATH_TRUNCATED
    assert s.unknown_types == {} and s.damage is None


def test_a_ring_without_its_session_is_drained_and_counted() -> None:
    raw, _ = capture("raw-abi2")
    d = Dispatcher()
    r = Ring(raw[:5])
    assert d.drain(r, 12345, 1 << 20) == 5
    assert d.orphan_records == 5 and r.cons == len(r.view)
