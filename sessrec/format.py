"""The session file format: the one module that defines it.

docs/FORMAT.md describes the format for people; this module describes it for
the code. The writer (recorder.writer) and every reader (replay.v1, v2) take
their constants, layouts and record schemas from here, so they cannot drift.

Layout of a file (all integers little-endian), as a valid zstd stream:

    preamble     skippable frame 0x184D2A50: b"SESSREC\\0", u16 major, u16 minor
    chunk ...    skippable frame 0x184D2A51: u32 kind, u32 compressed_len,
                 u32 raw_len; then one zstd frame of compressed_len bytes whose
                 content is raw_len bytes of concatenated msgpack objects, or
                 (RECORDS, since 2.0) of framed BPF records, sessrec.records
    footer       skippable frame 0x184D2A52: u64 offset of the trailer's
                 descriptor (only in a completed file)

Events are msgpack arrays of the fields of sessrec.event's classes, in order.
Readers accept longer arrays (fields appended by a later minor version) and
ignore the extra fields.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from sessrec.errors import FormatError
from sessrec.event import FIELDS, REQUIRED_TYPES, TYPE_NAMES, EventType

# --- versions -----------------------------------------------------------------

FORMAT_MAJOR: Final = 2
FORMAT_MINOR: Final = 1
# 1.1: the optional audit keys. 2.0: RECORDS chunks, the BPF programs' records
# as the ring buffer gave them, decoded when read (1.x files are still read).
# 2.1: sealed files, the optional header key "seal" and "seal" maps in EVENTS
# chunks (sessrec.seal; 2.0 readers skip both); the daemon's keys: header
# "login" and "kind", trailer "left_running", "dropped" and "gaps", and
# "gap" maps (a stretch of the session with events missing).
SIGNATURE: Final = b"SESSREC\0"

# --- framing ------------------------------------------------------------------

SKIPPABLE_MAGIC_MIN: Final = 0x184D2A50
SKIPPABLE_MAGIC_MAX: Final = 0x184D2A5F
PREAMBLE_MAGIC: Final = 0x184D2A50
DESCRIPTOR_MAGIC: Final = 0x184D2A51
FOOTER_MAGIC: Final = 0x184D2A52

FRAME_HEAD: Final = struct.Struct("<II")  # magic, payload length
PREAMBLE: Final = struct.Struct("<II8sHH")  # frame head, signature, major, minor
DESCRIPTOR: Final = struct.Struct("<IIIII")  # frame head, kind, compressed_len, raw_len
FOOTER: Final = struct.Struct("<IIQ")  # frame head, trailer descriptor offset

PREAMBLE_PAYLOAD_LEN: Final = PREAMBLE.size - FRAME_HEAD.size  # 12
DESCRIPTOR_PAYLOAD_LEN: Final = DESCRIPTOR.size - FRAME_HEAD.size  # 12
FOOTER_PAYLOAD_LEN: Final = FOOTER.size - FRAME_HEAD.size  # 8


class ChunkKind(enum.IntEnum):
    """What a chunk's msgpack objects are."""

    HEADER = 1  # exactly one header map; the first chunk
    EVENTS = 2  # event arrays and "stats" maps
    TRAILER = 3  # exactly one trailer map; the last chunk
    RECORDS = 4  # since 2.0: framed ring-buffer records (RECORD_FRAME), not msgpack


# A frame in a RECORDS chunk, as in the BPF ring buffer (kernel/bpf/ringbuf.c),
# so the recorder copies each one with a single slice: u32 length of the
# record, u32 that readers ignore (the ring's page offset), then the record
# (length bytes, bpf/sessrec.h layouts of the header's abi_version). Frames
# follow each other without padding.
RECORD_FRAME: Final = struct.Struct("<II")
# Bits of the ring's length word that are flags; never set in a file.
RECORD_FLAG_BITS: Final = 0xC0000000


# --- limits for untrusted input -------------------------------------------------

