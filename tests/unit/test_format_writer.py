"""recorder.writer: SessionWriter and check_writable, with injected faults."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from srec_util import HEADER, TRAILER, KeepOpen, ev, read_all

from recorder.writer import OutputError, SessionWriter, check_writable
from sessrec import format as fmt
from sessrec.errors import FormatError, SessrecError, UsageError


def test_check_writable_new_file(tmp_path: Path) -> None:
    check_writable(tmp_path / "new.srec")
    check_writable(tmp_path / "new.srec", force=True)


def test_check_writable_existing_needs_force(tmp_path: Path) -> None:
    p = tmp_path / "old.srec"
    p.write_bytes(b"x")
    with pytest.raises(UsageError, match="--force"):
        check_writable(p)
    check_writable(p, force=True)


def test_check_writable_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"directory .*/nope does not exist"):
        check_writable(tmp_path / "nope" / "x.srec")


def test_check_writable_directory_itself(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path, force=True)


def test_check_writable_unwritable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # os.access, because root may write anywhere and tests may run as root.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match=r"cannot write .*x.srec: Permission denied"):
        check_writable(tmp_path / "x.srec")
    (tmp_path / "y.srec").write_bytes(b"")
    with pytest.raises(OutputError, match="Permission denied"):
        check_writable(tmp_path / "y.srec", force=True)


def test_errors_are_sessrec_errors() -> None:
    assert issubclass(OutputError, SessrecError)


def test_creates_exclusively_with_mode_0600(tmp_path: Path) -> None:
    p = tmp_path / "s.srec"
    w = SessionWriter(p, HEADER)
    w.close(TRAILER)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert w.bytes_written == p.stat().st_size
    assert w.path == str(p)
    with pytest.raises(UsageError, match="--force"):
        SessionWriter(p, HEADER)
    SessionWriter(p, HEADER, force=True).close(TRAILER)
    records, s = read_all(p)
    assert records == [] and s.trailer is not None


def test_open_failure_message(tmp_path: Path) -> None:
    p = tmp_path / "missing" / "x.srec"
    with pytest.raises(OutputError) as e:
        SessionWriter(p, HEADER)
    assert str(e.value) == f"cannot write {p}: No such file or directory"


def test_header_is_validated(tmp_path: Path) -> None:
    bad = {**HEADER, "cwd": "/not/bytes"}
    with pytest.raises(FormatError, match="cwd"):
        SessionWriter(tmp_path / "x.srec", bad)
    assert not (tmp_path / "x.srec").exists()
    with pytest.raises(ValueError, match=rf"writes format 2\.{fmt.FORMAT_MINOR}"):
        SessionWriter(tmp_path / "y.srec", {**HEADER, "format": [1, 1]})


def test_trailer_and_stats_are_validated(tmp_path: Path) -> None:
    w = SessionWriter(tmp_path / "x.srec", HEADER)
    with pytest.raises(FormatError, match="lost"):
        w.add_stats({"ts": 1, "lost": {"open": "many"}})
    with pytest.raises(FormatError, match="end_reason"):
        w.close({**TRAILER, "end_reason": None})
    assert not w.closed  # still usable: the trailer can be fixed
    w.close(TRAILER)


class RecordingStream(KeepOpen):
    """Keeps every write() as one item."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return super().write(data)


def test_each_chunk_is_one_write() -> None:
    stream = RecordingStream()
    w = SessionWriter("mem.srec", HEADER, stream=stream, max_chunk_bytes=200)
    for i in range(50):
        w.add(ev(4, ts=i))
    w.close(TRAILER)
    first, *chunks = stream.writes
    assert first.startswith(fmt.pack_preamble())
    assert len(chunks) > 3
    for data in chunks:
        magic, _, kind, clen, _ = fmt.DESCRIPTOR.unpack_from(data)
        assert magic == fmt.DESCRIPTOR_MAGIC
        end = fmt.DESCRIPTOR.size + clen
        if kind == fmt.ChunkKind.TRAILER:
            assert data[end:] == fmt.pack_footer(w.bytes_written - len(data))
        else:
            assert len(data) == end
    assert w.bytes_written == len(stream.getvalue())


def test_chunking_by_size_and_time(tmp_path: Path) -> None:
    p = tmp_path / "x.srec"
    w = SessionWriter(p, HEADER, max_chunk_bytes=1000, flush_interval=5.0)
    events = [ev(6, ts=i) for i in range(100)]
    for e in events[:50]:
        w.add(e)
    assert w.bytes_written > 500  # flushed by size
    size = w.bytes_written
    w.add(events[50])
    w.maybe_flush(w._last_flush + 1.0)
    assert w.bytes_written == size
    w.maybe_flush(w._last_flush + 5.0)
    assert w.bytes_written > size  # flushed by time
    for e in events[51:]:
        w.add(e)
    w.add_stats({"ts": 7, "lost": {"exec": 4}})
    w.close(TRAILER)
    assert w.events_written == 100
    records, s = read_all(p)
    assert records == events
    assert s.stats_lost == {"exec": 4}
    assert s.damage is None


def test_close_without_trailer_leaves_an_incomplete_file(tmp_path: Path) -> None:
    p = tmp_path / "x.srec"
    with SessionWriter(p, HEADER) as w:
        w.add(ev(1))
    records, s = read_all(p)
    assert records == [ev(1)]
    assert s.trailer is None
    assert s.damage is not None and "no trailer" in s.damage.reason


class FailingStream(io.BytesIO):
    def __init__(self, fail_after: int, err: int = errno.ENOSPC, on: str = "write"):
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after
        self.err = err
        self.on = on

    def _maybe_fail(self, op: str) -> None:
        if op == self.on:
            self.calls += 1
            if self.calls > self.fail_after:
                raise OSError(self.err, os.strerror(self.err))

    def write(self, data: Any) -> int:
        self._maybe_fail("write")
        return super().write(data)

    def flush(self) -> None:
        self._maybe_fail("flush")
        super().flush()


def test_write_failure_at_open() -> None:
    with pytest.raises(OutputError) as e:
        SessionWriter("/x/y.srec", HEADER, stream=FailingStream(0))  # type: ignore[arg-type]
    assert str(e.value) == "cannot write /x/y.srec: No space left on device"


@pytest.mark.parametrize("on", ["write", "flush"])
def test_write_failure_later_is_sticky(on: str) -> None:
    stream = FailingStream(1, errno.EIO, on)
    w = SessionWriter("s.srec", HEADER, stream=stream)  # type: ignore[arg-type]
    w.add(ev(1))
    with pytest.raises(OutputError, match=r"cannot write s\.srec: Input/output error"):
        w.flush()
    w.add(ev(1, body=[2]))
    with pytest.raises(OutputError, match="Input/output error"):
        w.flush()
    with pytest.raises(OutputError):
        w.close(TRAILER)
    assert w.closed


class ShortWrites(KeepOpen):
    """A raw stream that writes at most 7 bytes per call."""

    def write(self, data: Any) -> int:
        return super().write(bytes(data)[:7])


def test_partial_writes_are_completed(tmp_path: Path) -> None:
    stream = ShortWrites()
    w = SessionWriter("mem.srec", HEADER, stream=stream)
    events = [ev(t) for t in range(1, 7)]
    for e in events:
        w.add(e)
    w.close(TRAILER)
    p = tmp_path / "x.srec"
    p.write_bytes(stream.getvalue())
    records, s = read_all(p)
    assert records == events and s.damage is None


def test_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        SessionWriter("m", HEADER, stream=KeepOpen(), max_chunk_bytes=fmt.MAX_RAW_LEN)
