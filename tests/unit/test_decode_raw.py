"""The ring-buffer decoder on raw records captured from a real kernel
(tests/golden/capture_raw.py), so decoding is tested without root or BPF."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from srec_util import as_written, from_json, raw_records

from sessrec import records
from sessrec.event import event_problem, make

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CAPTURES = sorted(GOLDEN.glob("raw-abi*.bin"))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.stem)
def test_captured_records_decode_as_recorded(capture: Path) -> None:
    expected = json.loads(capture.with_suffix(".json").read_text())
    dec = records.Decoder(expected["mono_origin_ns"], records.ABIS[expected["abi_version"]])
    got = [dec.decode(r) for r in raw_records(capture)]
    # Compared as a file of their version holds them (fields of later
    # versions left out); an argv part decodes to CONSUMED ([] in the json).
    assert [None if e is None else as_written(e) if e else [] for e in got] == [
        as_written(make(from_json(e))) if e else [] for e in expected["events"]]
    assert dec.unknown == dec.malformed == 0
    for ev in got:
        assert ev is not None
        if ev is not records.CONSUMED:  # an argv part, joined to its exec
            assert event_problem(ev) is None  # every decoded event is valid in the file format


def test_capture_covers_every_event_type() -> None:
    seen = set()
    for capture in CAPTURES:
        seen |= {r[0] for r in raw_records(capture)}
    assert seen == set(records.BODIES)


def test_comm_ends_at_its_first_nul() -> None:
    """A kernel that does not pad comm (5.10's strlcpy) leaves an older
    name's bytes after the NUL: the programs copy all 16, the event has the
    name only (kernel-matrix, debian11: 'opens\\0\\0\\0oot')."""
    at = records.HEADER.offsets()["comm"]
    for capture in CAPTURES:
        expected = json.loads(capture.with_suffix(".json").read_text())
        dec = records.Decoder(expected["mono_origin_ns"], records.ABIS[expected["abi_version"]])
        for raw in raw_records(capture):
            comm = b"opens\0\0\0oot".ljust(records.COMM_LEN, b"\0")
            stale = raw[:at] + comm + raw[at + records.COMM_LEN:]
            ev = dec.decode(stale)
            assert ev is not None
            if ev is not records.CONSUMED:
                assert ev.comm == b"opens"


def test_short_and_unknown_records_are_counted_not_raised() -> None:
    dec = records.Decoder(0, records.ABI_1)
    raw = raw_records(CAPTURES[0])[0]
    assert dec.decode(raw[:10]) is None
    assert dec.malformed == 1
    assert dec.decode(struct.pack("<H", 99) + raw[2:]) is None
    assert dec.unknown == 1
    # A body cut short (header intact) is malformed, not an exception.
    assert dec.decode(raw[: records.HEADER_SIZE + 2]) is None
    assert dec.malformed == 2