# A chunk may not declare more raw bytes than this; the reader refuses it before
# allocating anything. The writer's chunks are about 1 MiB.
MAX_RAW_LEN: Final = 64 << 20
# zstd's worst case for MAX_RAW_LEN bytes, rounded up generously.
MAX_COMPRESSED_LEN: Final = MAX_RAW_LEN + (MAX_RAW_LEN >> 7) + 4096
# A chunk of msgpack (header, events, trailer) may not declare more raw bytes
# than this. Unpacking multiplies a length by up to about 72 (an empty map is
# one byte and a 64-byte dict), so this bounds what one object can take in
# memory (about 150 MB), whatever the chunk holds. The writer's event chunks
# end at the first event past 1 MiB.
MAX_MSGPACK_RAW_LEN: Final = 2 << 20
# msgpack.Unpacker limits. Paths are at most 4096 bytes and argv at most
# 32 KiB in ABI 1; these leave room for growth but stop absurd allocations.
UNPACK_LIMITS: Final[Mapping[str, int]] = {
    "max_bin_len": 1 << 20,
    "max_str_len": 1 << 20,
    "max_array_len": 1 << 20,
    "max_map_len": 1 << 16,
    "max_ext_len": 0,  # ext types are not used
}


def pack_preamble(major: int = FORMAT_MAJOR, minor: int = FORMAT_MINOR) -> bytes:
    """The 20 bytes every session file starts with."""
    return PREAMBLE.pack(PREAMBLE_MAGIC, PREAMBLE_PAYLOAD_LEN, SIGNATURE, major, minor)


def unpack_preamble(data: bytes, path: str | None = None) -> tuple[int, int]:
    """(major, minor) from the first PREAMBLE.size bytes of a file.

    The preamble's layout is the same for every version, forever."""
    if len(data) < PREAMBLE.size:
        fixed = pack_preamble()[: FRAME_HEAD.size + len(SIGNATURE)]
        if fixed.startswith(data[: len(fixed)]):
            raise FormatError("file too short: it ends inside the preamble", path, len(data))
        raise FormatError("not a sessrec session file", path, 0)
    magic, length, signature, major, minor = PREAMBLE.unpack_from(data)
    if magic != PREAMBLE_MAGIC or length != PREAMBLE_PAYLOAD_LEN or signature != SIGNATURE:
        raise FormatError("not a sessrec session file", path, 0)
    return major, minor


def pack_descriptor(kind: int, compressed_len: int, raw_len: int) -> bytes:
    return DESCRIPTOR.pack(DESCRIPTOR_MAGIC, DESCRIPTOR_PAYLOAD_LEN, kind, compressed_len, raw_len)


def pack_footer(trailer_offset: int) -> bytes:
    return FOOTER.pack(FOOTER_MAGIC, FOOTER_PAYLOAD_LEN, trailer_offset)


# --- events -------------------------------------------------------------------

# Event arrays hold the fields of sessrec.event's classes, in order (docs/
# FORMAT.md, Events): the typed events are the one definition of them.


def event_problem(ev: Sequence[object]) -> str | None:
    """Why ev is not a well-formed event of a known type, or None if it is.

    Unknown type numbers are not a problem here: readers count and skip them.
    This is the slow, explanatory check; readers use a fast path and call it
    on failure."""
    if not ev or type(ev[0]) is not int:
        return "event array does not start with an integer type"
    types = REQUIRED_TYPES.get(ev[0])
    if types is None:
        return None
    name = TYPE_NAMES[ev[0]]
    if len(ev) < len(types):
        return f"{name} event has {len(ev)} fields, needs {len(types)}"
    for field, want, value in zip(FIELDS[ev[0]], types, ev, strict=False):
        if type(value) is not want:
            return (
                f"{name} event field {field!r} is {type(value).__name__}, "
                f"should be {want.__name__}"
            )
    if ev[0] == EventType.EXEC:
        for item in ev[FIELDS[ev[0]].index("argv")]:  # type: ignore[attr-defined]
            if type(item) is not bytes:
                return f"exec event argv item is {type(item).__name__}, should be bytes"
    return None


# --- records ------------------------------------------------------------------


class _Opt:
    def __init__(self, spec: object):
        self.spec = spec


class _ListOf:
    def __init__(self, spec: object, length: int | None = None):
        self.spec = spec
        self.length = length


class _MapOf:
    """A map with str keys and values of one spec."""

    def __init__(self, spec: object):
        self.spec = spec


class _OneOf:
    def __init__(self, *types: type):
        self.types = types


