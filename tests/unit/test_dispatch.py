"""recorder.record's Dispatcher and SessionSink without a kernel: ring
records (the real ones of raw-abi2.bin, the recorder's ABI) routed by cgroup, counted, and copied
with their ring frame into the session file, where the reader decodes them."""

from __future__ import annotations

import struct
from pathlib import Path

from srec_util import HEADER, TRAILER, as_written, capture, from_json, read_all

from recorder.record import Dispatcher, SessionSink
from recorder.writer import SessionWriter
from sessrec import records
from sessrec.event import EventFlag, make

CGROUP_AT = records.HEADER.offsets()["cgroup_id"]


def ring(recs: list[bytes]) -> tuple[memoryview, list[tuple[int, int]]]:
    """recs laid out as in the ring: 8-byte header (length, page offset), the
    record, padding to 8 bytes; with (offset, length) for each."""
    data, where = bytearray(), []
    for r in recs:
        where.append((len(data), len(r)))
        data += struct.pack("<II", len(r), 0xAB) + r + b"\xee" * (-len(r) % 8)
    return memoryview(bytes(data)), where


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
    feed = [*raw, bytes(other), bytes(unknown), short, bytes(flagged)]

    path = tmp_path / "s.srec"
    clock = {**HEADER["clock"], "mono_ns": expected["mono_origin_ns"]}
    w = SessionWriter(path, {**HEADER, "abi_version": records.ABI_VERSION, "clock": clock})
    d = Dispatcher()
    sink = SessionSink(cg, w)
    d.sinks[cg] = sink
    view, where = ring(feed)
    for off, n in where:
        d(view, off, n)
    w.close(TRAILER)

    assert d.orphan_records == 1
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
