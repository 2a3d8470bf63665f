"""The events of a session, typed: one class per event type, with named
fields, made once by the reader (from a ring-buffer record, sessrec/records.py,
or from a 1.x event array, replay/v1.py) and read by name by every consumer.

The type numbers, flags and field order are those of bpf/sessrec.h and
docs/FORMAT.md (Events); tests/unit/test_abi_layout.py checks the numbers
against the compiled header. The classes are NamedTuples: an event is a tuple
in the file's field order (so a 1.x array becomes one without a copy of its
fields), and a field is read by name at the cost of an index.

A field added by a later minor version goes at the end of its class, with a
default, so that older files (shorter arrays, older ABIs) still make whole
events (docs/FORMAT.md, Versioning).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping, Sequence
from typing import Final, NamedTuple

from sessrec.linux import EINPROGRESS  # a connect in progress: not a failure


class EventType(enum.IntEnum):
    """enum sr_event_type in bpf/sessrec.h. Append-only."""

    FORK = 1
    EXEC = 2
    EXIT = 3
    OPEN = 4
    CONNECT = 5
    CHDIR = 6
    # 7 is SR_EVENT_ARGV: a part of an exec's argv, joined to it when read.
    CGROUP = 8  # a session process moved to another cgroup (BPF ABI 2)


TYPE_NAMES: Final[Mapping[int, str]] = {t.value: t.name.lower() for t in EventType}
TYPE_BY_NAME: Final[Mapping[str, int]] = {n: v for v, n in TYPE_NAMES.items()}
# Names of what the kernel counts as lost (its `lost` map, by record type):
# the event types, argv parts, and processes the members map had no room for.
LOST_NAMES: Final[Mapping[int, str]] = {**TYPE_NAMES, 0: "session_membership", 7: "argv_part"}


class EventFlag(enum.IntFlag):
    """enum sr_event_flags in bpf/sessrec.h."""

    PATH_TRUNCATED = 1 << 0  # a path hit the capture limit
    ARGV_TRUNCATED = 1 << 1  # argv hit the capture limit or the argument count
    READ_FAILED = 1 << 2  # a user-memory read failed: the path or argv is missing
    # BPF ABI 2: the kernel's path (kpath) of an exec, open or chdir
    KPATH_TRUNCATED = 1 << 3  # longer than the walk holds: none given
    KPATH_DELETED = 1 << 4  # the file had been unlinked
    KPATH_UNREACHABLE = 1 << 5  # outside the task's root: given from the namespace's root
    KPATH_NONE = 1 << 6  # no kernel object to take it from
    # The caller's memory and the kernel's object disagree beyond what
    # resolution explains, or a session process left its session's cgroup.
    TAMPERED = 1 << 7


class KpathSource(enum.IntEnum):
    """enum sr_kpath_src in bpf/sessrec.h: what an event's kernel path is of."""

    NONE = 0  # none was taken
    FILE = 1  # the object itself (the file opened, the executable, the new cwd)
    CWD = 2  # the cwd a failed request was relative to
    DIRFD = 3  # the dirfd's file a failed request was relative to
    ROOT = 4  # the task's root (a failed absolute request)


# Plain ints for hot loops: int & IntFlag builds an enum member on every event.
PATH_TRUNCATED: Final = int(EventFlag.PATH_TRUNCATED)
ARGV_TRUNCATED: Final = int(EventFlag.ARGV_TRUNCATED)
READ_FAILED: Final = int(EventFlag.READ_FAILED)
TAMPERED: Final = int(EventFlag.TAMPERED)
KPATH_DELETED: Final = int(EventFlag.KPATH_DELETED)
KPATH_UNREACHABLE: Final = int(EventFlag.KPATH_UNREACHABLE)



# Every class starts with the common fields: type, ts (ns since the header's
# clock.mono_ns), pid (thread-group id), tid, ppid, uid, comm, flags.


class Fork(NamedTuple):
    """A new process (threads are not reported)."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    child_pid: int


class Exec(NamedTuple):
    """An exec, successful or failed (ret < 0)."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    ret: int  # 0 or -errno
    requested_path: bytes  # the filename as passed, maybe relative
    argv: list[bytes]  # argv[0] included; maybe truncated
    argc: int  # the original count
    old_pid: int  # the tid that called exec
    syscall: int  # 0 execve, 1 execveat
    # BPF ABI 2: the executable the kernel ran (or, failed, what the request
    # was resolved from), whose first kroot_len bytes lie outside the root;
    # argv_total bytes of argv, argv_parts continuation records (joined).
    kpath: bytes = b""
    kpath_src: int = 0  # KpathSource
    kroot_len: int = 0
    argv_total: int = 0
    argv_parts: int = 0