def _problem(value: object, spec: object, where: str) -> str | None:
    if isinstance(spec, _OneOf):
        if type(value) in spec.types:
            return None
        return f"{where} is {type(value).__name__}, should be " + " or ".join(
            t.__name__ for t in spec.types)
    if isinstance(spec, _Opt):
        return None if value is None else _problem(value, spec.spec, where)
    if isinstance(spec, _ListOf):
        if type(value) is not list:
            return f"{where} should be a list"
        if spec.length is not None and len(value) != spec.length:
            return f"{where} should have {spec.length} items"
        for i, item in enumerate(value):
            p = _problem(item, spec.spec, f"{where}[{i}]")
            if p:
                return p
        return None
    if isinstance(spec, _MapOf):
        if type(value) is not dict:
            return f"{where} should be a map"
        for k, v in value.items():
            if type(k) is not str:
                return f"{where} has a non-str key"
            p = _problem(v, spec.spec, f"{where}[{k!r}]")
            if p:
                return p
        return None
    if isinstance(spec, dict):
        if type(value) is not dict:
            return f"{where} should be a map"
        for k, sub in spec.items():
            if k not in value:
                return f"{where} lacks key {k!r}"
            p = _problem(value[k], sub, f"{where}[{k!r}]")
            if p:
                return p
        return None
    assert isinstance(spec, type)
    if type(value) is not spec:
        return f"{where} is {type(value).__name__}, should be {spec.__name__}"
    return None


# Required keys and their types. Readers keep unknown extra keys; adding a key is
# a minor version change (docs/FORMAT.md).
HEADER_SCHEMA: Final[Mapping[str, object]] = {
    "k": str,
    "format": _ListOf(int, 2),
    "session_id": str,
    "hostname": str,
    "kernel": str,
    "user": str,
    "uid": int,
    "login_uid": _Opt(int),
    "audit_session_id": _Opt(int),
    "command": _ListOf(str),
    "cwd": bytes,
    "leader_pid": int,
    "started_at": str,
    "clock": {"wall_ns": int, "mono_ns": int},
    "cgroup": str,
    "cgroup_id": int,
    "recorder": {"version": str, "pid": int},
    "limits": {"argv_max": int, "path_max": int},
    "abi_version": int,
}

TRAILER_SCHEMA: Final[Mapping[str, object]] = {
    "k": str,
    "ended_at": str,
    "counts": _MapOf(int),
    "lost": _MapOf(int),
    "truncated": {"argv": int, "path": int},
    "unknown_types": int,
    "exit_status": _Opt(int),
    "end_reason": str,
}

STATS_SCHEMA: Final[Mapping[str, object]] = {"k": str, "ts": int, "lost": _MapOf(int)}

# 2.1: events between ts and end (ns from the header's clock.mono_ns) are
# missing: the daemon was not running ("restart"), or they could not be
# written ("output-error", with how many by type in "dropped").
GAP_SCHEMA: Final[Mapping[str, object]] = {
    "k": str, "ts": int, "end": int, "reason": str, "detail": str,
    "dropped": _Opt(_MapOf(int)),
}
GAP_REASONS: Final = ("restart", "output-error")

# Optional keys, added by minor versions: absent from older files; when
# present, of this shape (docs/FORMAT.md, docs/AUDIT.md).
HEADER_OPTIONAL: Final[Mapping[str, object]] = {
    # 1.1: the kernel's audit status and the start record (recorder/audit.py)
    "audit": {
        "record_type": int,
        "status": _Opt(_MapOf(int)),
        "sender_session_id": _Opt(int),
        "start_record": bool,
        "reason": _Opt(str),
    },
    # 2.1: who logged in (the daemon's start request: untrusted, validated
    # there) and how the session was enrolled ("record", "pam", "logind")
    "login": _MapOf(_OneOf(str, int)),
    "kind": str,
    # 2.1: the node seal key's epoch of a sealed file (sessrec.seal)
    "seal": {"node_id": str, "epoch": int, "scheme": str},
    # 2.1: what the kernel offered the programs, and what is not recorded
    # for want of it (recorder/kfeatures.py)
    "kernel_features": {
        "release": str,
        "ringbuf": bool,
        "task_pt_regs": bool,
        "openat2": bool,
        "exit_group_dead": bool,
        "headers": str,
        "headers_match": bool,
        "notices": _ListOf(str),
    },
}
TRAILER_OPTIONAL: Final[Mapping[str, object]] = {
    # 1.1: the end record
    "audit": {"end_record": bool, "reason": _Opt(str)},
    # 2.1: processes still running when the session ended (moved out of it,
    # not killed), and records that could not be written, by type
    "left_running": _ListOf(int),
    "dropped": _MapOf(int),
    # 2.1: the session's "gap" maps again, so that a summary needs no scan
    "gaps": _ListOf({"ts": int, "end": int, "reason": str, "detail": str}),
}
_OPTIONAL: Final[Mapping[str, Mapping[str, object]]] = {
    "header": HEADER_OPTIONAL,
    "trailer": TRAILER_OPTIONAL,
}


