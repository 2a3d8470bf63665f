#!/usr/bin/env python3
"""CPU per record of the recorder's drain (recorder/record.py,
Dispatcher.drain), without a kernel: 200,000 real open records (the golden
capture tests/golden/raw-abi2.bin) laid out as in a BPF ring, drained in
1 MiB batches with the buffer emptied after each (as a flush does). Beside
it, interleaved, the per-record callback it replaced (a Python call and a
session lookup per record), kept here to measure against.

    .venv/bin/python bench/drain_cost.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from srec_util import capture  # noqa: E402

from recorder.record import _EXIT, _FRAME, _MIN_SIZE, Dispatcher, SessionSink  # noqa: E402
from recorder.ringbuf import BUSY, DISCARD  # noqa: E402
from sessrec import records  # noqa: E402

_U32 = struct.Struct("<I").unpack_from
_CG = struct.Struct("<Q").unpack_from
_CG_AT = _FRAME + records.HEADER.offsets()["cgroup_id"]


class Ring:
    """A ring's layout in plain memory (what RingReader.span() hands out)."""

    def __init__(self, view: memoryview) -> None:
        self.view, self.cons = view, 0

    def span(self, max_bytes: int) -> tuple[memoryview, int, int, int, int]:
        return self.view, 0, (1 << 40) - 1, self.cons, min(len(self.view), self.cons + max_bytes)

    def publish(self, pos: int) -> None:
        self.cons = pos


class Buffer:
    """The writer's records buffer alone."""

    def __init__(self) -> None:
        self.records = bytearray()

    def begin_records(self) -> bytearray:
        return self.records


def drain(view: memoryview, cg: int, n: int) -> float:
    d, buf = Dispatcher(), Buffer()
    d.sinks[cg] = SessionSink(cg, buf)  # type: ignore[arg-type]
    ring = Ring(view)
    t = time.process_time()
    while ring.cons < len(view):
        d.drain(ring, cg, 1 << 30)  # type: ignore[arg-type]
        buf.records.clear()
    return (time.process_time() - t) / n * 1e9


def per_record_callback(view: memoryview, cg: int, n: int) -> float:
    buf = Buffer()
    sinks = {cg: SessionSink(cg, buf)}  # type: ignore[arg-type]
    exited = set()

    def handle(off: int, size: int) -> None:
        s = sinks.get(_CG(view, off + _CG_AT)[0])
        if s is None:
            return
        start = off + _FRAME
        t = view[start]
        if size < _MIN_SIZE[t] or view[start + 1]:
            s.unknown += 1
            return
        s.per_type[t] += 1
        if t == _EXIT:
            exited.add(s)
        if view[start + 2]:
            s.count_flags(view[start + 2])
        s.records += view[off:start + size]

    t0 = time.process_time()
    cons, k = 0, 0
    while cons < len(view):
        length = _U32(view, cons)[0]
        if length & BUSY:
            break
        size = length & ~(BUSY | DISCARD)
        if not length & DISCARD:
            handle(cons, size)
        cons += (size + 15) & ~7
        k += 1
        if k % 4096 == 0:
            buf.records.clear()
    return (time.process_time() - t0) / n * 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    raw, _ = capture("raw-abi2")
    rec = next(r for r in raw if r[0] == records.OPEN)
    cg = _CG(rec, _CG_AT - _FRAME)[0]
    one = struct.pack("<II", len(rec), 0) + rec + b"\0" * (-len(rec) % 8)
    view = memoryview(one * a.records)
    got: dict[str, list[float]] = {"drain": [], "per-record callback": []}
    for _ in range(a.rounds):
        got["per-record callback"].append(per_record_callback(view, cg, a.records))
        got["drain"].append(drain(view, cg, a.records))
    for name, xs in got.items():
        print(f"{name:20} {statistics.median(xs):6.0f} ns/record (median of {a.rounds}; "
              f"{min(xs):.0f}-{max(xs):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
