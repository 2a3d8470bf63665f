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
from typing import Any, NamedTuple, cast

from sessrec.event import (
    ARGV_TRUNCATED,
    Cgroup,
    Chdir,
    Connect,
    Event,
    EventType,
    Exec,
    Exit,
    Fork,
    Open,
)

FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR, CGROUP = (int(t) for t in EventType)
ARGV = 7  # SR_EVENT_ARGV (ABI 2): a record, not an event: joined to its exec
EVENT_TYPE_MAX = max(EventType) + 1  # SR_EVENT_TYPE_MAX

COMM_LEN = 16
PATH_MAX = 4096
ARGV_MAX = 32768
SOCKADDR_MAX = 112
KADDR_MAX = 28  # ABI 2
ARGV_PART = 32768  # ABI 2: bytes of argv in one ARGV record at most
# Bytes of argv parts a reader holds at most while waiting for their execs.
ARGV_HELD_MAX = 64 << 20


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
    cls: type[Event] | type[_ArgvPart]  # an argv part is a record, not an event


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
# comm is a C string cut at its first NUL: the programs copy task->comm's 16
# bytes, and a kernel whose __set_task_comm copies with strlcpy (5.10's)
# leaves an older name's bytes after the NUL ("opens\0\0\0oot" on 5.10).


def _fork(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1], v[10])


def _exec(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    flen, alen = v[12], v[13]
    if flen > PATH_MAX or alen > ARGV_MAX or end + flen + alen > len(raw):
        raise struct.error("exec record: lengths beyond the record or the limits")
    data = bytes(raw[end : end + flen + alen])
    argv = data[flen:].split(b"\0")
    # The block ends with the last argument's NUL, unless cut short.
    if argv and argv[-1] == b"":
        argv.pop()
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1],
            v[10], data[:flen], argv, v[11], v[14], v[15])


def _exit(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1], v[10])


def _open(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[15] > PATH_MAX or end + v[15] > len(raw):
        raise struct.error("open record: path beyond the record or the limit")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1],
            v[10], v[14], v[11], bytes(raw[end : end + v[15]]), v[12], v[13])


def _connect(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[14] > SOCKADDR_MAX:
        raise struct.error("connect record: address longer than its field")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1],
            v[10], v[11], v[12], v[13], v[16][: v[14]])


def _chdir(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[12] > PATH_MAX or end + v[12] > len(raw):
        raise struct.error("chdir record: path beyond the record or the limit")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1],
            v[10], v[11], bytes(raw[end : end + v[12]]))


def _n1(cls: type[Event]) -> int:
    """The fields of ABI 1's events: those without a default (fields with
    one were appended by later versions)."""
    return len(cls._fields) - len(cls._field_defaults)


# ABI 1: the first. Bodies follow the header ("h" in C).
ABI_1 = Abi(1, {
    FORK: RecordType(Layout("fork_event", (("child_pid", "I"), ("_pad", "I"))), _fork,
                     _n1(Fork), Fork),
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
    ), _exec, _n1(Exec), Exec),
    EXIT: RecordType(Layout("exit_event", (("exit_code", "I"), ("_pad", "I"))), _exit,
                     _n1(Exit), Exit),
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
    ), _open, _n1(Open), Open),
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
    ), _connect, _n1(Connect), Connect),
    CHDIR: RecordType(Layout(
        "chdir_event",
        (("ret", "i"), ("fd", "i"), ("path_len", "I"), ("_pad", "I")),
        "path",
    ), _chdir, _n1(Chdir), Chdir),
})

# struct sr_kpath, the field k that ABI 2 appends to exec, open and chdir:
# the kernel's path (bpf/kpath.bpf.h), after the record's other variable data.
_KPATH = (("k.len", "H"), ("k.src", "H"), ("k.root_len", "H"), ("k._pad", "H"))


def _with_kpath(base: Builder, at: int, before: tuple[int, ...]) -> Builder:
    """base's fields, then the kernel path, its source and the length of its
    part outside the task's root. `at`: index of k.len in the unpacked
    values; `before`: indexes of the lengths of the variable data before it."""

    def build(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
        klen = v[at]
        start = end + sum(v[i] for i in before)
        if klen > PATH_MAX or start + klen > len(raw):
            raise struct.error("kernel path beyond the record or the limit")
        return (*base(v, raw, end, origin), bytes(raw[start : start + klen]), v[at + 1],
                v[at + 2])

    return build


def _exec_unsplit(v: Values, raw: memoryview | bytes, end: int,
                  origin: int) -> tuple[object, ...]:
    """_exec with argv left as its bytes: the Decoder joins the ARGV parts
    that came before it, then splits."""
    flen, alen = v[12], v[13]
    if flen > PATH_MAX or alen > ARGV_MAX or end + flen + alen > len(raw):
        raise struct.error("exec record: lengths beyond the record or the limits")
    data = bytes(raw[end : end + flen + alen])
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1],
            v[10], data[:flen], data[flen:], v[11], v[14], v[15])


_exec_kpath = _with_kpath(_exec_unsplit, 17, (12, 13))


