"""Damaged and hostile files: truncation anywhere, bit flips, size bombs.

The contract: never a traceback. Either a FormatError with an offset, or the
complete events before the damage plus session.damage."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import zstandard
from srec_util import (
    GOLDEN,
    HEADER,
    TRAILER,
    as_written,
    chunk,
    complete_file,
    ev,
    golden,
    header_bytes,
    pack,
    read_all,
    write_session,
)

from replay.info import session_info
from replay.reader import open_session, read_trailer_fast
from sessrec import format as fmt
from sessrec.errors import FormatError

EVENTS = fmt.ChunkKind.EVENTS
GOLDEN_BYTES = GOLDEN.read_bytes()
GOLDEN_EVENTS = golden.events()


def _header_end(data: bytes) -> int:
    _, _, _, clen, _ = fmt.DESCRIPTOR.unpack_from(data, fmt.PREAMBLE.size)
    return fmt.PREAMBLE.size + fmt.DESCRIPTOR.size + clen


def _read(p: Path, strict: bool) -> tuple[list[Any], Any, FormatError | None]:
    got: list[Any] = []
    try:
        with open_session(p, strict=strict) as s:
            for r in s.records():
                got.append(as_written(r))
    except FormatError as e:
        assert e.offset is not None and e.path == str(p)
        return got, None, e
    return got, s, None


def test_truncated_at_every_byte(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    header_end = _header_end(GOLDEN_BYTES)
    for n in range(len(GOLDEN_BYTES) + 1):
        p.write_bytes(GOLDEN_BYTES[:n])
        for strict in (True, False):
            got, s, err = _read(p, strict)
            if n < header_end:
                assert err is not None, n  # no header: nothing to show
                continue
            assert err is None, (n, err)
            assert got == GOLDEN_EVENTS[: len(got)]
            if n == len(GOLDEN_BYTES):
                assert s.damage is None and got == GOLDEN_EVENTS
            else:
                assert s.damage is not None and s.damage.truncated, n
                assert s.damage.offset <= n
                assert s.damage_warning().startswith(f"{p}: truncated at byte {s.damage.offset}: ")
        if n >= header_end:
            info = session_info(p)
            # complete: a trailer and no damage (replay/summary.py)
            assert info["complete"] == (info["ended_at"] is not None and info["damage"] is None)
            assert (info["damage"] is None) == (n == len(GOLDEN_BYTES))


def test_truncated_inside_a_chunk_message(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    p.write_bytes(GOLDEN_BYTES[:-40])
    got, s, _ = _read(p, True)
    assert s.damage.reason == "the file ends inside a chunk"
    assert s.trailer is None
    assert len(got) == len(GOLDEN_EVENTS)  # the trailer chunk was the one cut
    warning = s.damage_warning()
    assert warning == (
        f"{p}: truncated at byte {s.damage.offset}: the file ends inside a chunk; "
        f"showing the {len(GOLDEN_EVENTS)} events before it"
    )
    p.write_bytes(GOLDEN_BYTES[:-8])
    got, s, _ = _read(p, True)
    assert s.trailer is not None and s.damage.reason == "the file ends before the footer"
    assert read_trailer_fast(p) is None


def test_bit_flips(tmp_path: Path) -> None:
    """Every byte, two bits each: an error with an offset, damage, or (for a
    flip zstd does not need, like a window size) exactly the original events."""
    p = tmp_path / "t.srec"
    header_end = _header_end(GOLDEN_BYTES)
    for i in range(len(GOLDEN_BYTES)):
        for bit in (0, 6):
            data = bytearray(GOLDEN_BYTES)
            data[i] ^= 1 << bit
            p.write_bytes(data)
            got, s, err = _read(p, True)
            assert got == GOLDEN_EVENTS[: len(got)], (i, bit)
            if err is None and s.damage is None:
                assert got == GOLDEN_EVENTS, (i, bit)
            lenient, _, err2 = _read(p, False)
            assert lenient == got
            if i >= header_end and err2 is not None:
                # Only the preamble and header chunk raise in lenient mode.
                raise AssertionError((i, bit, err2))


def test_raw_len_bomb_is_refused_before_allocating(tmp_path: Path) -> None:
    """A descriptor declaring 2 GiB of content: refused, nothing allocated."""
    frame = zstandard.ZstdCompressor().compress(b"x")
    data = complete_file(fmt.pack_descriptor(EVENTS, len(frame), 2 << 30) + frame)
    p = tmp_path / "bomb.srec"
    p.write_bytes(data)
    tracemalloc.start()
    try:
        with open_session(p) as s, pytest.raises(FormatError, match="more than the") as e:
            list(s.records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert e.value.offset == len(header_bytes())
    assert "2147483648 bytes" in str(e.value)


def test_compressed_len_bomb(tmp_path: Path) -> None:
    data = complete_file(fmt.pack_descriptor(EVENTS, 0xFFFFFFFF, 10))
    p = tmp_path / "bomb.srec"
    p.write_bytes(data)
    with open_session(p) as s, pytest.raises(FormatError, match="compressed bytes"):
        list(s.records())


def test_frame_declaring_more_than_its_descriptor(tmp_path: Path) -> None:
    """zstd would allocate the frame's declared content size: it must match."""
    raw = pack(ev(1)) * 100
    bad = chunk(EVENTS, raw, raw_len=10)
    p = tmp_path / "t.srec"
    p.write_bytes(complete_file(bad))
    with open_session(p) as s, pytest.raises(FormatError, match="declares"):
        list(s.records())


