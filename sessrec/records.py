"""The ring-buffer records of bpf/sessrec.h: their layouts for every BPF ABI
version ever recorded, and the decoder that turns a record into a session-file
event array.

Decoders are keyed by the ABI version a file declares (its header's
`abi_version`), and every version ever written keeps its table forever: a new
version is added to ABIS, never put in place of an older one. The rule
(docs/FORMAT.md, "BPF ABI versions"): fields appended at the end of a struct's
fixed part are a minor change, made with `Abi.extend`, and older files still
read; a field that changes size, place or meaning is a major change and needs
a table and decoding of its own.

The layouts mirror the C structs field by field. They are not trusted by eye:
tests/unit/test_abi_layout.py compiles the header for the BPF target and
checks every offset, size and enum value of the current ABI against them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sessrec.event import Chdir, Connect, Event, EventType, Exec, Exit, Fork, Open

FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = (int(t) for t in EventType)
EVENT_TYPE_MAX = max(EventType) + 1  # SR_EVENT_TYPE_MAX

COMM_LEN = 16
PATH_MAX = 4096
ARGV_MAX = 32768
SOCKADDR_MAX = 112


@dataclass(frozen=True)
class Layout:
    """A C struct as (field, struct-format) pairs, little-endian, no implicit
    padding: every pad in the C struct is a named field here too. `tail` names
    the flexible array member that follows the fixed part, if any; it starts
    at `size` (test_abi_layout.py checks that too)."""

    c_name: str
    fields: tuple[tuple[str, str], ...]
    tail: str | None = None

    @property
    def fmt(self) -> str:
        return "<" + "".join(f for _, f in self.fields)

    @property
    def size(self) -> int:
        return struct.calcsize(self.fmt)

    def offsets(self) -> dict[str, int]:
        out: dict[str, int] = {}
        pos = 0
        for name, f in self.fields:
            out[name] = pos
            pos += struct.calcsize("<" + f)
        return out


# struct event_header
HEADER = Layout(
    "event_header",
    (
        ("type", "H"),
        ("flags", "H"),
        ("size", "I"),
        ("ts_ns", "Q"),
        ("cgroup_id", "Q"),
        ("pid", "I"),
        ("tid", "I"),
        ("ppid", "I"),
        ("uid", "I"),
        ("comm", f"{COMM_LEN}s"),
    ),
)
HEADER_SIZE = HEADER.size
_N_HEADER = len(HEADER.fields)

# What struct.unpack gives: the header's fields, then the body's, in order.
Values = tuple[Any, ...]
# Builds the event's fields (sessrec.event, in order) from the unpacked
# values, the record, where its variable part starts, and the session's
# monotonic origin. Raises struct.error when a length in the record does not
# fit it.
Builder = Callable[[Values, "memoryview | bytes", int, int], tuple[object, ...]]


@dataclass(frozen=True)
class RecordType:
    """One event type in one ABI version: the body's layout (after the
    header), how its values become the fields of its event class, and how
    many fields that gives. Fewer than the class has: the rest (appended to
    the class for a later version) take their defaults. More: the class does
    not know them yet (the test ABI's field), and they are left out."""

    body: Layout
    build: Builder
    n_fields: int
    cls: type[Event]


@dataclass(frozen=True)
class Abi:
    """The record layouts of one ABI version (SESSREC_ABI_VERSION)."""

    version: int
    types: Mapping[int, RecordType]

    def extend(self, version: int, appended: Mapping[int, tuple[tuple[str, str], ...]],
               new_types: Mapping[int, RecordType] | None = None) -> Abi:
        """The next ABI version, made by a minor change: `appended` fields go
        at the end of those types' fixed parts (their variable parts move
        after them), and their values (pads excepted) become the fields
        appended to the event class (sessrec.event), in order; `new_types`
        adds event types. Every other type reads as here."""
        types = dict(self.types)
        for t, fields in appended.items():
            old = types[t]
            body = Layout(old.body.c_name, old.body.fields + fields, old.body.tail)
            first = _N_HEADER + len(old.body.fields)
            keep = [first + i for i, (name, _) in enumerate(fields) if not name.startswith("_")]
            types[t] = RecordType(body, _appending(old.build, keep), old.n_fields + len(keep),
                                  old.cls)
        types.update(new_types or {})
        return Abi(version, types)


def _appending(base: Builder, keep: list[int]) -> Builder:
    """base, then the values at `keep` (the appended fields but their pads)."""
    def build(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
        return (*base(v, raw, end, origin), *[v[i] for i in keep])

    return build


# v: type, flags, size, ts, cgroup, pid, tid, ppid, uid, comm, body...
# Each gives the common fields (docs/FORMAT.md, Events), then its own.


def _fork(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1], v[10])


def _exec(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    flen, alen = v[12], v[13]
    if flen > PATH_MAX or alen > ARGV_MAX or end + flen + alen > len(raw):
        raise struct.error("exec record: lengths beyond the record or the limits")
    data = bytes(raw[end : end + flen + alen])
    argv = data[flen:].split(b"\0")
    # The block ends with the last argument's NUL, unless cut short.
    if argv and argv[-1] == b"":
        argv.pop()
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
            v[10], data[:flen], argv, v[11], v[14], v[15])


def _exit(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1], v[10])


