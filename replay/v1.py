"""The reader for major format version 1 (any minor). Never delete this module:
files of version 1 are read forever (docs/FORMAT.md, tests/golden/v1.0-*).

Reading is streaming: chunk by chunk, never the whole file. Everything read
from the file is untrusted: sizes are checked against sessrec.format limits
before anything is allocated, and every field used is type-checked.

Errors: a file that ends early (inside a chunk, or without a trailer) is not an
error: everything complete is yielded and session.damage says where it ended. A
corrupt chunk (bad magic, bad checksum, malformed msgpack, wrongly typed record)
raises FormatError with its byte offset once everything before it has been
yielded; with strict=False it stops there and sets session.damage instead.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import BinaryIO, NoReturn, TypeVar

import msgpack
import zstandard

from replay.base import Damage, Session, no_gc
from sessrec import format as fmt
from sessrec.errors import FormatError
from sessrec.event import (
    CLASSES,
    FIELD_TYPES,
    REQUIRED_TYPES,
    Event,
    EventType,
    Exec,
    event_problem,
    make,
)

_PAYLOAD = fmt.DESCRIPTOR_PAYLOAD_LEN
_HEAD = fmt.FRAME_HEAD.size
_DESC = fmt.DESCRIPTOR.size
_FOOT = fmt.FOOTER.size
_DESC_PAYLOAD = struct.Struct("<III")  # kind, compressed_len, raw_len
_FOOT_PAYLOAD = struct.Struct("<Q")

# type number -> (event class, its shapes): shapes[L] is, for an array of
# L fields (its required ones at least, its known ones at most), the types
# of those fields and the defaults that make it whole (those a later minor
# version appended, absent from an older file), for the fast per-event
# check and the typing; None for too short an array.
_Shape = tuple[tuple[type, ...], list[object]]


def _shapes(cls: type[Event], t: int) -> tuple[_Shape | None, ...]:
    n = len(REQUIRED_TYPES[t])
    defaults = [cls._field_defaults[f] for f in cls._fields[n:]]
    return tuple(None if length < n else (FIELD_TYPES[t][:length], defaults[length - n:])
                 for length in range(len(cls._fields) + 1))


_LAYOUT: dict[int, tuple[type[Event], tuple[_Shape | None, ...]]] = {
    t: (cls, _shapes(cls, t)) for t, cls in CLASSES.items()
}
# (type number << 8 | array length) -> (event class, the types of its
# fields as a list, the defaults that make it whole): _LAYOUT's shapes in one
# lookup, for the arrays the reader types without more ado.
_SHAPE_OF: dict[int, tuple[type[Event], list[type], list[object]]] = {
    t << 8 | length: (cls, list(shape[0]), shape[1])
    for t, (cls, shapes) in _LAYOUT.items()
    for length, shape in enumerate(shapes) if shape is not None
}
_TYPE_OF: dict[type[Event], int] = {cls: t for t, cls in CLASSES.items()}
_EXEC = int(EventType.EXEC)
_EXEC_ARGV = Exec._fields.index("argv")
_new = tuple.__new__
_BATCH_EVENTS = 2048
_R = TypeVar("_R")


class _Corrupt(Exception):
    def __init__(self, offset: int, reason: str):
        super().__init__(reason)
        self.offset = offset
        self.reason = reason
        # The events of the damaged chunk before the damage, still given.
        self.before: list[Event] = []


class _Short(Exception):
    """The file ends before the frame being read is complete."""


def _fail(offset: int, reason: str) -> NoReturn:
    raise _Corrupt(offset, reason)


def _unpacker(raw: bytes) -> msgpack.Unpacker:
    unpacker = msgpack.Unpacker(
        None,
        raw=False,
        strict_map_key=True,
        use_list=True,
        max_buffer_size=max(len(raw), 1),
        **fmt.UNPACK_LIMITS,
    )
    unpacker.feed(raw)
    return unpacker


_UNPACK_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


def _one_object(raw: bytes, offset: int, what: str) -> object:
    """The one msgpack object of a header or trailer chunk. What follows it
    is not unpacked: only seen to be there."""
    unpacker = _unpacker(raw)
    try:
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        _fail(offset, f"the {what} chunk holds no complete object")
    except _UNPACK_ERRORS as e:
        _fail(offset, f"malformed msgpack in chunk: {e}")
    if unpacker.tell() != len(raw):
        _fail(offset, f"the {what} chunk holds more than its one object")
    return obj


def _check_consumed(unpacker: msgpack.Unpacker, offset: int) -> None:
    """Iterating an Unpacker stops quietly before an incomplete last object."""
    try:
        rest = unpacker.read_bytes(1)
    except ValueError:  # the C unpacker: "an object is incomplete"
        rest = b"?"
    if rest:
        _fail(offset, "chunk ends inside a msgpack object")


def _decompress(dctx: zstandard.ZstdDecompressor, data: bytes, raw_len: int, offset: int) -> bytes:
    """The content of one zstd frame, which must be exactly raw_len bytes."""
    try:
        declared = zstandard.frame_content_size(data)
    except (zstandard.ZstdError, ValueError) as e:
        _fail(offset, f"bad zstd frame: {e}")
    if declared != raw_len:
        _fail(offset, f"zstd frame declares {declared} bytes, its descriptor {raw_len}")
    try:
        raw = dctx.decompress(data, max_output_size=raw_len, allow_extra_data=False)
    except zstandard.ZstdError as e:
        _fail(offset, f"corrupt zstd frame: {e}")
    if len(raw) != raw_len:
        _fail(offset, f"zstd frame holds {len(raw)} bytes, its descriptor says {raw_len}")
    return raw


def _check_descriptor(kind: int, clen: int, rlen: int, offset: int) -> fmt.ChunkKind:
    # Refuse before reading or allocating: the file is untrusted.
    try:
        ckind = fmt.ChunkKind(kind)
    except ValueError:
        _fail(offset, f"unknown chunk kind {kind}")
    limit = fmt.MAX_RAW_LEN if ckind == fmt.ChunkKind.RECORDS else fmt.MAX_MSGPACK_RAW_LEN
    if rlen > limit:
        _fail(offset, f"chunk declares {rlen} bytes, more than the {limit} allowed")
    if clen > fmt.MAX_COMPRESSED_LEN:
        _fail(offset, f"chunk declares {clen} compressed bytes, more than allowed")
    return ckind


class SessionV1(Session):
    """A version 1.x file, opened by replay.reader.open_session. (replay.v2
    extends it with one chunk kind.)"""

    MAJOR = 1

    def __init__(self, path: str, file: BinaryIO, minor: int, *, strict: bool = True):
        super().__init__(path, (self.MAJOR, minor), strict)
        self._file = file
        self._dctx = zstandard.ZstdDecompressor()
        self._trailer_offset: int | None = None
        try:
            self.header, self._body_start = self._read_header(fmt.PREAMBLE.size)
        except _Corrupt as c:
            raise FormatError(c.reason, path, c.offset) from None

    def close(self) -> None:
        self._file.close()

    @property
    def position(self) -> int:
        return 0 if self._file.closed else self._file.tell()

    # --- frames ---

    def _read(self, n: int) -> bytes:
        data = self._file.read(n)
        if len(data) < n:
            raise _Short
        return data

    def _read_chunk(self, pos: int) -> tuple[fmt.ChunkKind, bytes, int]:
        """The chunk whose descriptor is at pos: (kind, raw content, next pos).

        The file must be positioned after the descriptor's 8-byte frame head."""
        kind, clen, rlen = _DESC_PAYLOAD.unpack(self._read(_PAYLOAD))
        ckind = _check_descriptor(kind, clen, rlen, pos)
        data = self._read(clen)
        return ckind, _decompress(self._dctx, data, rlen, pos), pos + _DESC + clen

    def _read_header(self, pos: int) -> tuple[fmt.Header, int]:
        f = self._file
        f.seek(pos)
        try:
            magic, size = fmt.FRAME_HEAD.unpack(self._read(_HEAD))
            if magic != fmt.DESCRIPTOR_MAGIC or size != _PAYLOAD:
                _fail(pos, "the header chunk is missing")
            kind, raw, end = self._read_chunk(pos)
        except _Short:
            _fail(pos, "file ends inside the header chunk")
        if kind != fmt.ChunkKind.HEADER:
            _fail(pos, "the first chunk is not the header")
        obj = _one_object(raw, pos, "header")
        try:
            header = fmt.validate_header(obj)
        except FormatError as e:
            _fail(pos, str(e))
        if header["format"][0] != self.version[0]:
            _fail(pos, f"header says format {header['format']}, preamble {self.version}")
        return header, end

    # --- records ---

    def batches(self, follow: bool = False, poll_interval: float = 0.2
                ) -> Iterator[list[Event]]:
        self.trailer = None
        self.damage = None
        self.stats_lost = {}
        self.gaps = []
        self.unknown_types = {}
        self.unknown_records = 0
        self._counts = {}
        self._trailer_offset = None
        try:
            # A chunk's events come in lists (_BATCH_EVENTS): the reader's
            # cost per event is no generator level at all, and a list small
            # enough to stay in the CPU's caches.
            for batches in self._chunks(follow, poll_interval):
                yield from batches
        except _Corrupt as c:
            yield c.before
            if self.strict:
                raise FormatError(c.reason, self.path, c.offset) from None
            self.damage = Damage(c.offset, c.reason, truncated=False)

    def _chunks(self, follow: bool, poll_interval: float) -> Iterator[Iterable[list[Event]]]:
        f = self._file
        pos = self._body_start
        while True:
            f.seek(pos)
            try:
                head = self._read(_HEAD)
                magic, size = fmt.FRAME_HEAD.unpack(head)
                if magic == fmt.DESCRIPTOR_MAGIC and size == _PAYLOAD:
                    if self._trailer_offset is not None:
                        _fail(pos, "a chunk follows the trailer")
                    kind, raw, end = self._read_chunk(pos)
                elif magic == fmt.FOOTER_MAGIC and size == fmt.FOOTER_PAYLOAD_LEN:
                    (target,) = _FOOT_PAYLOAD.unpack(self._read(fmt.FOOTER_PAYLOAD_LEN))
                    self._check_footer(pos, target)
                    return
                else:
                    _fail(pos, f"bad frame magic {magic:#x}: not a chunk descriptor or footer")
            except _Short:
                if follow and self._trailer_offset is None:
                    time.sleep(poll_interval)
                    continue
                self.damage = self._short_damage(pos)
                return
            yield self._body_chunk(kind, raw, pos)
            pos = end

    def _body_chunk(self, kind: fmt.ChunkKind, raw: bytes, pos: int) -> Iterable[list[Event]]:
        """The events of a chunk after the header, in lists; the trailer is
        kept. Damage raises _Corrupt with the list's events before it."""
        if kind == fmt.ChunkKind.EVENTS:
            return self._events(raw, pos)
        if kind == fmt.ChunkKind.TRAILER:
            self._read_trailer(raw, pos)
        elif kind == fmt.ChunkKind.HEADER:
            _fail(pos, "a second header chunk")
        else:
            _fail(pos, f"chunk kind {int(kind)} does not exist in format {self.MAJOR}")
        return []

    def _short_damage(self, pos: int) -> Damage:
        self._file.seek(0, 2)
        at_end = self._file.tell() == pos
        if self._trailer_offset is not None:
            return Damage(pos, "the file ends before the footer")
        if at_end:
            return Damage(pos, "the recording did not finish (no trailer)")
        return Damage(pos, "the file ends inside a chunk")

    def _check_footer(self, pos: int, target: int) -> None:
        if self._trailer_offset is None:
            _fail(pos, "a footer without a trailer chunk")
        if target != self._trailer_offset:
            where = self._trailer_offset
            _fail(pos, f"the footer points to byte {target}, the trailer is at {where}")
        if self._file.read(1):
            _fail(pos + _FOOT, "data after the footer")

    def _read_trailer(self, raw: bytes, pos: int) -> None:
        obj = _one_object(raw, pos, "trailer")
        try:
            self.trailer = fmt.validate_trailer(obj)
        except FormatError as e:
            _fail(pos, str(e))
        self._trailer_offset = pos

    def _events(self, raw: bytes, pos: int) -> Iterator[list[Event]]:
        unpacker = _unpacker(raw)
        end = len(raw)
        more = True
        while more:
            events, more = self._collect(lambda out: self._unpack_events(unpacker, end, pos, out))
            yield events
        _check_consumed(unpacker, pos)

    def _collect(self, fill: Callable[[list[Event]], _R]) -> tuple[list[Event], _R]:
        """A list of a chunk's events, which fill(list) fills with the cyclic
        collector paused, and what fill returns; the list is counted by type,
        and on damage carried by the _Corrupt raised, with the events before
        it."""
        out: list[Event] = []
        try:
            with no_gc():
                result = fill(out)
        except _Corrupt as c:
            c.before = out
            raise
        finally:
            self._count(out)
        return out, result

    def _count(self, events: list[Event]) -> None:
        """Count a chunk's events by type, at once (Counter counts in C)."""
        counts = self._counts
        for cls, n in Counter(map(type, events)).items():
            t = _TYPE_OF[cls]
            counts[t] = counts.get(t, 0) + n

    def _unpack_events(self, unpacker: msgpack.Unpacker, end: int, pos: int,
                       out: list[Event]) -> bool:
        """Up to _BATCH_EVENTS objects of the chunk into out; whether more
        may follow (an incomplete last object is _check_consumed's)."""
        layout = _LAYOUT.get
        shape_of = _SHAPE_OF.get
        append = out.append
        at = unpacker.tell()
        try:
            for obj in islice(unpacker, _BATCH_EVENTS):
                if type(obj) is list:
                    t = obj[0] if obj else None
                    if type(t) is not int:
                        _fail(pos, f"bad event: {event_problem(obj)}")
                    n = len(obj)
                    shape = shape_of(t << 8 | n) if n < 256 else None
                    if shape is None:  # an unknown type, or too short or long an array
                        lay = layout(t)
                        if lay is None:
                            self.unknown_types[t] = self.unknown_types.get(t, 0) + 1
                        else:  # too short, or of a newer minor version
                            append(self._other_shape(obj, t, pos))
                        continue
                    cls, types, defaults = shape
                    if [*map(type, obj)] != types or (
                        cls is Exec and not all(type(a) is bytes for a in obj[_EXEC_ARGV])
                    ):
                        _fail(pos, f"bad event: {event_problem(obj)}")
                    if defaults:  # an older minor's array: made whole
                        obj += defaults
                    append(_new(cls, obj))
                elif type(obj) is dict:
                    self._map_record(obj, pos)
                else:
                    _fail(pos, f"unexpected {type(obj).__name__} in an events chunk")
        except _UNPACK_ERRORS as e:
            _fail(pos, f"malformed msgpack in chunk: {e}")
        return bool(at < unpacker.tell() < end)

    @staticmethod
    def _other_shape(obj: list[object], t: int, pos: int) -> Event:
        """An event array longer than this version knows (a newer minor
        version's: the fields it knows are checked, the rest dropped), or
        too short (damage)."""
        types = FIELD_TYPES[t]
        if len(obj) < len(REQUIRED_TYPES[t]) or tuple(map(type, obj[:len(types)])) != types or (
            t == _EXEC and not _all_bytes(obj[_EXEC_ARGV])
        ):
            _fail(pos, f"bad event: {event_problem(obj)}")
        return make(obj)

    def _map_record(self, obj: dict[str, object], pos: int) -> None:
        k = obj.get("k")
        if k == "stats":
            try:
                stats = fmt.validate_stats(obj)
            except FormatError as e:
                _fail(pos, str(e))
            self.stats_lost = dict(stats["lost"])
        elif k == "gap":  # 2.1
            try:
                self.gaps.append(fmt.validate_gap(obj))
            except FormatError as e:
                _fail(pos, str(e))
        elif k == "seal":
            pass  # since 2.1; checked by `sessrec verify` (replay/verify.py), not here
        elif type(k) is str:
            self.unknown_records += 1  # a record kind of a newer minor version
        else:
            _fail(pos, "a map without a string 'k' in an events chunk")


