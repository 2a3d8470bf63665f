#!/usr/bin/env python3
"""What sealing costs the recorder: a synthetic write loop.

Feeds open records (the ones captured on a real kernel in
tests/golden/raw-abi1.bin, repeated) to recorder.writer.SessionWriter as the
recorder does under the open storm (RECORDS chunks of about 1 MiB, the
writer's max_chunk_bytes), with and without a sealer, interleaved round by
round, and reports the writer's CPU time (process time of this loop) and the
bytes on disk. Then the other end: a quiet session, one small chunk (one
event) per flush, where the seal chunk is most of what is written. No root
needed; the seal key lives in a temporary directory.

    .venv/bin/python bench/seal_cost.py [--events N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from srec_util import HEADER, TRAILER  # noqa: E402

from recorder.writer import SessionWriter  # noqa: E402
from sessrec import format as fmt  # noqa: E402
from sessrec import records, seal  # noqa: E402


def open_records(events: int) -> list[bytes]:
    """`events` open records, each with its ring frame: the captured ones in
    turn, with a timestamp 2 us after the one before (as in the storm, where
    the timestamps are what differs most from record to record)."""
    data = (REPO / "tests" / "golden" / "raw-abi1.bin").read_bytes()
    captured, at = [], 0
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        rec = data[at + 4 : at + 4 + n]
        at += 4 + n
        if rec[0] == records.OPEN:
            captured.append(fmt.RECORD_FRAME.pack(len(rec), 0) + rec)
    ts_at = fmt.RECORD_FRAME.size + records.HEADER.offsets()["ts_ns"]
    ts = struct.unpack_from("<Q", captured[0], ts_at)[0]
    out = []
    for i in range(events):
        rec = bytearray(captured[i % len(captured)])
        struct.pack_into("<Q", rec, ts_at, ts + 2000 * i)
        out.append(bytes(rec))
    return out


def storm(path: Path, sealer: seal.Sealer | None, recs: list[bytes]) -> tuple[float, int]:
    """(CPU seconds, seals) to write the records the way the recorder does."""
    t = time.process_time()
    w = SessionWriter(path, HEADER, sealer=sealer, force=True)
    buf = w.begin_records()
    for rec in recs:
        buf += rec
        if len(buf) >= w.max_chunk_bytes:
            w.flush()
    w.close(TRAILER)
    return time.process_time() - t, sealer.n if sealer else 0


def per_seal(segment: bytes, n: int) -> float:
    """CPU microseconds of one seal of a chunk of len(segment) bytes: hash,
    MAC, the seal map packed and compressed, the next key."""
    w = SessionWriter("/dev/null", HEADER, stream=open(os.devnull, "wb"),
                      sealer=seal.Sealer(b"n" * 16, 0, bytes(32)))
    t = time.process_time()
    for _ in range(n):
        w._seal_chunk(segment)
    return (time.process_time() - t) / n * 1e6


def quiet(path: Path, sealer: seal.Sealer | None, recs: list[bytes], flushes: int) -> None:
    """One event per flush: a session where something happens once a second."""
    w = SessionWriter(path, HEADER, sealer=sealer, force=True)
    buf = w.begin_records()
    for i in range(flushes):
        buf += recs[i % len(recs)]
        w.flush()
    w.close(TRAILER)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    recs = open_records(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        key = str(d / "seal.key")
        seal.create_seal_key(key)
        cpu: dict[str, list[float]] = {"unsealed": [], "sealed": []}
        size: dict[str, int] = {}
        seals = 0
        for _ in range(args.rounds):
            for name in cpu:
                sealer = seal.start_file(key) if name == "sealed" else None
                path = d / f"{name}.srec"
                used, n = storm(path, sealer, recs)
                cpu[name].append(used)
                seals = max(seals, n)
                size[name] = os.path.getsize(path)
        flushes = 3600
        for name in ("unsealed", "sealed"):
            quiet(d / f"q-{name}.srec", seal.start_file(key) if name == "sealed" else None,
                  recs, flushes)
        qsize = {n: os.path.getsize(d / f"q-{n}.srec") for n in ("unsealed", "sealed")}
    med = {n: statistics.median(v) for n, v in cpu.items()}
    chunk = size["unsealed"] // max(seals - 2, 1)
    print(f"open storm, {args.events:,} open records in {seals - 2} chunks of 1 MiB "
          f"({chunk:,} bytes compressed), {args.rounds} rounds interleaved; "
          "writer CPU median (min-max):")
    for n, v in cpu.items():
        print(f"  {n:9} {med[n]:.3f} s ({min(v):.3f}-{max(v):.3f}), {size[n]:,} bytes")
    print(f"  sealing: {med['sealed'] / med['unsealed']:.3f}x CPU, "
          f"+{(med['sealed'] - med['unsealed']) * 1e6 / args.events:.3f} us per event, "
          f"+{size['sealed'] - size['unsealed']:,} bytes "
          f"({(size['sealed'] / size['unsealed'] - 1) * 100:.2f} %)")
    print(f"one seal of a {chunk:,}-byte chunk: {per_seal(bytes(chunk), 2000):.1f} us CPU; "
          f"of a 1 MiB one: {per_seal(bytes(1 << 20), 200):.0f} us")
    extra = (qsize["sealed"] - qsize["unsealed"]) / flushes
    print(f"quiet session, {flushes} flushes of one event: {qsize['unsealed']:,} -> "
          f"{qsize['sealed']:,} bytes, +{extra:.0f} bytes per seal "
          f"(+{extra * 3600 / 1024:.0f} KiB per hour at one flush a second)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
