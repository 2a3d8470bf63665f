"""Fuzzing every read command with generated session files (hypothesis):
header, EVENTS and RECORDS chunks, trailer and footer, each valid, nearly
valid or garbage, then maybe cut short or bit-flipped. Whatever the file,
each command exits 0 (showing what it could read, with at most warnings) or
1 with one error line: never a traceback.

A short budget runs with the unit tier; tests/fuzz/run runs the same test
with a long one (SESSREC_FUZZ_EXAMPLES)."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Any

from hostile import READ_COMMANDS, VERIFY_STATUSES, chunk, header_map, pack, trailer_map
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from srec_util import HEADER

from sessrec import format as fmt
from sessrec import records
from sessrec.cli import main

EXAMPLES = int(os.environ.get("SESSREC_FUZZ_EXAMPLES", "30"))

# READ_COMMANDS, with info and replay given more of their options.
COMMANDS = (
    ["info", "--check", "--json"],
    ["replay", "--failed", "--pid", "1000", "--children", "--color=always"],
    *(c for c in READ_COMMANDS if c[0] not in ("info", "replay")),
)
STATUSES = {"verify": (1, *VERIFY_STATUSES)}  # 1: not a session file at all

I64 = st.integers(-(2**63), 2**63 - 1)
ANY_INT = st.one_of(st.integers(-300, 300), I64, st.integers(0, 2**64 - 1))
SCALAR = st.one_of(st.none(), st.booleans(), ANY_INT, st.floats(allow_nan=True),
                   st.text(max_size=12), st.binary(max_size=12))
MSGPACK = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=12)
PIDS = st.integers(998, 1004)


@st.composite
def event_array(draw: st.DrawFn) -> list[Any]:
    """An EVENTS chunk's array: a well-formed event of any type with
    extreme values, or one with a field of the wrong type, or anything."""
    t = draw(st.integers(0, 8))
    common = [t, draw(ANY_INT), draw(PIDS), draw(PIDS), draw(PIDS), draw(ANY_INT),
              draw(st.binary(max_size=17)), draw(st.integers(0, 7))]
    bodies: dict[int, list[Any]] = {
        1: [draw(PIDS)],
        2: [draw(ANY_INT), draw(st.binary(max_size=20)),
            draw(st.lists(st.binary(max_size=8), max_size=4)), draw(ANY_INT), draw(PIDS),
            draw(st.integers(0, 3))],
        3: [draw(ANY_INT)],
        4: [draw(ANY_INT), draw(st.integers(0, 5)), draw(ANY_INT), draw(st.binary(max_size=20)),
            draw(ANY_INT), draw(ANY_INT)],
        5: [draw(ANY_INT), draw(ANY_INT), draw(ANY_INT), draw(ANY_INT),
            draw(st.binary(max_size=30))],
        6: [draw(ANY_INT), draw(ANY_INT), draw(st.binary(max_size=20))],
    }
    ev = common + bodies.get(t, []) + draw(st.lists(MSGPACK, max_size=2))
    if rare(draw, 25) and ev:
        ev[draw(st.integers(0, len(ev) - 1))] = draw(MSGPACK)
    elif rare(draw, 25):
        return draw(st.lists(MSGPACK, max_size=4))
    return ev


@st.composite
def ring_record(draw: st.DrawFn) -> bytes:
    """A framed RECORDS record: a known type with any values and lengths,
    or an unknown type, or any bytes; its frame's length maybe wrong."""
    t = draw(st.integers(0, 8))
    mono = HEADER["clock"]["mono_ns"]
    ts = draw(st.one_of(st.just(mono + 5), st.integers(0, 2**64 - 1)))
    head = struct.pack(records.HEADER.fmt, t, draw(st.integers(0, 7)), 0, ts, 9876,
                       draw(PIDS), draw(PIDS), draw(PIDS), 0, draw(st.binary(max_size=16)))
    rt = records.CURRENT.types.get(t)
    if rt is None or rare(draw, 10):
        body = draw(st.binary(max_size=64))
    else:
        tail = draw(st.binary(max_size=48))
        values = []
        for name, code in rt.body.fields:
            if code.endswith("s"):
                values.append(draw(st.binary(max_size=int(code[:-1]))))
            elif name.endswith("_len"):  # mostly within the tail
                values.append(draw(st.integers(0, 2**16 - 1)) if rare(draw, 10)
                              else draw(st.integers(0, len(tail) // 2)))
            else:
                size = struct.calcsize("<" + code)
                signed = code.islower()
                lo, hi = (-(2 ** (8 * size - 1)), 2 ** (8 * size - 1) - 1) if signed \
                    else (0, 2 ** (8 * size) - 1)
                values.append(draw(st.integers(lo, hi)))
        body = struct.pack(rt.body.fmt, *values) + tail
    rec = head + body
    length = draw(st.integers(0, 2**32 - 1)) if rare(draw, 20) else len(rec)
    return fmt.RECORD_FRAME.pack(length, 0) + rec


def _raw_chunk(kind: int, raw: bytes, lie: int | None) -> bytes:
    data = chunk(kind, raw)
    if lie is None:
        return data
    # a descriptor whose lengths lie
    return fmt.pack_descriptor(kind, len(data) - fmt.DESCRIPTOR.size, lie) + \
        data[fmt.DESCRIPTOR.size:]


def rare(draw: st.DrawFn, n: int) -> bool:
    """True about once in n draws. (Not on 0 or n: hypothesis draws the ends
    of a range far more often.)"""
    return draw(st.integers(0, n)) == n // 2


def lie(draw: st.DrawFn) -> int | None:
    return draw(st.integers(0, 2**32 - 1)) if rare(draw, 12) else None


@st.composite
def session_file(draw: st.DrawFn) -> bytes:
    major = draw(st.sampled_from([1, 3])) if rare(draw, 10) else 2
    data = fmt.pack_preamble(major, draw(st.integers(0, 2)))
    header = header_map()
    if rare(draw, 8):
        header.update(draw(st.dictionaries(st.sampled_from([*sorted(header), "x"]), MSGPACK,
                                           max_size=2)))
    header["format"] = [major, 0]
    raw = draw(st.binary(max_size=64)) if rare(draw, 12) else pack(header)
    data += _raw_chunk(fmt.ChunkKind.HEADER, raw, lie(draw))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([1, 3, 9])) if rare(draw, 10) else draw(st.sampled_from([2, 4]))
        if kind == fmt.ChunkKind.EVENTS:
            objs = []
            for _ in range(draw(st.integers(0, 12))):
                if rare(draw, 8):
                    objs.append({"k": "stats", "ts": draw(ANY_INT), "lost": draw(
                        st.dictionaries(st.text(max_size=5), ANY_INT, max_size=3))})
                else:
                    objs.append(draw(MSGPACK) if rare(draw, 30) else draw(event_array()))
            raw = pack(*objs)
        elif kind == fmt.ChunkKind.RECORDS:
            raw = b"".join(draw(st.lists(ring_record(), max_size=12)))
        else:
            raw = pack(draw(MSGPACK))
        data += _raw_chunk(kind, raw, lie(draw))
    if not rare(draw, 6):
        offset = len(data)
        trailer = trailer_map()
        if rare(draw, 8):
            trailer.update(draw(st.dictionaries(st.sampled_from([*sorted(trailer), "x"]),
                                                MSGPACK, max_size=2)))
        data += _raw_chunk(fmt.ChunkKind.TRAILER, pack(trailer), lie(draw))
        if not rare(draw, 6):
            data += fmt.pack_footer(draw(st.integers(0, 2**64 - 1)) if rare(draw, 6) else offset)
    if rare(draw, 6):
        data = data[:draw(st.integers(0, len(data)))]
    flips = []
    if rare(draw, 5):
        flips = draw(st.lists(st.integers(0, max(0, len(data) * 8 - 1)), max_size=2))
    if data:
        buf = bytearray(data)
        for bit in flips:
            buf[bit // 8] ^= 1 << (bit % 8)
        data = bytes(buf)
    return data


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(session_file())
def test_any_file_gives_output_or_one_error_line(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.srec"
    p.write_bytes(data)
    for cmd in COMMANDS:
        argv = [cmd[0], str(p), *(a.format(tmp=tmp_path) for a in cmd[1:])]
        out, err = io.StringIO(), io.StringIO()
        status = main(argv, stdout=out, stderr=err)
        lines = err.getvalue().splitlines()
        assert status in STATUSES.get(cmd[0], (0, 1)), (argv, status, lines)
        if cmd[0] == "replay":  # how far files get: shown with --hypothesis-show-statistics
            event(f"replay: {status}, {min(out.getvalue().count(chr(10)), 3)}+ lines")
        assert all(line.startswith("sessrec: ") for line in lines), (argv, lines)
        if status == 1 and cmd[0] != "verify" and not (cmd[0] == "info" and "--check" in cmd):
            assert len(lines) == 1 and lines[0].startswith("sessrec: error: "), (argv, lines)