def _all_bytes(items: object) -> bool:
    return isinstance(items, list) and all(type(a) is bytes for a in items)


def read_trailer_fast(path: str, f: BinaryIO) -> fmt.Trailer | None:
    """The trailer via the footer; f is positioned after the preamble.

    None if the file does not end with a footer. FormatError if the footer is
    there but what it points to is not a valid trailer chunk."""
    size = f.seek(0, 2)
    if size < fmt.PREAMBLE.size + _DESC + _FOOT:
        return None
    f.seek(size - _FOOT)
    magic, length, target = fmt.FOOTER.unpack(f.read(_FOOT))
    if magic != fmt.FOOTER_MAGIC or length != fmt.FOOTER_PAYLOAD_LEN:
        return None
    footer = size - _FOOT
    if not fmt.PREAMBLE.size <= target <= footer - _DESC:
        raise FormatError(f"the footer points to byte {target}, outside the file", path, footer)
    f.seek(target)
    magic, length, kind, clen, rlen = fmt.DESCRIPTOR.unpack(f.read(_DESC))
    try:
        if magic != fmt.DESCRIPTOR_MAGIC or length != _PAYLOAD:
            _fail(target, "the footer does not point to a chunk descriptor")
        if _check_descriptor(kind, clen, rlen, target) != fmt.ChunkKind.TRAILER:
            _fail(target, "the footer does not point to the trailer chunk")
        if target + _DESC + clen != footer:
            _fail(target, "the trailer chunk does not end at the footer")
        raw = _decompress(zstandard.ZstdDecompressor(), f.read(clen), rlen, target)
        return fmt.validate_trailer(_one_object(raw, target, "trailer"), path, target)
    except _Corrupt as c:
        raise FormatError(c.reason, path, c.offset) from None