def test_frame_without_content_size(tmp_path: Path) -> None:
    raw = pack(ev(1))
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(raw)
    p = tmp_path / "t.srec"
    p.write_bytes(complete_file(fmt.pack_descriptor(EVENTS, len(frame), len(raw)) + frame))
    with open_session(p) as s, pytest.raises(FormatError, match="declares -1 bytes"):
        list(s.records())


def test_two_frames_in_one_chunk(tmp_path: Path) -> None:
    c = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True)
    raw = pack(ev(1))
    frames = c.compress(raw) + c.compress(raw)
    p = tmp_path / "t.srec"
    p.write_bytes(complete_file(fmt.pack_descriptor(EVENTS, len(frames), len(raw)) + frames))
    with open_session(p) as s, pytest.raises(FormatError, match="unused data"):
        list(s.records())


def test_checksum_error_names_the_chunk(tmp_path: Path) -> None:
    good = chunk(EVENTS, pack(ev(1)))
    bad = bytearray(chunk(EVENTS, pack(ev(2))))
    bad[-1] ^= 0xFF  # the content checksum
    p = tmp_path / "t.srec"
    p.write_bytes(complete_file(good, bytes(bad)))
    at = len(header_bytes()) + len(good)
    with open_session(p) as s, pytest.raises(FormatError) as e:
        list(s.records())
    assert e.value.offset == at
    assert f"{p}: at byte {at}: corrupt zstd frame" in str(e.value)
    records, s = read_all(p, strict=False)
    assert records == [ev(1)]
    assert s.damage.offset == at and not s.damage.truncated


def test_info_of_a_damaged_file(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    write_session(p, [ev(2), ev(4, body=[-2, 1, -100, b"x", 0, 0]), "flush"], trailer=None)
    data = p.read_bytes()
    p.write_bytes(data + b"\x28\xb5\x2f\xfd garbage")
    info = session_info(p)
    assert info["complete"] is False
    assert info["damage"] == {"offset": len(data), "reason": info["damage"]["reason"]}
    assert "bad frame magic" in info["damage"]["reason"]
    assert info["counts"]["exec"] == 1 and info["counts"]["open"] == 1


def test_info_when_the_footer_is_damaged(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    data = bytearray(GOLDEN_BYTES)
    data[-1] ^= 0x40  # the footer's offset points far away
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="outside the file"):
        read_trailer_fast(p)
    info = session_info(p)
    assert info["ended_at"] is not None  # the trailer was found by scanning
    assert info["complete"] is False and info["status"] == "damaged"
    assert info["damage"]["offset"] == len(GOLDEN_BYTES) - fmt.FOOTER.size
    assert info["exit_status"] == 3


def test_trailer_is_validated(tmp_path: Path) -> None:
    data = header_bytes()
    bad = chunk(fmt.ChunkKind.TRAILER, pack({"k": "trailer", **TRAILER, "counts": 3}))
    p = tmp_path / "t.srec"
    p.write_bytes(data + bad + fmt.pack_footer(len(data)))
    with pytest.raises(FormatError, match=r"trailer\['counts'\] should be a map"):
        read_trailer_fast(p)
    with open_session(p) as s, pytest.raises(FormatError, match="counts"):
        list(s.records())
    assert HEADER  # the header itself was fine
