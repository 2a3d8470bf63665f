"""Helpers for the session file tests: the golden script, and ways to build
valid and deliberately broken files."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import zstandard

from recorder.writer import SessionWriter
from replay.reader import open_session
from sessrec import format as fmt

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"


def _load_golden_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN_DIR / "make_golden.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = _load_golden_script()
GOLDEN = GOLDEN_DIR / "v1.0-synthetic.srec"
HEADER: dict[str, Any] = golden.HEADER
TRAILER: dict[str, Any] = golden.TRAILER


def ev(t: int, pid: int = 1000, body: list[Any] | None = None, *, ts: int = 1) -> list[Any]:
    """An event array of type t with default common fields and body."""
    defaults: dict[int, list[Any]] = {
        1: [pid + 1],
        2: [0, b"/bin/true", [b"true"], 1, pid, 0],
        3: [0],
        4: [3, 1, -100, b"/etc/passwd", 0, 0],
        5: [0, 3, 1, 6, b"\x02\x00\x00\x50\x7f\x00\x00\x01" + bytes(8)],
        6: [0, -1, b"/tmp"],
    }
    return [t, ts, pid, pid, 1, 1000, b"comm", 0, *(body if body is not None else defaults[t])]


class KeepOpen(io.BytesIO):
    """A BytesIO that survives SessionWriter.close()."""

    def close(self) -> None:
        pass


def write_session(
    path: str | os.PathLike[str],
    records: list[Any],
    *,
    trailer: dict[str, Any] | None = TRAILER,
    header: dict[str, Any] | None = None,
) -> None:
    """Write records (event arrays, stats dicts without "k", "flush")."""
    w = SessionWriter(path, header or HEADER)
    for r in records:
        if r == "flush":
            w.flush()
        elif isinstance(r, dict):
            w.add_stats(r)
        else:
            w.add(r)
    w.close(trailer)


def read_all(path: str | os.PathLike[str], strict: bool = True) -> tuple[list[Any], Any]:
    """(records, session) with the session closed after reading; the records
    as arrays (list(event)), to compare with the arrays written."""
    with open_session(path, strict=strict) as s:
        records = [as_written(e) for e in s.records()]
    return records, s


def as_written(e: Any) -> list[Any]:
    """An event as the array a file of its version holds: the fields a later
    version appended (sessrec.event) are left out while they have their
    defaults, as they do when the file is older than them."""
    n = len(e._fields) - len(e._field_defaults)
    tail = list(e[n:])
    defaults = list(e._field_defaults.values())
    while tail and tail[-1] == defaults[len(tail) - 1]:
        tail.pop()
    return [*e[:n], *tail]


def pack(*objs: Any) -> bytes:
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objs)


def chunk(kind: int, raw: bytes, *, raw_len: int | None = None) -> bytes:
    """A descriptor and zstd frame; raw_len overrides the declared length."""
    frame = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(raw)
    return fmt.pack_descriptor(kind, len(frame), len(raw) if raw_len is None else raw_len) + frame


def header_bytes(major: int = 1, minor: int = 0) -> bytes:
    """Preamble and a valid header chunk."""
    h = {"k": "header", "format": [major, minor], **HEADER}
    return fmt.pack_preamble(major, minor) + chunk(fmt.ChunkKind.HEADER, pack(h))


def trailer_and_footer(offset: int) -> bytes:
    t = {"k": "trailer", **TRAILER}
    return chunk(fmt.ChunkKind.TRAILER, pack(t)) + fmt.pack_footer(offset)


def complete_file(*body_chunks: bytes) -> bytes:
    """header + body chunks + trailer + footer, offsets computed."""
    data = header_bytes() + b"".join(body_chunks)
    return data + trailer_and_footer(len(data))


def raw_records(path: Path) -> list[bytes]:
    """The records of a capture_raw.py .bin file (u32 length, record; repeated)."""
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def capture(name: str = "raw-abi1") -> tuple[list[bytes], dict[str, Any]]:
    """The raw ring records captured on a real kernel (tests/golden/<name>.*),
    and what they decode to (bytes as {"b": latin-1 text}, see plain())."""
    return (raw_records(GOLDEN_DIR / f"{name}.bin"),
            json.loads((GOLDEN_DIR / f"{name}.json").read_text(encoding="utf-8")))


def from_json(v: Any) -> Any:
    """The inverse of plain(): {"b": latin-1 text} back to bytes."""
    if isinstance(v, dict):
        return v["b"].encode("latin-1")
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def plain(v: Any) -> Any:
    """An event array as raw-abi1.json has it."""
    if isinstance(v, bytes):
        return {"b": v.decode("latin-1")}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v
