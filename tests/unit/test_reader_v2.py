"""Format 2 (replay/v2.py): RECORDS chunks, the ring's records as the recorder
copies them, decoded when read; the golden v2.0 file; hostile records."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from srec_util import (
    GOLDEN_DIR,
    HEADER,
    as_written,
    capture,
    chunk,
    header_bytes,
    pack,
    plain,
    read_all,
    trailer_and_footer,
)

from replay.info import session_info
from replay.jsonl import write_jsonl
from replay.reader import open_session
from sessrec import format as fmt
from sessrec import records
from sessrec.errors import FormatError

GOLDEN_2_0 = GOLDEN_DIR / "v2.0-records.srec"
RECORDS = fmt.ChunkKind.RECORDS
ORIGIN = HEADER["clock"]["mono_ns"]


def frames(*recs: bytes) -> bytes:
    return b"".join(fmt.RECORD_FRAME.pack(len(r), 0) + r for r in recs)


def v2_file(tmp_path: Path, *body: bytes, header: dict[str, Any] | None = None) -> Path:
    h = {"k": "header", "format": [2, 0], **(header or HEADER)}
    data = fmt.pack_preamble(2, 0) + chunk(fmt.ChunkKind.HEADER, pack(h)) + b"".join(body)
    p = tmp_path / "v2.srec"
    p.write_bytes(data + trailer_and_footer(len(data)))
    return p


def record(t: int, body: bytes, tail: bytes = b"", ts: int = ORIGIN + 5) -> bytes:
    """A raw record: the header of bpf/sessrec.h, a body, a variable tail."""
    hdr = struct.pack(records.HEADER.fmt, t, 0, 0, ts, 9876, 1000, 1001, 1, 0, b"sh")
    return hdr + body + tail


def open_record(path: bytes, path_len: int | None = None) -> bytes:
    n = len(path) if path_len is None else path_len
    body = struct.pack(records.ABI_1.types[records.OPEN].body.fmt, 3, -100, 0, 0, 1, n)
    return record(records.OPEN, body, path)


# --- the golden file of 2.0: read forever ---


def test_golden_v2_0_holds_the_captured_records() -> None:
    raw, expected = capture()
    assert expected["mono_origin_ns"] != 0
    with open_session(GOLDEN_2_0) as s:
        assert s.format_version == "2.0"
        got = [plain(as_written(e)) for e in s.records()]
        assert s.stats_lost == {"open": 3}
        assert s.damage is None and s.unknown_types == {}
    assert got == expected["events"]
    assert len(got) == len(raw) == 106


def test_golden_v2_0_outputs() -> None:
    info = session_info(GOLDEN_2_0)
    expected = json.loads((GOLDEN_DIR / "v2.0-records.info.json").read_text(encoding="utf-8"))
    assert info == expected and list(info) == list(expected)
    out = io.StringIO()
    with open_session(GOLDEN_2_0) as s:
        write_jsonl(s, out)
    assert out.getvalue() == (GOLDEN_DIR / "v2.0-records.jsonl").read_text(encoding="utf-8")


def test_golden_v2_0_chunks_are_records_then_stats_then_records() -> None:
    data = GOLDEN_2_0.read_bytes()
    kinds, at = [], fmt.PREAMBLE.size
    while fmt.FRAME_HEAD.unpack_from(data, at)[0] == fmt.DESCRIPTOR_MAGIC:
        _, _, kind, clen, _ = fmt.DESCRIPTOR.unpack_from(data, at)
        kinds.append(kind)
        at += fmt.DESCRIPTOR.size + clen
    assert kinds == [fmt.ChunkKind.HEADER, RECORDS, fmt.ChunkKind.EVENTS, RECORDS,
                     fmt.ChunkKind.TRAILER]


# --- records as the reader meets them ---


def test_records_decode_with_the_header_origin(tmp_path: Path) -> None:
    p = v2_file(tmp_path, chunk(RECORDS, frames(open_record(b"/etc/passwd"),
                                               open_record(b"rel", ))))
    got, s = read_all(p)
    assert [(e[0], e[1], e[2], e[3], e[6], e[11]) for e in got] == [
        (4, 5, 1000, 1001, b"sh", b"/etc/passwd"), (4, 5, 1000, 1001, b"sh", b"rel")]
    assert s.counts["open"] == 2 and s.damage is None


def test_a_record_of_an_unknown_type_is_counted_and_skipped(tmp_path: Path) -> None:
    unknown = record(77, b"something newer")
    p = v2_file(tmp_path, chunk(RECORDS, frames(unknown, open_record(b"/x"))))
    got, s = read_all(p)
    assert [e[11] for e in got] == [b"/x"]
    assert s.unknown_types == {77: 1}


@pytest.mark.parametrize("body, words", [
    (frames(open_record(b"/x"))[:-1], "overruns"),  # the last frame is cut short
    (frames(open_record(b"/x")) + b"\x01\x00", "cut short"),  # half a frame header
    (struct.pack("<II", 0xC0000010, 0) + bytes(16), "overruns"),  # ring flag bits set
    (frames(open_record(b"/x", path_len=300)), "malformed record"),  # path beyond it
    (frames(open_record(b"/x" * 3000, path_len=6000)), "malformed record"),  # over PATH_MAX
    (frames(record(records.OPEN, b"")), "malformed record"),  # no body
    (frames(b"\x04\x00"), "malformed record"),  # not even a header
])
def test_hostile_records_are_corruption(tmp_path: Path, body: bytes, words: str) -> None:
    p = v2_file(tmp_path, chunk(RECORDS, frames(open_record(b"/first"))), chunk(RECORDS, body))
    with pytest.raises(FormatError, match=words):
        read_all(p)
    got, s = read_all(p, strict=False)
    assert [e[11] for e in got][:1] == [b"/first"]  # what came before is kept
    assert s.damage is not None and not s.damage.truncated and words in s.damage.reason


def test_an_exec_argv_beyond_the_limit_is_corruption(tmp_path: Path) -> None:
    argv = b"a\0" * 20000  # 40,000 bytes: more than ARGV_MAX (32 KiB)
    body = struct.pack(records.ABI_1.types[records.EXEC].body.fmt, 0, 20000, 2, len(argv),
                       1000, 0, 0)
    p = v2_file(tmp_path, chunk(RECORDS, frames(record(records.EXEC, body, b"/x" + argv))))
    with pytest.raises(FormatError, match="malformed record"):
        read_all(p)


def test_records_of_another_abi_are_refused(tmp_path: Path) -> None:
    p = v2_file(tmp_path, header={**HEADER, "abi_version": 99})
    with pytest.raises(FormatError, match="BPF ABI 99; this sessrec decodes ABI 1, 2"):
        open_session(p)


def test_a_records_chunk_in_a_version_1_file_is_corruption(tmp_path: Path) -> None:
    data = header_bytes(1, 1) + chunk(RECORDS, frames(open_record(b"/x")))
    p = tmp_path / "v1.srec"
    p.write_bytes(data + trailer_and_footer(len(data)))
    with pytest.raises(FormatError, match="chunk kind 4 does not exist in format 1"):
        read_all(p)
