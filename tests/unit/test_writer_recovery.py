"""The writer's recovery from a failed write (the daemon's full disk) and
its continuation of a file another process left (a daemon restarted),
with injected faults, read back by the real reader."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest
from srec_util import GOLDEN_DIR

from recorder.writer import OutputError, SessionWriter
from replay.reader import open_session
from sessrec import format as fmt
from sessrec import records


class FullDisk(io.RawIOBase):
    """A real file whose writes fail with ENOSPC after `room` more bytes,
    having written part of the data, as a full disk does."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb", buffering=0)
        self.room: int | None = None

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.f.fileno()

    def write(self, b: Any) -> int:
        data = bytes(b)
        if self.room is not None and len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.room is not None:
            self.room -= len(data)
        return int(self.f.write(data))

    def close(self) -> None:
        self.f.close()
        super().close()


def _records() -> list[bytes]:
    data = (GOLDEN_DIR / "raw-abi1.bin").read_bytes()
    out, at = [], 0
    while at < len(data):
        n = int.from_bytes(data[at:at + 4], "little")
        out.append(data[at + 4:at + 4 + n])
        at += 4 + n
    return out


def _header() -> dict[str, Any]:
    with open_session(GOLDEN_DIR / "v2.0-records.srec") as s:
        h = dict(s.header)
    h.pop("k")
    h.pop("format")
    return h


def _frames(part: list[bytes]) -> bytes:
    return b"".join(fmt.RECORD_FRAME.pack(len(r), 0) + r for r in part)


def test_a_failed_write_is_cut_back_dropped_and_the_file_goes_on(tmp_path: Path) -> None:
    raw = _records()
    path = tmp_path / "s.srec"
    stream = FullDisk(path)
    w = SessionWriter(str(path), _header(), stream=stream)  # type: ignore[arg-type]
    dropped: list[bytes] = []
    w.on_drop = lambda kind, data: dropped.append(data)
    w.begin_records()[:] = _frames(raw[:40])
    w.flush()
    good = w.bytes_written
    stream.room = 10  # the disk fills in the middle of the next chunk
    w.begin_records()[:] = _frames(raw[40:70])
    with pytest.raises(OutputError, match="No space left on device"):
        w.flush()
    assert dropped == [_frames(raw[40:70])]
    assert w.bytes_written == good == os.path.getsize(path)  # the partial chunk is gone
    stream.room = None  # space returns
    w.begin_records()[:] = _frames(raw[70:])
    w.add_map("gap", {"ts": 1, "end": 2, "reason": "output-error", "detail": "x",
                      "dropped": {"open": 30}})
    w.close({"ended_at": "2026-11-21T11:10:03.000000Z", "counts": {}, "lost": {},
             "truncated": {"argv": 0, "path": 0}, "unknown_types": 0, "exit_status": None,
             "end_reason": "cgroup-empty"})
    with open_session(path) as s:
        n = sum(1 for _ in s.records())
        assert s.damage is None and s.trailer is not None
        assert [g["reason"] for g in s.gaps] == ["output-error"]
    assert n == len(raw) - 30


def test_resume_cuts_a_partial_chunk_and_continues(tmp_path: Path) -> None:
    raw = _records()
    path = tmp_path / "s.srec"
    w = SessionWriter(str(path), _header())
    w.begin_records()[:] = _frames(raw[:50])
    w.flush()
    whole = w.bytes_written
    w._write(w._chunk(fmt.ChunkKind.RECORDS, _frames(raw[50:60]))[:77])  # killed mid-write
    w.close(None)
    with open_session(path, strict=False) as s:
        assert sum(1 for _ in s.records()) == 50
        assert s.damage is not None and s.damage.offset == whole
        header = s.header
    w = SessionWriter(str(path), header, resume_at=whole)
    w.begin_records()[:] = _frames(raw[60:])
    w.close({"ended_at": "2026-11-21T11:10:03.000000Z", "counts": {}, "lost": {},
             "truncated": {"argv": 0, "path": 0}, "unknown_types": 0, "exit_status": None,
             "end_reason": "cgroup-empty"})
    with open_session(path) as s:
        events = list(s.records())
        assert s.damage is None and s.header == header
    decoder = records.Decoder(header["clock"]["mono_ns"], records.ABIS[header["abi_version"]])
    want = [decoder.decode(r) for r in raw[:50] + raw[60:]]
    assert events == want