def _exec2(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    return (*_exec_kpath(v, raw, end, origin), v[21], v[22])


def _connect2(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[18] > KADDR_MAX:
        raise struct.error("connect record: kernel address longer than its field")
    return (*_connect(v, raw, end, origin), v[17], v[19][: v[18]])


def _argv_part(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    """(tid, index, data): held by the Decoder until its exec."""
    if v[11] > ARGV_PART or end + v[11] > len(raw):
        raise struct.error("argv record: part beyond the record or the limit")
    return (v[6], v[12], bytes(raw[end : end + v[11]]))


def _cgroup(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
    if v[14] > PATH_MAX or end + v[14] > len(raw):
        raise struct.error("cgroup record: path beyond the record or the limit")
    return (v[0], v[3] - origin, v[5], v[6], v[7], v[8], v[9].partition(b"\0")[0], v[1],
            v[10], v[11], v[12], v[13], bytes(raw[end : end + v[14]]))


def _abi_2() -> Abi:
    grown = ABI_1.extend(2, {
        EXEC: (*_KPATH, ("argv_total", "I"), ("argv_parts", "I")),
        OPEN: _KPATH,
        CHDIR: _KPATH,
        CONNECT: (("kaddr_src", "H"), ("kaddr_len", "H"), ("kaddr", f"{KADDR_MAX}s")),
    })
    t = grown.types
    # k.len: after the header (10 values) and the ABI 1 body's fields.
    return Abi(2, {
        **t,
        EXEC: RecordType(t[EXEC].body, _exec2, len(Exec._fields), Exec),
        OPEN: RecordType(t[OPEN].body, _with_kpath(_open, 16, (15,)), len(Open._fields), Open),
        CHDIR: RecordType(t[CHDIR].body, _with_kpath(_chdir, 14, (12,)), len(Chdir._fields),
                          Chdir),
        CONNECT: RecordType(t[CONNECT].body, _connect2, len(Connect._fields), Connect),
        ARGV: RecordType(Layout("argv_event", (
            ("offset", "I"), ("len", "I"), ("index", "I"), ("_pad", "I")), "data"),
            _argv_part, 3, _ArgvPart),
        CGROUP: RecordType(Layout("cgroup_event", (
            ("dst_id", "Q"), ("dst_root", "i"), ("dst_level", "i"), ("pid", "I"),
            ("path_len", "H"), ("_pad", "H")), "path"), _cgroup, len(Cgroup._fields), Cgroup),
    })


class _ArgvPart(NamedTuple):
    """An ABI 2 argv part as decoded, before it is joined to its exec."""

    tid: int
    part: int  # 0, 1, ... of its exec's argv_parts
    data: bytes


# ABI 2: paths from the kernel (exec, open and chdir grow a struct sr_kpath),
# the socket's destination (connect), argv in parts, cgroup moves.
ABI_2 = _abi_2()

# Every ABI version ever recorded, read forever. Append, never replace.
ABIS: dict[int, Abi] = {1: ABI_1, 2: ABI_2}
# The version the BPF programs of this sessrec write (SESSREC_ABI_VERSION).
ABI_VERSION = 2
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
        # ABI 2's argv parts: held per thread until their exec.
        self._joins = ARGV in abi.types
        self._parts: dict[int, list[bytes]] = {}
        self._held = 0
        self.argv_missing = 0  # execs whose parts were lost
        self.argv_orphans = 0  # parts without their exec
        # Indexed by type: a list lookup is cheaper than a dict lookup.
        self.by_type: list[tuple[Callable[..., Values], int, Builder,
                                 type[Event] | type[_ArgvPart]] | None]
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
            ev = _new(cls, build(unpack(raw), raw, end, self.origin))
        except struct.error:
            self.malformed += 1
            return None
        if self._joins and (type(ev) is Exec or type(ev) is _ArgvPart):
            return self._join_argv(ev)
        return ev  # type: ignore[return-value]  # only argv parts are not events

    def _join_argv(self, ev: Exec | _ArgvPart) -> Event | None:
        """ABI 2: an argv part is held until its exec, which follows it (and
        CONSUMED is returned); an exec gets its parts joined to its argv.
        Parts lost in the ring leave the exec's argv flagged truncated."""
        if isinstance(ev, _ArgvPart):
            parts = self._parts.setdefault(ev.tid, [])
            if ev.part == 0 and parts:
                self.argv_orphans += len(parts)
                self._held -= sum(len(x) for x in parts)
                parts.clear()
            if ev.part != len(parts) or self._held + len(ev.data) > ARGV_HELD_MAX:
                self.argv_orphans += 1
            else:
                parts.append(ev.data)
                self._held += len(ev.data)
            return CONSUMED
        argv: bytes = ev.argv  # type: ignore[assignment]  # unsplit until here
        got = self._parts.pop(ev.tid, [])
        self._held -= sum(len(x) for x in got)
        flags = ev.flags
        if ev.argv_parts:
            if len(got) < ev.argv_parts:
                flags |= ARGV_TRUNCATED
                self.argv_missing += 1
            argv += b"".join(got[: ev.argv_parts])
        elif got:
            self.argv_orphans += len(got)
        args = argv.split(b"\0")
        # The block ends with the last argument's NUL, unless cut short.
        if args and args[-1] == b"":
            args.pop()
        joined: Exec = ev._replace(argv=args, flags=flags)
        return joined


_new = tuple.__new__

# What Decoder.decode returns for a record that is part of another (an argv
# part, joined to its exec): nothing to show by itself.
CONSUMED: Event = cast("Event", ())


def _padded(base: Builder, defaults: tuple[object, ...]) -> Builder:
    def build(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
        return (*base(v, raw, end, origin), *defaults)

    return build


def _cut(base: Builder, n: int) -> Builder:
    def build(v: Values, raw: memoryview | bytes, end: int, origin: int) -> tuple[object, ...]:
        return base(v, raw, end, origin)[:n]

    return build