def _validate(
    obj: object, schema: Mapping[str, object], kind: str, path: str | None, offset: int | None
) -> dict[str, Any]:
    problem = _problem(obj, dict(schema), kind)
    if problem is None:
        assert isinstance(obj, dict)
        if obj["k"] != kind:
            problem = f"{kind} has k={obj['k']!r}, should be {kind!r}"
        for key, spec in _OPTIONAL.get(kind, {}).items():
            if problem is None and key in obj:
                problem = _problem(obj[key], spec, f"{kind}[{key!r}]")
    if problem is not None:
        raise FormatError(f"bad {kind} record: {problem}", path, offset)
    return obj  # type: ignore[return-value]


def validate_header(
    obj: object, path: str | None = None, offset: int | None = None
) -> dict[str, Any]:
    """obj as a header map, or FormatError naming the first problem."""
    return _validate(obj, HEADER_SCHEMA, "header", path, offset)


def validate_trailer(
    obj: object, path: str | None = None, offset: int | None = None
) -> dict[str, Any]:
    return _validate(obj, TRAILER_SCHEMA, "trailer", path, offset)


def validate_gap(
    obj: object, path: str | None = None, offset: int | None = None
) -> dict[str, Any]:
    return _validate(obj, GAP_SCHEMA, "gap", path, offset)


def validate_stats(
    obj: object, path: str | None = None, offset: int | None = None
) -> dict[str, Any]:
    return _validate(obj, STATS_SCHEMA, "stats", path, offset)


UNSET_ID: Final = 4294967295  # (u32)-1: loginuid/sessionid never set


def optional_id(value: int) -> int | None:
    """A login uid or audit session id as the header stores it: None if unset."""
    return None if value in (UNSET_ID, -1) else value


# --- decoding helpers -----------------------------------------------------------

TEXT_ERRORS: Final = "backslashreplace"


def text(data: bytes) -> str:
    """Kernel bytes as text: UTF-8, undecodable bytes as \\xNN escapes."""
    return data.decode("utf-8", TEXT_ERRORS)


def rfc3339_us(wall_ns: int) -> str:
    """'2026-11-21T11:10:02.123456Z' (header and trailer times)."""
    sec, ns = divmod(wall_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns // 1000:06d}Z"


class TimeFormatter:
    """RFC 3339 UTC with nanoseconds, '2026-11-21T11:10:02.123456789Z'.

    Caches the formatted second: consecutive events mostly share it."""

    __slots__ = ("_prefix", "_sec")

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self, wall_ns: int) -> str:
        sec, ns = divmod(wall_ns, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = self.second(sec)
        return f"{self._prefix}.{ns:09d}Z"

    @staticmethod
    def second(sec: int) -> str:
        """'2026-11-21T11:10:02': the time's text up to its second."""
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))


class ExitStatus(NamedTuple):
    exit_code: int | None  # set when the process exited normally
    signal: int | None  # set when a signal killed it
    core_dumped: bool


def decode_exit(raw: int) -> ExitStatus:
    """Split the kernel's task->exit_code (a wait status)."""
    sig = raw & 0x7F
    if sig == 0:
        return ExitStatus((raw >> 8) & 0xFF, None, False)
    return ExitStatus(None, sig, bool(raw & 0x80))


def shell_status(raw: int) -> int:
    """The status as a shell reports it in $?: the code, or 128 + signal."""
    sig = raw & 0x7F
    return (raw >> 8) & 0xFF if sig == 0 else 128 + sig


AT_FDCWD: Final = -100
O_CLOEXEC: Final = 0o2000000

OPEN_SYSCALLS: Final = ("open", "openat", "openat2", "creat")  # enum sr_open_syscall
EXEC_SYSCALLS: Final = ("execve", "execveat")  # enum sr_exec_syscall


def syscall_name(names: tuple[str, ...], number: int) -> str:
    return names[number] if 0 <= number < len(names) else f"syscall_{number}"


