"""replay.reader and replay.v1: the golden file, versions, record validation."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
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
    trailer_and_footer,
    write_session,
)

from recorder.writer import SessionWriter
from replay.reader import SUPPORTED_MAJORS, open_session, read_trailer_fast
from sessrec import format as fmt
from sessrec.errors import FormatError, SessrecError

EVENTS = fmt.ChunkKind.EVENTS


def _file(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "t.srec"
    p.write_bytes(data)
    return p


# --- the golden file: read forever ---


def test_golden_v1_0_records() -> None:
    records, s = read_all(GOLDEN)
    assert records == golden.events()
    assert s.header == {"k": "header", "format": [1, 0], **golden.HEADER}
    assert s.trailer == {"k": "trailer", **golden.TRAILER}
    assert s.damage is None
    assert s.stats_lost == {"open": 2}
    assert s.format_version == "1.0"
    assert s.counts == {**golden.TRAILER["counts"], "cgroup": 0}  # no such events before ABI 2
    assert s.damage_warning() is None


def test_golden_v1_0_fast_trailer() -> None:
    assert read_trailer_fast(GOLDEN) == {"k": "trailer", **golden.TRAILER}


def test_golden_script_refuses_to_overwrite(tmp_path: Path) -> None:
    assert golden.main(["--out-dir", str(GOLDEN.parent)]) == 1
    with pytest.raises(AssertionError, match=r"no longer writes 1\.0"):
        golden.main(["--out-dir", str(tmp_path)])  # it would be a 2.0 file
    golden.write(str(tmp_path / "now.srec"))  # its records, with today's writer
    records, _ = read_all(tmp_path / "now.srec")
    assert records == golden.events()


# --- preamble and versions ---


def test_wrong_magic(tmp_path: Path) -> None:
    p = _file(tmp_path, b"#!/bin/sh\necho this is not a session file\n")
    with pytest.raises(FormatError, match="not a sessrec session file") as e:
        open_session(p)
    assert e.value.offset == 0 and e.value.path == str(p)
    with pytest.raises(FormatError, match="not a sessrec session file"):
        read_trailer_fast(p)


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="ends inside the preamble"):
        open_session(_file(tmp_path, b""))


def test_unknown_major(tmp_path: Path) -> None:
    p = _file(tmp_path, header_bytes(major=3, minor=1))
    with pytest.raises(FormatError) as e:
        open_session(p)
    assert "format version 3.1 is not supported" in str(e.value)
    assert "major version 1, 2" in str(e.value)
    assert SUPPORTED_MAJORS == (1, 2)
    with pytest.raises(FormatError, match=r"3\.1"):
        read_trailer_fast(p)


def test_newer_minor_is_read(tmp_path: Path) -> None:
    h = {"k": "header", "format": [1, 7], **HEADER, "new_in_1_7": [1, 2]}
    data = fmt.pack_preamble(1, 7) + chunk(fmt.ChunkKind.HEADER, pack(h))
    future = [*ev(4), b"", 0, 0, "field from 1.7"]  # after the fields BPF ABI 2 added
    unknown_type = [42, 1, 2, 2, 1, 0, b"c", 0, "whatever"]
    new_record = {"k": "annotation", "text": "from 1.7"}
    data += chunk(EVENTS, pack(ev(1), future, unknown_type, new_record, unknown_type, ev(6)))
    data += trailer_and_footer(len(data))
    records, s = read_all(_file(tmp_path, data))
    assert records == [ev(1), ev(4), ev(6)]  # typed as far as this version knows
    assert s.format_version == "1.7"
    assert s.header["new_in_1_7"] == [1, 2]
    assert s.unknown_types == {42: 2}
    assert s.unknown_records == 1
    assert s.damage is None


def test_header_and_preamble_disagree(tmp_path: Path) -> None:
    h = {"k": "header", "format": [2, 0], **HEADER}
    data = fmt.pack_preamble(1, 0) + chunk(fmt.ChunkKind.HEADER, pack(h))
    with pytest.raises(FormatError, match="header says format"):
        open_session(_file(tmp_path, data))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SessrecError, match=r"cannot read .*: No such file or directory"):
        open_session(tmp_path / "nope.srec")


# --- chunk structure ---


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (fmt.pack_preamble() + chunk(EVENTS, pack(ev(1))), "first chunk is not the header"),
        (fmt.pack_preamble() + fmt.pack_footer(0), "header chunk is missing"),
        (
            fmt.pack_preamble() + chunk(1, pack({"k": "header", "format": [1, 0], **HEADER}, 1)),
            "holds more than its one object",
        ),
        (fmt.pack_preamble() + chunk(1, pack({"k": "header"})), "lacks key 'format'"),
        (fmt.pack_preamble() + chunk(1, pack([1, 2])), "should be a map"),
    ],
)
def test_bad_header_chunk(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message) as e:
        open_session(_file(tmp_path, data))
    assert e.value.offset == fmt.PREAMBLE.size


def _expect_error(p: Path, message: str, offset: int) -> list[Any]:
    """Read p strictly (error) and leniently (damage); return records read."""
    got: list[Any] = []
    with open_session(p) as s, pytest.raises(FormatError, match=message) as e:
        got.extend(as_written(e) for e in s.records())
    assert e.value.offset == offset
    records, s = read_all(p, strict=False)
    assert records == got
    assert s.damage is not None and not s.damage.truncated
    assert s.damage.offset == offset and message in s.damage.reason
    assert s.damage_warning() == (
        f"{p}: damaged at byte {offset}: {s.damage.reason}; showing the {len(got)} events before it"
    )
    return got


def test_unknown_chunk_kind(tmp_path: Path) -> None:
    good = chunk(EVENTS, pack(ev(1)))
    data = complete_file(good, chunk(9, pack(ev(2))))
    at = len(header_bytes()) + len(good)
    assert _expect_error(_file(tmp_path, data), "unknown chunk kind 9", at) == [ev(1)]


def test_second_header(tmp_path: Path) -> None:
    h = {"k": "header", "format": [1, 0], **HEADER}
    data = complete_file(chunk(fmt.ChunkKind.HEADER, pack(h)))
    _expect_error(_file(tmp_path, data), "second header", len(header_bytes()))


def test_chunk_after_trailer(tmp_path: Path) -> None:
    data = header_bytes()
    data += trailer_and_footer(len(data))[: -fmt.FOOTER.size] + chunk(EVENTS, pack(ev(1)))
    at = len(data) - len(chunk(EVENTS, pack(ev(1))))
    _expect_error(_file(tmp_path, data), "follows the trailer", at)


def test_footer_without_trailer(tmp_path: Path) -> None:
    data = header_bytes() + fmt.pack_footer(20)
    _expect_error(_file(tmp_path, data), "footer without a trailer", len(header_bytes()))


def test_footer_pointing_elsewhere(tmp_path: Path) -> None:
    data = header_bytes()
    data += trailer_and_footer(len(data) + 1)
    _expect_error(_file(tmp_path, data), "footer points to byte", len(data) - fmt.FOOTER.size)
    with pytest.raises(FormatError, match="does not point to a chunk descriptor"):
        read_trailer_fast(tmp_path / "t.srec")


def test_data_after_footer(tmp_path: Path) -> None:
    data = complete_file() + b"\0"
    _expect_error(_file(tmp_path, data), "data after the footer", len(data) - 1)


def test_bad_frame_magic(tmp_path: Path) -> None:
    data = complete_file(b"\x28\xb5\x2f\xfd" + bytes(20))
    _expect_error(_file(tmp_path, data), "bad frame magic 0xfd2fb528", len(header_bytes()))


def test_trailer_chunk_with_two_objects(tmp_path: Path) -> None:
    data = header_bytes()
    t = {"k": "trailer", **TRAILER}
    data += chunk(fmt.ChunkKind.TRAILER, pack(t, t)) + fmt.pack_footer(len(data))
    _expect_error(_file(tmp_path, data), "holds more than its one object", len(header_bytes()))


# --- event records ---


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (ev(4)[:-1], "open event has 13 fields, needs 14"),
        ([4, "1", *ev(4)[2:]], "field 'ts' is str, should be int"),
        ([*ev(4)[:6], "comm", *ev(4)[7:]], "field 'comm' is str, should be bytes"),
        ([*ev(4)[:11], "/etc/passwd", *ev(4)[12:]], "field 'requested_path' is str"),
        ([*ev(4)[:8], 3.0, *ev(4)[9:]], "field 'ret' is float"),
        ([*ev(4)[:8], None, *ev(4)[9:]], "field 'ret' is NoneType"),
        ([*ev(4)[:8], True, *ev(4)[9:]], "field 'ret' is bool"),
        ([*ev(2)[:10], [b"a", "b"], *ev(2)[11:]], "argv item is str"),
        ([*ev(2)[:10], b"a b", *ev(2)[11:]], "field 'argv' is bytes"),
        (ev(1)[:8], "fork event has 8 fields"),
        ([], "does not start with an integer type"),
        (["open", 1], "does not start with an integer type"),
        (7, "unexpected int in an events chunk"),
        ("x", "unexpected str"),
        ({"no": "k"}, "map without a string 'k'"),
        ({"k": "stats", "ts": 1, "lost": [1]}, "bad stats record"),
    ],
)
def test_bad_event_records(tmp_path: Path, record: Any, message: str) -> None:
    data = complete_file(chunk(EVENTS, pack(ev(1))), chunk(EVENTS, pack(ev(3), record, ev(6))))
    at = len(header_bytes()) + len(chunk(EVENTS, pack(ev(1))))
    got = _expect_error(_file(tmp_path, data), message, at)
    assert got == [ev(1), ev(3)]  # everything before the bad record


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pack(ev(1)) + b"\xc1", "malformed msgpack"),
        (pack(ev(1))[:-2], "ends inside a msgpack object"),
        (b"\x81\x01\x02", "malformed msgpack"),  # int map key
        (b"\xa2\xff\xfe", "malformed msgpack"),  # str that is not UTF-8
        (b"\xd4\x01\x00", "malformed msgpack"),  # ext type
        (b"\xdd\xff\xff\xff\xff", "malformed msgpack"),  # array of 4G items
    ],
)
def test_malformed_msgpack(tmp_path: Path, raw: bytes, message: str) -> None:
    data = complete_file(chunk(EVENTS, raw))
    _expect_error(_file(tmp_path, data), message, len(header_bytes()))


def test_stats_keep_the_latest(tmp_path: Path) -> None:
    p = tmp_path / "s.srec"
    recs = [
        ev(1),
        {"ts": 1, "lost": {"open": 1}},
        "flush",
        {"ts": 2, "lost": {"open": 5, "exec": 1}},
    ]
    write_session(p, recs)
    records, s = read_all(p)
    assert records == [ev(1)]
    assert s.stats_lost == {"open": 5, "exec": 1}


def test_records_can_be_read_twice(tmp_path: Path) -> None:
    p = tmp_path / "s.srec"
    write_session(p, [ev(1), "flush", ev(2)])
    with open_session(p) as s:
        first = [as_written(e) for e in s.records()]
        second = [as_written(e) for e in s.records()]
    assert first == second == [ev(1), ev(2)]
    assert s.counts["fork"] == 1


def test_follow_waits_for_the_trailer(tmp_path: Path) -> None:
    p = tmp_path / "live.srec"
    w = SessionWriter(p, HEADER)
    done = threading.Event()

    def record() -> None:
        for i in range(5):
            w.add(ev(4, ts=i))
            w.flush()
            time.sleep(0.02)
        w.close(TRAILER)
        done.set()

    thread = threading.Thread(target=record)
    with open_session(p) as s:
        thread.start()
        got = [as_written(e) for e in s.records(follow=True, poll_interval=0.005)]
    thread.join()
    assert done.is_set()
    assert got == [ev(4, ts=i) for i in range(5)]
    assert s.trailer is not None and s.damage is None


def test_follow_sees_partial_chunks_complete(tmp_path: Path) -> None:
    """A chunk that appears in two pieces is read once it is whole."""
    body = chunk(EVENTS, pack(ev(1), ev(2)))
    head = header_bytes()
    tail = trailer_and_footer(len(head) + len(body))
    p = _file(tmp_path, head + body[:10])

    def append() -> None:
        time.sleep(0.05)
        with open(p, "ab") as f:
            f.write(body[10:])
            f.flush()
            time.sleep(0.05)
            f.write(tail)

    thread = threading.Thread(target=append)
    thread.start()
    with open_session(p) as s:
        got = [as_written(e) for e in s.records(follow=True, poll_interval=0.005)]
    thread.join()
    assert got == [ev(1), ev(2)]
    assert s.damage is None


def test_info_speed_on_a_million_events(tmp_path: Path) -> None:
    from replay.info import session_info

    p = tmp_path / "big.srec"
    w = SessionWriter(p, HEADER)
    e = ev(4)
    for _ in range(1_000_000):
        w.add(e)
    w.close({**TRAILER, "counts": {"open": 1_000_000}})
    start = time.perf_counter()
    info = session_info(p)
    assert time.perf_counter() - start < 0.5
    assert info["counts"]["open"] == 1_000_000
    assert info["complete"] is True
