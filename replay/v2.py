"""The reader for major format version 2 (any minor). Never delete this module:
files of version 2 are read forever (docs/FORMAT.md, tests/golden/v2.0-*).

Version 2 is version 1 with one chunk kind more: RECORDS, the BPF programs'
records as the ring buffer framed them, written by the recorder without
decoding them. They are decoded here, by the decoder of the header's
abi_version (sessrec/records.py keeps one for every version ever recorded),
into the same event arrays a version 1 file holds. Everything else (framing,
header, EVENTS chunks and stats, trailer, footer, damage) is version 1's, so
this reader is replay.v1's plus that kind.

A record is untrusted like everything else in the file: a frame that overruns
its chunk, or a record of a known type that does not decode, is corruption; a
record of an unknown type is counted in unknown_types and skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from replay.v1 import SessionV1, _Corrupt, _fail
from sessrec import format as fmt
from sessrec import records
from sessrec.errors import FormatError
from sessrec.event import Event

_FRAME = fmt.RECORD_FRAME
_FRAME_SIZE = fmt.RECORD_FRAME.size
# The writer's chunks (about 1 MiB) decode into one list; larger ones, in
# lists of about this many bytes of records.
_BATCH = 4 << 20


class SessionV2(SessionV1):
    """A version 2.x file, opened by replay.reader.open_session."""

    MAJOR = 2

    def __init__(self, path: str, file: BinaryIO, minor: int, *, strict: bool = True):
        super().__init__(path, file, minor, strict=strict)
        version = self.header["abi_version"]
        abi = records.ABIS.get(version)
        if abi is None:
            file.close()
            known = ", ".join(str(v) for v in sorted(records.ABIS))
            raise FormatError(f"its records are of BPF ABI {version}; this sessrec decodes ABI "
                              f"{known}", path, fmt.PREAMBLE.size)
        self._abi = abi
        self._origin: int = self.header["clock"]["mono_ns"]
        # One decoder for the whole file: an exec's argv parts (ABI 2) may
        # be in the records chunk before its own.
        self._decoder = records.Decoder(self._origin, abi)

    def _body_chunk(self, kind: fmt.ChunkKind, raw: bytes, pos: int) -> Iterable[Event]:
        if kind == fmt.ChunkKind.RECORDS:
            if len(raw) > _BATCH:
                return self._batches(raw, pos)
            return self._collect(lambda out: self._records_chunk(raw, pos, out))
        return super()._body_chunk(kind, raw, pos)

    def _batches(self, raw: bytes, pos: int) -> Iterator[Event]:
        """The events of a large chunk, decoded _BATCH bytes of records at a
        time: a chunk's records can take 8 times their size once decoded (an
        argv of 32 KiB of NULs is 32,768 list items), and a chunk may hold
        64 MiB of them."""
        at = 0
        while at < len(raw):
            out: list[Event] = []
            try:
                at = self._records_chunk(raw, pos, out, at, at + _BATCH)
            except _Corrupt as c:
                c.before = out
                raise
            yield from out

    def _records_chunk(self, raw: bytes, pos: int, out: list[Event], at: int = 0,
                       stop: int | None = None) -> int:
        """Decode the records from byte `at` into out, up to the first that
        ends at or past `stop` (default: the chunk's end); return where the
        next one starts."""
        append = out.append
        decoder = self._decoder
        decode = decoder.decode
        frame = _FRAME.unpack_from
        view = memoryview(raw)
        end = len(raw)
        stop = end if stop is None else min(stop, end)
        while at < stop:
            if end - at < _FRAME_SIZE:
                _fail(pos, f"a record frame is cut short at byte {at} of a records chunk")
            length, _ = frame(raw, at)
            start = at + _FRAME_SIZE
            at = start + length
            if length & fmt.RECORD_FLAG_BITS or at > end:
                _fail(pos, f"a record frame of {length} bytes overruns its records chunk")
            malformed = decoder.malformed
            ev = decode(view[start:at])
            if ev is None:
                if decoder.malformed != malformed:
                    _fail(pos, f"a malformed record at byte {start} of a records chunk")
                t = raw[start] | raw[start + 1] << 8
                self.unknown_types[t] = self.unknown_types.get(t, 0) + 1
                continue
            if ev is records.CONSUMED:
                continue
            append(ev)
        return at