# O_* values of asm-generic/fcntl.h (x86-64, most architectures). arm64, ppc
# and others differ for a few bits; the raw flags stay authoritative.
_ACCMODE_NAMES: Final = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")
_O_DSYNC: Final = 0o10000
_O_DIRECTORY: Final = 0o200000
_O_SYNC_BIT: Final = 0o4000000  # __O_SYNC; O_SYNC is __O_SYNC | O_DSYNC
_O_TMPFILE_BIT: Final = 0o20000000  # __O_TMPFILE; O_TMPFILE is it | O_DIRECTORY
_FLAG_BITS: Final = (
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (_O_DSYNC, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (_O_DIRECTORY, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (_O_SYNC_BIT, "__O_SYNC"),
    (0o10000000, "O_PATH"),
    (_O_TMPFILE_BIT, "__O_TMPFILE"),
)


@functools.lru_cache(maxsize=1024)
def open_flag_names(flags: int) -> tuple[str, ...]:
    """('O_WRONLY', 'O_CREAT', ...) for open flags, in bit order; O_SYNC and
    O_TMPFILE (two bits each) by their name; unknown bits as one hex item."""
    names = [_ACCMODE_NAMES[flags & 3]]
    rest = flags & ~3
    sync = rest & _O_SYNC_BIT and rest & _O_DSYNC
    tmpfile = rest & _O_TMPFILE_BIT and rest & _O_DIRECTORY
    for bit, name in _FLAG_BITS:
        if not rest & bit:
            continue
        rest &= ~bit
        if (sync and bit == _O_DSYNC) or (tmpfile and bit == _O_DIRECTORY):
            continue  # named with the other bit
        if sync and bit == _O_SYNC_BIT:
            name = "O_SYNC"
        elif tmpfile and bit == _O_TMPFILE_BIT:
            name = "O_TMPFILE"
        names.append(name)
    if rest:
        names.append(hex(rest))
    return tuple(names)


AF_UNIX: Final = 1
AF_INET: Final = 2
AF_INET6: Final = 10
FAMILY_NAMES: Final[Mapping[int, str]] = {AF_UNIX: "unix", AF_INET: "inet", AF_INET6: "inet6"}
SOCK_TYPE_NAMES: Final[Mapping[int, str]] = {1: "stream", 2: "dgram", 5: "seqpacket"}
PROTOCOL_NAMES: Final[Mapping[int, str]] = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    58: "icmpv6",
    132: "sctp",
    262: "mptcp",
}


class SockAddr(NamedTuple):
    family: int
    family_name: str  # "inet", "inet6", "unix", else "af_N"
    address: str | None  # IP address, unix path, or "@abstract"; None if too short
    port: int | None  # None for unix and when too short


@functools.lru_cache(maxsize=4096)
def decode_sockaddr(raw: bytes) -> SockAddr:
    """Decode a struct sockaddr as the caller passed it to connect().

    sa_family is native-endian on the recording machine. Every address family
    is below 256, so the byte that is non-zero tells the byte order: a file
    recorded on a big-endian machine decodes correctly anywhere."""
    if len(raw) < 2:
        return SockAddr(0, "af_0", None, None)
    big = raw[0] == 0 and raw[1] != 0
    family = raw[1] if big else raw[0] | raw[1] << 8
    name = FAMILY_NAMES.get(family) or f"af_{family}"
    if family == AF_INET:
        if len(raw) < 8:
            return SockAddr(family, name, None, None)
        port = int.from_bytes(raw[2:4], "big")
        return SockAddr(family, name, str(ipaddress.IPv4Address(raw[4:8])), port)
    if family == AF_INET6:
        if len(raw) < 24:
            return SockAddr(family, name, None, None)
        port = int.from_bytes(raw[2:4], "big")
        ip6 = ipaddress.IPv6Address(raw[8:24])
        mapped = ip6.ipv4_mapped
        # Spelled out: str() of a mapped address changed in Python 3.13.
        addr = str(ip6) if mapped is None else f"::ffff:{mapped}"
        if len(raw) >= 28:
            scope = int.from_bytes(raw[24:28], "big" if big else "little")
            if scope:
                addr = f"{addr}%{scope}"
        return SockAddr(family, name, addr, port)
    if family == AF_UNIX:
        sun_path = raw[2:]
        if sun_path[:1] == b"\0":
            return SockAddr(family, name, "@" + text(sun_path[1:]), None)
        return SockAddr(family, name, text(sun_path.split(b"\0", 1)[0]), None)
    return SockAddr(family, name, None, None)


def protocol_name(family: int, sock_type: int, protocol: int) -> str | None:
    """'tcp', 'udp', 'mptcp', 'sctp' for inet sockets; 'stream', 'dgram',
    'seqpacket' for unix sockets; None when unknown."""
    if family in (AF_INET, AF_INET6):
        if protocol:
            return PROTOCOL_NAMES.get(protocol) or f"proto_{protocol}"
        return SOCK_TYPE_NAMES.get(sock_type)
    if family == AF_UNIX:
        return SOCK_TYPE_NAMES.get(sock_type)
    return PROTOCOL_NAMES.get(protocol) if protocol else None