class Exit(NamedTuple):
    """The exit of a process's last thread."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    exit_code_raw: int  # the kernel's task->exit_code, a wait status


class Open(NamedTuple):
    """open, openat, openat2 or creat."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    ret: int  # fd or -errno
    syscall: int  # 0 open, 1 openat, 2 openat2, 3 creat
    dirfd: int  # -100 = AT_FDCWD
    requested_path: bytes  # as passed
    open_flags: int  # O_* bits
    mode: int
    # BPF ABI 2: the file the kernel opened (or, failed, what the request
    # was resolved from), whose first kroot_len bytes lie outside the root.
    kpath: bytes = b""
    kpath_src: int = 0  # KpathSource
    kroot_len: int = 0


class Connect(NamedTuple):
    """connect, with the address the caller passed."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    ret: int  # 0 or -errno (-EINPROGRESS for non-blocking)
    fd: int
    sock_type: int
    protocol: int  # sk_protocol
    sockaddr: bytes  # struct sockaddr as passed
    # BPF ABI 2: the destination the kernel stored in the socket, as a
    # sockaddr; kaddr_src 1 when there is one (0: the caller's is all).
    kaddr_src: int = 0
    kaddr: bytes = b""


class Chdir(NamedTuple):
    """chdir (fd -1, requested_path set) or fchdir (fd set, requested_path b"")."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    ret: int
    fd: int
    requested_path: bytes
    # BPF ABI 2: the new cwd the kernel set (or, failed, what the request
    # was resolved from), whose first kroot_len bytes lie outside the root.
    kpath: bytes = b""
    kpath_src: int = 0  # KpathSource
    kroot_len: int = 0


class Cgroup(NamedTuple):
    """A session process moved to a cgroup (BPF ABI 2). The common fields are
    the mover's (it may be the process itself); moved_pid is the process
    moved. It stays recorded wherever it goes; a move out of the session's
    cgroup is flagged TAMPERED."""

    type: int
    ts: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int
    dst_id: int  # the destination cgroup's id
    dst_root: int  # its hierarchy id; 0 is cgroup2
    dst_level: int
    moved_pid: int
    dst_path: bytes


Event = Fork | Exec | Exit | Open | Connect | Chdir | Cgroup

CLASSES: Final[Mapping[int, type[Event]]] = {
    EventType.FORK: Fork,
    EventType.EXEC: Exec,
    EventType.EXIT: Exit,
    EventType.OPEN: Open,
    EventType.CONNECT: Connect,
    EventType.CHDIR: Chdir,
    EventType.CGROUP: Cgroup,
}
# For the file format's field tables (sessrec/format.py) and readers.
FIELDS: Final[Mapping[int, tuple[str, ...]]] = {t: c._fields for t, c in CLASSES.items()}


def make(fields: Sequence[object]) -> Event:
    """The event of a checked array of fields (docs/FORMAT.md, Events),
    typed as far as this version knows: fields a newer minor version
    appended are dropped; fields this one appended, when absent (an older
    file), take their defaults."""
    cls = CLASSES[fields[0]]  # type: ignore[index]
    n = len(cls._fields)
    if len(fields) >= n:
        return _new(cls, fields[:n])
    return _new(cls, (*fields, *(cls._field_defaults[f] for f in cls._fields[len(fields) :])))


_new = tuple.__new__


def _runtime_type(hint: object) -> type:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and origin is None:
        return hint
    if origin is list:
        return list
    raise TypeError(f"no runtime check for {hint!r}")  # pragma: no cover


# The Python type of every field without a default (those every version of
# the file has), in order: what a reader checks before making an event.
REQUIRED_TYPES: Final[Mapping[int, tuple[type, ...]]] = {
    t: tuple(_runtime_type(h) for name, h in typing.get_type_hints(c).items()
             if name not in c._field_defaults)
    for t, c in CLASSES.items()
}
# The type of every field, those with defaults too: a field appended by a
# later version is checked like the others when a file has it.
FIELD_TYPES: Final[Mapping[int, tuple[type, ...]]] = {
    t: tuple(_runtime_type(h) for h in typing.get_type_hints(c).values())
    for t, c in CLASSES.items()
}


def failed(ev: Event) -> bool:
    """Whether an event reports a failure: a negative return (but a
    non-blocking connect's EINPROGRESS), or an exit with a non-zero code or
    by a signal. The one rule: the timeline, the tree, the index and the
    HTML page (which receives the verdict) all use it."""
    if isinstance(ev, _RETURNING):  # a tuple: faster than a union here
        return ev.ret < 0
    if isinstance(ev, Connect):
        return ev.ret < 0 and ev.ret != -EINPROGRESS
    if isinstance(ev, Exit):
        return ev.exit_code_raw != 0
    return False


_RETURNING: Final = (Open, Exec, Chdir)


def event_problem(ev: Sequence[object]) -> str | None:
    """Why the array ev is not a well-formed event of a known type, or None
    if it is. Unknown type numbers are not a problem here: readers count and
    skip them. The slow, explanatory check: readers use a fast path and call
    it on failure."""
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
        argv = ev[FIELDS[EventType.EXEC].index("argv")]
        for item in argv:  # type: ignore[attr-defined]
            if type(item) is not bytes:
                return f"exec event argv item is {type(item).__name__}, should be bytes"
    return None
