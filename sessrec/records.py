"""Decoding of ring-buffer records into session-file event arrays.

The layouts below mirror the C structs of bpf/sessrec.h field by field.
They are not trusted by eye: tests/unit/test_abi_layout.py compiles the
header and checks every offset, size and enum value against these tables.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

ABI_VERSION = 2
# Every ABI version this module decodes; records of older ones stay readable
# forever (tests/golden/raw-abi*.bin).
ABI_VERSIONS = (1, 2)

# enum sr_event_type
FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6
EVENT_TYPE_MAX = 7

# enum sr_event_flags (bits of the header's flags)
FLAG_KPATH_TRUNCATED = 1 << 3
FLAG_KPATH_DELETED = 1 << 4
FLAG_KPATH_UNREACHABLE = 1 << 5
FLAG_KPATH_NONE = 1 << 6
FLAG_TAMPERED = 1 << 7

# enum sr_kpath_src
KPATH_NONE, KPATH_FILE, KPATH_CWD, KPATH_DIRFD, KPATH_ROOT = range(5)

COMM_LEN = 16
PATH_MAX = 4096
ARGV_MAX = 32768
SOCKADDR_MAX = 112


@dataclass(frozen=True)
class Layout:
    """A C struct as (field, struct-format) pairs, little-endian, no implicit
    padding: every pad in the C struct is a named field here too."""

    c_name: str
    fields: tuple[tuple[str, str], ...]

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

# Bodies follow the header ("h" in C), per ABI version.
_BODIES_V1: dict[int, Layout] = {
    FORK: Layout("fork_event", (("child_pid", "I"), ("_pad", "I"))),
    EXEC: Layout(
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
    ),
    EXIT: Layout("exit_event", (("exit_code", "I"), ("_pad", "I"))),
    OPEN: Layout(
        "open_event",
        (
            ("ret", "i"),
            ("dirfd", "i"),
            ("flags", "Q"),
            ("mode", "I"),
            ("syscall", "H"),
            ("path_len", "H"),
        ),
    ),
    CONNECT: Layout(
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
    ),
    CHDIR: Layout(
        "chdir_event",
        (("ret", "i"), ("fd", "i"), ("path_len", "I"), ("_pad", "I")),
    ),
}

# struct sr_kpath, embedded as field k (ABI 2): the kernel's path.
_KPATH = (("k.len", "H"), ("k.src", "H"), ("k.root_len", "H"), ("k._pad", "H"))


def _grown(layout: Layout, *more: tuple[str, str]) -> Layout:
    return Layout(layout.c_name, layout.fields + more)


# ABI 2: exec, open and chdir grow a struct sr_kpath at their end.
_BODIES_V2: dict[int, Layout] = {
    **_BODIES_V1,
    EXEC: _grown(_BODIES_V1[EXEC], *_KPATH),
    OPEN: _grown(_BODIES_V1[OPEN], *_KPATH),
    CHDIR: _grown(_BODIES_V1[CHDIR], *_KPATH),
}

BODIES_BY_ABI: dict[int, dict[int, Layout]] = {1: _BODIES_V1, 2: _BODIES_V2}
# The layouts of this sessrec's BPF programs (checked against bpf/sessrec.h).
BODIES = BODIES_BY_ABI[ABI_VERSION]

_HDR = struct.Struct(HEADER.fmt)
HEADER_SIZE = _HDR.size
# Header and body unpacked in one call: the decoder runs once per event.
_FULL_BY_ABI = {
    abi: {t: struct.Struct(HEADER.fmt + b.fmt[1:]) for t, b in bodies.items()}
    for abi, bodies in BODIES_BY_ABI.items()
}
_FULL = _FULL_BY_ABI[ABI_VERSION]


def record_size(event_type: int, abi: int = ABI_VERSION) -> int:
    """Bytes of a record of this (known) type without its variable part."""
    return _FULL_BY_ABI[abi][event_type].size

Event = list[object]
_Handler = Callable[[memoryview | bytes], Event]


class Decoder:
    """Turns raw records into session-file arrays (docs/FORMAT.md):
    [type, ts, pid, tid, ppid, uid, comm, flags, *body], with ts relative to
    the session's monotonic origin. Unknown or malformed records are counted,
    never raised (the reader, replay/v2.py, decides what they mean). It runs
    once per event read, so each type's decoder is a single function with one
    unpack call; lengths taken from a record are checked against the record
    and the ABI's limits, as a session file is untrusted input."""

    def __init__(self, mono_origin_ns: int, abi: int = ABI_VERSION) -> None:
        if abi not in BODIES_BY_ABI:
            raise ValueError(f"no decoder for BPF ABI {abi}")
        self.origin = mono_origin_ns
        self.abi = abi
        self.unknown = 0
        self.malformed = 0
        # Indexed by type: a list lookup is cheaper than a dict lookup.
        self.by_type: list[_Handler | None] = [None] * 256
        handlers: list[tuple[int, _Handler]] = [
            (FORK, self._fork), (EXEC, self._exec), (EXIT, self._exit), (OPEN, self._open),
            (CONNECT, self._connect), (CHDIR, self._chdir)]
        if abi >= 2:
            handlers += [(EXEC, self._exec2), (OPEN, self._open2), (CHDIR, self._chdir2)]
        for t, fn in handlers:
            self.by_type[t] = fn

    def decode(self, raw: memoryview | bytes) -> Event | None:
        if len(raw) < HEADER_SIZE:
            self.malformed += 1
            return None
        fn = self.by_type[raw[0]] if raw[1] == 0 else None
        if fn is None:
            self.unknown += 1
            return None
        try:
            return fn(raw)
        except struct.error:
            self.malformed += 1
            return None

    # v: type, flags, size, ts, cgroup, pid, tid, ppid, uid, comm, body...

    def _fork(self, raw: memoryview | bytes) -> Event:
        v = _FORK(raw)
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10]]

    def _exec(self, raw: memoryview | bytes) -> Event:
        v = _EXEC(raw)
        flen, alen = v[12], v[13]
        if flen > PATH_MAX or alen > ARGV_MAX or _EXEC_SIZE + flen + alen > len(raw):
            raise struct.error("exec record: lengths beyond the record or the limits")
        data = bytes(raw[_EXEC_SIZE : _EXEC_SIZE + flen + alen])
        argv = data[flen:].split(b"\0")
        # The block ends with the last argument's NUL, unless cut short.
        if argv and argv[-1] == b"":
            argv.pop()
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], data[:flen], argv, v[11], v[14], v[15]]

    def _exit(self, raw: memoryview | bytes) -> Event:
        v = _EXIT(raw)
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10]]

    def _open(self, raw: memoryview | bytes) -> Event:
        v = _OPEN(raw)
        if v[15] > PATH_MAX or _OPEN_SIZE + v[15] > len(raw):
            raise struct.error("open record: path beyond the record or the limit")
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], v[14], v[11], bytes(raw[_OPEN_SIZE : _OPEN_SIZE + v[15]]), v[12], v[13]]

    def _connect(self, raw: memoryview | bytes) -> Event:
        v = _CONNECT(raw)
        if v[14] > SOCKADDR_MAX:
            raise struct.error("connect record: address longer than its field")
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], v[11], v[12], v[13], v[16][: v[14]]]

    def _chdir(self, raw: memoryview | bytes) -> Event:
        v = _CHDIR(raw)
        if v[12] > PATH_MAX or _CHDIR_SIZE + v[12] > len(raw):
            raise struct.error("chdir record: path beyond the record or the limit")
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], v[11], bytes(raw[_CHDIR_SIZE : _CHDIR_SIZE + v[12]])]


    # ABI 2: the same arrays, then the kernel's path, its source and the
    # length of its part outside the task's root (bpf/kpath.bpf.h).

    def _exec2(self, raw: memoryview | bytes) -> Event:
        v = _EXEC2(raw)
        flen, alen, klen = v[12], v[13], v[17]
        if (flen > PATH_MAX or alen > ARGV_MAX or klen > PATH_MAX
                or _EXEC2_SIZE + flen + alen + klen > len(raw)):
            raise struct.error("exec record: lengths beyond the record or the limits")
        data = bytes(raw[_EXEC2_SIZE : _EXEC2_SIZE + flen + alen + klen])
        argv = data[flen : flen + alen].split(b"\0")
        if argv and argv[-1] == b"":
            argv.pop()
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], data[:flen], argv, v[11], v[14], v[15], data[flen + alen :], v[18],
                v[19]]

    def _open2(self, raw: memoryview | bytes) -> Event:
        v = _OPEN2(raw)
        plen, klen = v[15], v[16]
        if plen > PATH_MAX or klen > PATH_MAX or _OPEN2_SIZE + plen + klen > len(raw):
            raise struct.error("open record: paths beyond the record or the limit")
        end = _OPEN2_SIZE + plen
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], v[14], v[11], bytes(raw[_OPEN2_SIZE:end]), v[12], v[13],
                bytes(raw[end : end + klen]), v[17], v[18]]

    def _chdir2(self, raw: memoryview | bytes) -> Event:
        v = _CHDIR2(raw)
        plen, klen = v[12], v[14]
        if plen > PATH_MAX or klen > PATH_MAX or _CHDIR2_SIZE + plen + klen > len(raw):
            raise struct.error("chdir record: paths beyond the record or the limit")
        end = _CHDIR2_SIZE + plen
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], v[9].rstrip(b"\0"), v[1],
                v[10], v[11], bytes(raw[_CHDIR2_SIZE:end]), bytes(raw[end : end + klen]),
                v[15], v[16]]


_V1 = _FULL_BY_ABI[1]
_V2 = _FULL_BY_ABI[2]
_EXEC2 = _V2[EXEC].unpack_from
_EXEC2_SIZE = _V2[EXEC].size
_OPEN2 = _V2[OPEN].unpack_from
_OPEN2_SIZE = _V2[OPEN].size
_CHDIR2 = _V2[CHDIR].unpack_from
_CHDIR2_SIZE = _V2[CHDIR].size
_FORK = _V1[FORK].unpack_from
_EXEC = _V1[EXEC].unpack_from
_EXEC_SIZE = _V1[EXEC].size
_EXIT = _V1[EXIT].unpack_from
_OPEN = _V1[OPEN].unpack_from
_OPEN_SIZE = _V1[OPEN].size
_CONNECT = _V1[CONNECT].unpack_from
_CHDIR = _V1[CHDIR].unpack_from
_CHDIR_SIZE = _V1[CHDIR].size
