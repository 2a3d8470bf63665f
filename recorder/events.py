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
_TYPE_SIZE = struct.Struct("<HHI")

Event = list[object]


def _comm(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


class Decoder:
    """Turns raw records into session-file arrays (docs/FORMAT.md):
    [type, ts, pid, tid, ppid, uid, comm, flags, *body], with ts relative to
    the session's monotonic origin. Unknown or malformed records are counted,
    never raised: this runs in the drain loop."""

    def __init__(self, mono_origin_ns: int) -> None:
        self.origin = mono_origin_ns
        self.unknown = 0
        self.malformed = 0
        self._dispatch: dict[int, Callable[[memoryview | bytes], Event]] = {
            FORK: self._fork,
            EXEC: self._exec,
            EXIT: self._exit,
            OPEN: self._open,
            CONNECT: self._connect,
            CHDIR: self._chdir,
        }

    @staticmethod
    def peek(raw: memoryview | bytes) -> tuple[int, int]:
        """(type, cgroup_id) of a record, to route it before decoding."""
        typ = _TYPE_SIZE.unpack_from(raw)[0]
        (cg,) = struct.unpack_from("<Q", raw, 16)
        return typ, cg

    def decode(self, raw: memoryview | bytes) -> Event | None:
        if len(raw) < HEADER_SIZE:
            self.malformed += 1
            return None
        typ = raw[0] | (raw[1] << 8)
        fn = self._dispatch.get(typ)
        if fn is None:
            self.unknown += 1
            return None
        try:
            return fn(raw)
        except struct.error:
            self.malformed += 1
            return None

    def _common(self, v: tuple[object, ...]) -> Event:
        # v: type, flags, size, ts, cgroup, pid, tid, ppid, uid, comm, ...
        return [v[0], v[3] - self.origin, v[5], v[6], v[7], v[8], _comm(v[9]), v[1]]  # type: ignore[operator,arg-type]

    def _fork(self, raw: memoryview | bytes) -> Event:
        v = _FULL[FORK].unpack_from(raw)
        e = self._common(v)
        e.append(v[10])
        return e

    def _exec(self, raw: memoryview | bytes) -> Event:
        s = _FULL[EXEC]
        v = s.unpack_from(raw)
        ret, argc, flen, alen, old_pid, sysno = v[10], v[11], v[12], v[13], v[14], v[15]
        base = s.size
        data = bytes(raw[base : base + flen + alen])
        filename = data[:flen]
        argv = data[flen:].split(b"\0")
        # The block ends with the last argument's NUL, unless cut short.
        if argv and argv[-1] == b"":
            argv.pop()
        e = self._common(v)
        e += (ret, filename, argv, argc, old_pid, sysno)
        return e

    def _exit(self, raw: memoryview | bytes) -> Event:
        v = _FULL[EXIT].unpack_from(raw)
        e = self._common(v)
        e.append(v[10])
        return e

    def _open(self, raw: memoryview | bytes) -> Event:
        s = _FULL[OPEN]
        v = s.unpack_from(raw)
        plen = v[15]
        e = self._common(v)
        e += (v[10], v[14], v[11], bytes(raw[s.size : s.size + plen]), v[12], v[13])
        return e

    def _connect(self, raw: memoryview | bytes) -> Event:
        v = _FULL[CONNECT].unpack_from(raw)
        alen = v[14]
        e = self._common(v)
        e += (v[10], v[11], v[12], v[13], v[16][:alen])
        return e

    def _chdir(self, raw: memoryview | bytes) -> Event:
        s = _FULL[CHDIR]
        v = s.unpack_from(raw)
        plen = v[12]
        e = self._common(v)
        e += (v[10], v[11], bytes(raw[s.size : s.size + plen]))
        return e