def _open(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[15] > PATH_MAX or end + v[15] > len(raw):
        raise struct.error("open record: path beyond the record or the limit")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
            v[10], v[14], v[11], bytes(raw[end : end + v[15]]), v[12], v[13])


def _connect(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[14] > SOCKADDR_MAX:
        raise struct.error("connect record: address longer than its field")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
            v[10], v[11], v[12], v[13], v[16][: v[14]])


def _chdir(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[12] > PATH_MAX or end + v[12] > len(raw):
        raise struct.error("chdir record: path beyond the record or the limit")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
            v[10], v[11], bytes(raw[end : end + v[12]]))


# ABI 1: the first. Bodies follow the header ("h" in C).
ABI_1 = Abi(1, {
    FORK: RecordType(Layout("fork_event", (("child_pid", "I"), ("_pad", "I"))), _fork,
                     len(Fork._fields), Fork),
    EXEC: RecordType(Layout(
        "exec_event",
        (
            ("ret", "i"),
            ("argc", "I"),
            ("filename_len", "I"),
            ("argv_len", "I"),
            ("old_pid", "I"),
            ("syscall", "H"),
            ("_pad", "H"),
        ),
        "data",
    ), _exec, len(Exec._fields), Exec),
    EXIT: RecordType(Layout("exit_event", (("exit_code", "I"), ("_pad", "I"))), _exit,
                     len(Exit._fields), Exit),
    OPEN: RecordType(Layout(
        "open_event",
        (
            ("ret", "i"),
            ("dirfd", "i"),
            ("flags", "Q"),
            ("mode", "I"),
            ("syscall", "H"),
            ("path_len", "H"),
        ),
        "path",
    ), _open, len(Open._fields), Open),
    CONNECT: RecordType(Layout(
        "connect_event",
        (
            ("ret", "i"),
            ("fd", "i"),
            ("sock_type", "H"),
            ("protocol", "H"),
            ("addr_len", "H"),
            ("_pad", "H"),
            ("addr", f"{SOCKADDR_MAX}s"),
        ),
    ), _connect, len(Connect._fields), Connect),
    CHDIR: RecordType(Layout(
        "chdir_event",
        (("ret", "i"), ("fd", "i"), ("path_len", "I"), ("_pad", "I")),
        "path",
    ), _chdir, len(Chdir._fields), Chdir),
})

# Every ABI version ever recorded, read forever. Append, never replace.
ABIS: dict[int, Abi] = {1: ABI_1}
# The version the BPF programs of this sessrec write (SESSREC_ABI_VERSION).
ABI_VERSION = 1
CURRENT = ABIS[ABI_VERSION]
BODIES: dict[int, Layout] = {t: rt.body for t, rt in CURRENT.types.items()}


def record_size(event_type: int, abi: Abi = CURRENT) -> int:
    """Bytes of a record of this (known) type without its variable part."""
    return HEADER_SIZE + abi.types[event_type].body.size


class Decoder:
    """Turns raw records of one ABI version into typed events
    (sessrec.event), with ts relative to the session's monotonic origin. Unknown or malformed
    records are counted, never raised (the reader, replay/v2.py, decides what
    they mean). It runs once per event read: one unpack of header and body,
    then the type's builder; lengths taken from a record are checked against
    the record and the ABI's limits, as a session file is untrusted input."""

    def __init__(self, mono_origin_ns: int, abi: Abi = CURRENT) -> None:
        self.origin = mono_origin_ns
        self.abi = abi
        self.unknown = 0
        self.malformed = 0
        # Indexed by type: a list lookup is cheaper than a dict lookup.
        self.by_type: list[tuple[Callable[..., Values], int, Builder, type[Event]] | None]
        self.by_type = [None] * 256
        for t, rt in abi.types.items():
            full = struct.Struct(HEADER.fmt + rt.body.fmt[1:])
            cls = rt.cls
            build = rt.build
            missing = cls._fields[rt.n_fields :]
            if missing:  # fields of a later version: their defaults
                build = _padded(build, tuple(cls._field_defaults[f] for f in missing))
            elif rt.n_fields > len(cls._fields):
                build = _cut(build, len(cls._fields))
            self.by_type[t] = (full.unpack_from, full.size, build, cls)

    def decode(self, raw: memoryview | bytes) -> Event | None:
        if len(raw) < HEADER_SIZE:
            self.malformed += 1
            return None
        entry = self.by_type[raw[0]] if raw[1] == 0 else None
        if entry is None:
            self.unknown += 1
            return None
        unpack, end, build, cls = entry
        try:
            return _new(cls, build(unpack(raw), raw, end, self.origin))
        except struct.error:
            self.malformed += 1
            return None


_new = tuple.__new__


def _padded(base: Builder, defaults: tuple[object, ...]) -> Builder:
    def build(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
        return (*base(v, raw, end, origin), *defaults)

    return build


def _cut(base: Builder, n: int) -> Builder:
    def build(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
        return base(v, raw, end, origin)[:n]

    return build
