"""Typed events built from the raw event arrays, and the path resolver.

The file stores paths exactly as the program passed them: relative to its
working directory or to a directory file descriptor. PathResolver replays the
session's chdir, open, fork, exec and exit events to turn them into absolute
paths. It is lexical only: symlinks are not followed and ".." is applied to
the text, because the recorder does not see the file system (docs/FORMAT.md).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from replay.base import Session
from sessrec import format as fmt
from sessrec.format import AT_FDCWD, O_CLOEXEC, EventFlag, EventType

# --- path resolution ----------------------------------------------------------------


def normalize(path: bytes) -> bytes:
    """Lexically normalise an absolute path: '//a/./b/../c/' -> '/a/c'."""
    if b"//" not in path and b"/." not in path and (path[-1:] != b"/" or path == b"/"):
        return path  # already normal: the common case, without normpath's cost
    p = posixpath.normpath(path)
    return p[1:] if p.startswith(b"//") else p


class _Proc:
    """What the resolver knows of one process (thread group)."""

    __slots__ = ("cloexec", "cwd", "fds")

    def __init__(
        self,
        cwd: bytes | None,
        fds: dict[int, bytes] | None = None,
        cloexec: set[int] | None = None,
    ):
        self.cwd = cwd
        self.fds: dict[int, bytes] = fds if fds is not None else {}
        self.cloexec: set[int] = cloexec if cloexec is not None else set()

    def copy(self) -> _Proc:
        return _Proc(self.cwd, dict(self.fds), set(self.cloexec))


_DEV_FD = b"/dev/fd/"
_KFILE, _KCWD, _KDIRFD, _KROOT = (int(fmt.KpathSource.FILE), int(fmt.KpathSource.CWD),
                                  int(fmt.KpathSource.DIRFD), int(fmt.KpathSource.ROOT))


def kernel_path(ev: list[Any], at: int, request: bytes) -> bytes | None:
    """The path the kernel's objects give an event (BPF ABI 2),
    or None when it has none (older files, or nothing taken): the object's
    own path, or for a failed call the request joined to the directory the
    kernel resolved it from (lexically: the file does not exist)."""
    if len(ev) <= at + 1:
        return None
    kpath: bytes = ev[at]
    src = ev[at + 1]
    if src == _KFILE:
        return kpath
    if src == _KCWD or src == _KDIRFD:
        return normalize(kpath + b"/" + request) if request else kpath
    if src == _KROOT:
        return normalize(kpath.rstrip(b"/") + request)
    return None


class PathResolver:
    """Tracks the working directory and open file descriptors of each process
    (keyed by pid = thread-group id) to resolve the paths of events.

    Rules: the leader starts in the header's cwd; a fork copies the parent's cwd
    and descriptors to the child; a successful exec drops descriptors opened
    with O_CLOEXEC; a successful open records fds[ret]; a successful chdir sets
    the cwd, a successful fchdir sets it to the descriptor's path if known; an
    exit forgets the process. A process never seen has an unknown cwd until it
    changes to an absolute path.

    Limits: close, dup, socket and descriptors passed between processes are not
    recorded, so a descriptor number may be stale, and a file descriptor table
    shared with clone(CLONE_FILES) is treated as copied."""

    def __init__(self, leader_pid: int | None = None, cwd: bytes | None = None):
        self._procs: dict[int, _Proc] = {}
        if leader_pid is not None:
            self._procs[leader_pid] = _Proc(normalize(cwd) if cwd else None)
        self._apply: dict[int, Callable[[list[Any]], bytes | None]] = {
            EventType.FORK: self._fork,
            EventType.EXEC: self._exec,
            EventType.EXIT: self._exit,
            EventType.OPEN: self._open,
            EventType.CHDIR: self._chdir,
        }

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> PathResolver:
        return cls(header["leader_pid"], header["cwd"])

    def cwd(self, pid: int) -> bytes | None:
        proc = self._procs.get(pid)
        return None if proc is None else proc.cwd

    def fd_path(self, pid: int, fd: int) -> bytes | None:
        proc = self._procs.get(pid)
        return None if proc is None else proc.fds.get(fd)

    def resolve(self, pid: int, dirfd: int, path: bytes) -> bytes | None:
        """path as an absolute path, relative to pid's cwd (dirfd AT_FDCWD) or
        to the directory dirfd; None if the base is unknown or path is empty."""
        if not path:
            return None
        if path[0] == 0x2F:  # "/"
            return normalize(path)
        proc = self._procs.get(pid)
        if proc is None:
            return None
        base = proc.cwd if dirfd == AT_FDCWD else proc.fds.get(dirfd)
        if base is None:
            return None
        return normalize(base + b"/" + path)

    def apply(self, ev: list[Any]) -> bytes | None:
        """Update the state with one event; return its resolved path.

        exec: the executable; open: the file; chdir: the target directory (also
        when the call failed); other types: None."""
        handler = self._apply.get(ev[0])
        return None if handler is None else handler(ev)

    def _proc(self, pid: int) -> _Proc:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = _Proc(None)
        return proc

    def _fork(self, ev: list[Any]) -> bytes | None:
        parent = self._procs.get(ev[fmt.I_PID])
        self._procs[ev[fmt.FORK_CHILD_PID]] = _Proc(None) if parent is None else parent.copy()
        return None

    def _exec(self, ev: list[Any]) -> bytes | None:
        pid = ev[fmt.I_PID]
        filename: bytes = ev[fmt.EXEC_FILENAME]
        kpath = kernel_path(ev, fmt.EXEC_KPATH, filename)
        if kpath is not None:
            path: bytes | None = kpath
        elif filename.startswith(_DEV_FD):
            # A successful execveat(dirfd, name) shows as /dev/fd/<dirfd>/<name>
            # (and /dev/fd/<fd> with AT_EMPTY_PATH); so does exec of /dev/fd/N.
            num, _, rest = filename[len(_DEV_FD) :].partition(b"/")
            base = self.fd_path(pid, int(num)) if num.isdigit() else None
            path = normalize(filename) if base is None else normalize(base + b"/" + rest)
        elif ev[fmt.EXEC_SYSCALL] == 1 and not filename.startswith(b"/"):
            path = None  # a failed execveat: its dirfd is not recorded
        else:
            path = self.resolve(pid, AT_FDCWD, filename)
        if ev[fmt.EXEC_RET] == 0:
            proc = self._procs.get(pid)
            if proc is not None and proc.cloexec:
                for fd in proc.cloexec:
                    proc.fds.pop(fd, None)
                proc.cloexec.clear()
        return path

    def _exit(self, ev: list[Any]) -> bytes | None:
        self._procs.pop(ev[fmt.I_PID], None)
        return None

    def _open(self, ev: list[Any]) -> bytes | None:
        pid = ev[fmt.I_PID]
        path = kernel_path(ev, fmt.OPEN_KPATH, ev[fmt.OPEN_PATH])
        if path is None:
            path = self.resolve(pid, ev[fmt.OPEN_DIRFD], ev[fmt.OPEN_PATH])
        fd = ev[fmt.OPEN_RET]
        if fd >= 0:
            proc = self._proc(pid)
            if path is None:
                proc.fds.pop(fd, None)
            else:
                proc.fds[fd] = path
            if ev[fmt.OPEN_FLAGS] & O_CLOEXEC:
                proc.cloexec.add(fd)
            else:
                proc.cloexec.discard(fd)
        return path

    def _chdir(self, ev: list[Any]) -> bytes | None:
        pid = ev[fmt.I_PID]
        fd = ev[fmt.CHDIR_FD]
        path = kernel_path(ev, fmt.CHDIR_KPATH, ev[fmt.CHDIR_PATH] if fd == -1 else b"")
        if path is not None:
            pass
        elif fd == -1:
            path = self.resolve(pid, AT_FDCWD, ev[fmt.CHDIR_PATH])
        else:
            path = self.fd_path(pid, fd)
        if ev[fmt.CHDIR_RET] == 0:
            self._proc(pid).cwd = path
        return path


# Plain ints: int & IntFlag builds an enum member, a cost on every event.
_PATH_TRUNCATED = int(EventFlag.PATH_TRUNCATED)
_ARGV_TRUNCATED = int(EventFlag.ARGV_TRUNCATED)
_READ_FAILED = int(EventFlag.READ_FAILED)


# --- typed events ---------------------------------------------------------------------


@dataclass(slots=True)
class Event:
    """Fields common to every event. ts is nanoseconds since the header's
    clock.mono_ns; time_ns is the wall-clock time (ns since the epoch)."""

    TYPE: ClassVar[EventType]

    ts: int
    time_ns: int
    pid: int
    tid: int
    ppid: int
    uid: int
    comm: bytes
    flags: int

    @property
    def type_name(self) -> str:
        return fmt.TYPE_NAMES[self.TYPE]

    @property
    def path_truncated(self) -> bool:
        return bool(self.flags & _PATH_TRUNCATED)

    @property
    def argv_truncated(self) -> bool:
        return bool(self.flags & _ARGV_TRUNCATED)

    @property
    def read_failed(self) -> bool:
        return bool(self.flags & _READ_FAILED)


@dataclass(slots=True)
class ForkEvent(Event):
    TYPE: ClassVar[EventType] = EventType.FORK
    child_pid: int


@dataclass(slots=True)
class ExecEvent(Event):
    TYPE: ClassVar[EventType] = EventType.EXEC
    ret: int  # 0 or -errno
    requested_path: bytes  # the filename as passed (maybe relative)
    argv: list[bytes]  # argv[0] included; maybe truncated
    argc: int  # the original count
    old_pid: int
    syscall: int  # 0 execve, 1 execveat
    path: bytes | None  # resolved, absolute; None if unknown


@dataclass(slots=True)
class ExitEvent(Event):
    TYPE: ClassVar[EventType] = EventType.EXIT
    exit_code_raw: int

    @property
    def status(self) -> fmt.ExitStatus:
        return fmt.decode_exit(self.exit_code_raw)

    @property
    def shell_status(self) -> int:
        return fmt.shell_status(self.exit_code_raw)


@dataclass(slots=True)
class OpenEvent(Event):
    TYPE: ClassVar[EventType] = EventType.OPEN
    ret: int  # fd or -errno
    syscall: int  # 0 open, 1 openat, 2 openat2, 3 creat
    dirfd: int
    requested_path: bytes
    open_flags: int
    mode: int
    path: bytes | None

    @property
    def flag_names(self) -> tuple[str, ...]:
        return fmt.open_flag_names(self.open_flags)

    @property
    def syscall_name(self) -> str:
        return fmt.syscall_name(fmt.OPEN_SYSCALLS, self.syscall)


@dataclass(slots=True)
class ConnectEvent(Event):
    TYPE: ClassVar[EventType] = EventType.CONNECT
    ret: int
    fd: int
    sock_type: int
    protocol: int
    sockaddr: bytes

    @property
    def address(self) -> fmt.SockAddr:
        return fmt.decode_sockaddr(self.sockaddr)

    @property
    def protocol_name(self) -> str | None:
        return fmt.protocol_name(self.address.family, self.sock_type, self.protocol)


@dataclass(slots=True)
class ChdirEvent(Event):
    TYPE: ClassVar[EventType] = EventType.CHDIR
    ret: int
    fd: int  # -1 for chdir, else the fchdir descriptor
    requested_path: bytes | None  # None for fchdir
    path: bytes | None  # the target, resolved


@dataclass(slots=True)
class CgroupEvent(Event):
    """A session process moved to a cgroup (BPF ABI 2). The common fields are
    the mover's (it may be the process itself); moved_pid is the process
    moved. It stays recorded wherever it goes; a move out of the session's
    cgroup is flagged tampered."""

    TYPE: ClassVar[EventType] = EventType.CGROUP
    dst_id: int
    dst_root: int  # cgroup hierarchy id; 0 is cgroup2
    dst_level: int
    moved_pid: int
    dst_path: bytes


AnyEvent = (ForkEvent | ExecEvent | ExitEvent | OpenEvent | ConnectEvent | ChdirEvent
            | CgroupEvent)


def build_event(ev: list[Any], wall_ns: int, path: bytes | None = None) -> AnyEvent:
    """The typed event of a validated raw array; path: its resolved path."""
    t = ev[0]
    ts = ev[1]
    c = (ts, wall_ns + ts, ev[2], ev[3], ev[4], ev[5], ev[6], ev[7])
    if t == EventType.OPEN:
        return OpenEvent(*c, ev[8], ev[9], ev[10], ev[11], ev[12], ev[13], path)
    if t == EventType.EXEC:
        return ExecEvent(*c, ev[8], ev[9], ev[10], ev[11], ev[12], ev[13], path)
    if t == EventType.FORK:
        return ForkEvent(*c, ev[8])
    if t == EventType.EXIT:
        return ExitEvent(*c, ev[8])
    if t == EventType.CONNECT:
        return ConnectEvent(*c, ev[8], ev[9], ev[10], ev[11], ev[12])
    if t == EventType.CHDIR:
        fd = ev[fmt.CHDIR_FD]
        return ChdirEvent(*c, ev[8], fd, ev[fmt.CHDIR_PATH] if fd == -1 else None, path)
    if t == EventType.CGROUP:
        return CgroupEvent(*c, ev[8], ev[9], ev[10], ev[11], ev[12])
    raise ValueError(f"unknown event type {t}")


def raw_event(ev: AnyEvent) -> list[Any]:
    """The raw array of a typed event: the inverse of build_event (the
    resolved path is ev.path, where the type has one)."""
    c: list[Any] = [ev.TYPE.value, ev.ts, ev.pid, ev.tid, ev.ppid, ev.uid, ev.comm, ev.flags]
    if type(ev) is OpenEvent:
        c += (ev.ret, ev.syscall, ev.dirfd, ev.requested_path, ev.open_flags, ev.mode)
    elif type(ev) is ExecEvent:
        c += (ev.ret, ev.requested_path, ev.argv, ev.argc, ev.old_pid, ev.syscall)
    elif type(ev) is ForkEvent:
        c.append(ev.child_pid)
    elif type(ev) is ExitEvent:
        c.append(ev.exit_code_raw)
    elif type(ev) is ConnectEvent:
        c += (ev.ret, ev.fd, ev.sock_type, ev.protocol, ev.sockaddr)
    elif type(ev) is ChdirEvent:
        c += (ev.ret, ev.fd, b"" if ev.requested_path is None else ev.requested_path)
    elif type(ev) is CgroupEvent:
        c += (ev.dst_id, ev.dst_root, ev.dst_level, ev.moved_pid, ev.dst_path)
    return c


def iter_raw(
    session: Session,
    *,
    follow: bool = False,
    poll_interval: float = 0.2,
    resolver: PathResolver | None = None,
) -> Iterator[tuple[list[Any], bytes | None]]:
    """(raw event array, its resolved path) for each event of the session:
    what iter_events types, for tools that can skip the typing.

    resolver: pass one to ask it about the state after each event (a
    process's cwd); by default a fresh one from the header."""
    if resolver is None:
        resolver = PathResolver.from_header(session.header)
    apply = resolver.apply
    for ev in session.records(follow=follow, poll_interval=poll_interval):
        yield ev, apply(ev)


def iter_events(
    session: Session,
    *,
    follow: bool = False,
    poll_interval: float = 0.2,
    resolver: PathResolver | None = None,
) -> Iterator[AnyEvent]:
    """The session's events, typed, with paths resolved (see iter_raw)."""
    wall_ns = session.header["clock"]["wall_ns"]
    for ev, path in iter_raw(session, follow=follow, poll_interval=poll_interval,
                             resolver=resolver):
        yield build_event(ev, wall_ns, path)
