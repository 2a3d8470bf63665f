"""Decoding of ring-buffer records into session-file event arrays.

The layouts below mirror the C structs of bpf/sessrec.h field by field.
They are not trusted by eye: tests/unit/test_abi_layout.py compiles the
header and checks every offset, size and enum value against these tables.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

ABI_VERSION = 1

# enum sr_event_type
FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6
EVENT_TYPE_MAX = 7

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

# Bodies follow the header ("h" in C).
BODIES: dict[int, Layout] = {
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

_HDR = struct.Struct(HEADER.fmt)
HEADER_SIZE = _HDR.size
# Header and body unpacked in one call: the decoder runs once per event.
_FULL = {t: struct.Struct(HEADER.fmt + b.fmt[1:]) for t, b in BODIES.items()}


def record_size(event_type: int) -> int:
    """Bytes of a record of this (known) type without its variable part."""
    return _FULL[event_type].size

Event = list[object]


class Decoder:
    """Turns raw records into session-file arrays (docs/FORMAT.md):
    [type, ts, pid, tid, ppid, uid, comm, flags, *body], with ts relative to
    the session's monotonic origin. Unknown or malformed records are counted,
    never raised (the reader, replay/v2.py, decides what they mean). It runs
    once per event read, so each type's decoder is a single function with one
    unpack call; lengths taken from a record are checked against the record
    and the ABI's limits, as a session file is untrusted input."""

    def __init__(self, mono_origin_ns: int) -> None:
        self.origin = mono_origin_ns
        self.unknown = 0
        self.malformed = 0
        # Indexed by type: a list lookup is cheaper than a dict lookup.
        self.by_type: list[Callable[[memoryview | bytes], Event] | None] = [None] * 256
        for t, fn in ((FORK, self._fork), (EXEC, self._exec), (EXIT, self._exit),
                      (OPEN, self._open), (CONNECT, self._connect), (CHDIR, self._chdir)):
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


_FORK = _FULL[FORK].unpack_from
_EXEC = _FULL[EXEC].unpack_from
_EXEC_SIZE = _FULL[EXEC].size
_EXIT = _FULL[EXIT].unpack_from
_OPEN = _FULL[OPEN].unpack_from
_OPEN_SIZE = _FULL[OPEN].size
_CONNECT = _FULL[CONNECT].unpack_from
_CHDIR = _FULL[CHDIR].unpack_from
_CHDIR_SIZE = _FULL[CHDIR].size
