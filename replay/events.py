"""The path resolver, and the session's events with their resolved paths.

The file stores paths exactly as the program passed them: relative to its
working directory or to a directory file descriptor. Files of BPF ABI 2 have
the kernel's path too (kernel_path), which wins. PathResolver replays the
session's chdir, open, fork, exec and exit events to turn them into absolute
paths. It is lexical only: symlinks are not followed and ".." is applied to
the text, because the recorder does not see the file system (docs/FORMAT.md).
The events are those of sessrec.event, as the reader gives them.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator

from replay.base import Session
from replay.cache import Budget
from sessrec.event import Chdir, Event, Exec, Exit, Fork, KpathSource, Open
from sessrec.format import Header
from sessrec.linux import AT_FDCWD, O_CLOEXEC

# --- path resolution ----------------------------------------------------------------


def normalize(path: bytes) -> bytes:
    """Lexically normalise an absolute path: '//a/./b/../c/' -> '/a/c'."""
    # find, not `in`: bytes' `in` first tries its operand as an integer and
    # formats the TypeError it then drops (1,400 instructions a path).
    if path.find(b"//") < 0 and path.find(b"/.") < 0 and (path[-1:] != b"/" or path == b"/"):
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


# The most the resolver holds (working directories, descriptors' paths and
# the processes themselves, counted as PROC_COST and FD_COST bytes more): a
# file is untrusted, and a small one can give 150,000 live processes a
# 4 KiB working directory each, or one process 150,000 descriptors. Past
# it, the oldest processes' descriptors are forgotten, then the oldest
# processes but the leader (limit_warning says how many): their later
# relative paths show as unresolved.
PATH_BUDGET = 64 << 20
PROC_COST = 512
FD_COST = 64

_DEV_FD = b"/dev/fd/"
_KFILE, _KCWD, _KDIRFD, _KROOT = (int(KpathSource.FILE), int(KpathSource.CWD),
                                  int(KpathSource.DIRFD), int(KpathSource.ROOT))


def kernel_path(ev: Exec | Open | Chdir, request: bytes) -> bytes | None:
    """The path the kernel's objects give an event (BPF ABI 2), or None when
    it has none (older files, or nothing taken): the object's own path, or
    for a failed call the request joined to the directory the kernel
    resolved it from (lexically: the file does not exist)."""
    src = ev.kpath_src
    if src == _KFILE:
        return ev.kpath
    if src == _KCWD or src == _KDIRFD:
        return normalize(ev.kpath + b"/" + request) if request else ev.kpath
    if src == _KROOT:
        return normalize(ev.kpath.rstrip(b"/") + request)
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
        self._leader = leader_pid  # never forgotten by _trim: the session's own shell
        if leader_pid is not None:
            self._procs[leader_pid] = _Proc(normalize(cwd) if cwd else None)
        # What was stored since the last count (bytes, an upper bound), and
        # how much may be before the next (_trim); what it forgot.
        self._stored = 0
        self._room = PATH_BUDGET
        self.fds_forgotten = 0
        self.procs_forgotten = 0
        # an open's request, or (its base, request) -> its path (apply_open)
        self._joined: dict[bytes | tuple[bytes, bytes], bytes] = {}
        self._joined_kept = Budget(4096)

    def _join(self, key: bytes | tuple[bytes, bytes], base: bytes | None, request: bytes
              ) -> bytes:
        """request resolved against base (or absolute), normalised; kept
        under key, within a cache.Budget."""
        path = normalize(request if base is None else base + b"/" + request)
        size = len(path) + len(request) + (0 if base is None else len(base))
        return self._joined_kept.keep(self._joined, key, path, size)

    def _trim(self) -> None:
        """Count what is held; past PATH_BUDGET, forget the oldest
        processes' descriptors, then the oldest processes but the leader,
        down to half of it. Counting costs a pass over the state, once per
        half a budget stored at least."""
        def held(proc: _Proc) -> int:
            return (PROC_COST + len(proc.cwd or b"") + FD_COST * len(proc.fds)
                    + sum(map(len, proc.fds.values())))

        procs = self._procs
        total = sum(map(held, procs.values()))
        target = PATH_BUDGET // 2
        if total > PATH_BUDGET:
            for proc in procs.values():
                if total <= target:
                    break
                if proc.fds:
                    total -= held(proc)
                    self.fds_forgotten += len(proc.fds)
                    proc.fds = {}
                    proc.cloexec = set()
                    total += held(proc)
            for pid in list(procs):
                if total <= target:
                    break
                if pid == self._leader:
                    continue
                total -= held(procs.pop(pid))
                self.procs_forgotten += 1
        self._stored = 0
        self._room = max(PATH_BUDGET - total, target)

    def limit_warning(self) -> str | None:
        """The warning to print when the resolver forgot something, else None."""
        if not self.fds_forgotten and not self.procs_forgotten:
            return None
        return (f"the session's paths passed the {PATH_BUDGET >> 20} MiB the path resolver "
                f"keeps: it forgot {self.fds_forgotten} descriptors and the working "
                f"directories of {self.procs_forgotten} processes, whose later relative "
                "paths show as unresolved")

    @classmethod
    def from_header(cls, header: Header) -> PathResolver:
        return cls(header["leader_pid"], header["cwd"])

    @classmethod
    def for_session(cls, session: Session) -> PathResolver:
        """One from session's header, whose limit_warning session.warnings()
        gives."""
        resolver = cls.from_header(session.header)
        session.limited.append(resolver.limit_warning)
        return resolver

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

    def apply(self, ev: Event) -> bytes | None:
        """Update the state with one event; return its resolved path.

        exec: the executable; open: the file; chdir: the target directory (also
        when the call failed); other types: None."""
        if type(ev) is Open:  # the most frequent first
            return self.apply_open(ev)
        if type(ev) is Exec:
            return self._exec(ev)
        if type(ev) is Fork:
            return self._fork(ev)
        if type(ev) is Exit:
            return self._exit(ev)
        if type(ev) is Chdir:
            return self._chdir(ev)
        return None

    def _proc(self, pid: int) -> _Proc:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = _Proc(None)
            self._stored += PROC_COST
        return proc

    def _fork(self, ev: Fork) -> bytes | None:
        parent = self._procs.get(ev.pid)
        if parent is None:
            self._procs[ev.child_pid] = _Proc(None)
            self._stored += PROC_COST
        else:
            self._procs[ev.child_pid] = parent.copy()
            self._stored += PROC_COST + FD_COST * len(parent.fds)
        if self._stored > self._room:
            self._trim()
        return None

    def _exec(self, ev: Exec) -> bytes | None:
        pid = ev.pid
        filename = ev.requested_path
        kpath = kernel_path(ev, filename)
        if kpath is not None:
            path: bytes | None = kpath
        elif filename.startswith(_DEV_FD):
            # A successful execveat(dirfd, name) shows as /dev/fd/<dirfd>/<name>
            # (and /dev/fd/<fd> with AT_EMPTY_PATH); so does exec of /dev/fd/N.
            num, _, rest = filename[len(_DEV_FD) :].partition(b"/")
            base = self.fd_path(pid, int(num)) if num.isdigit() else None
            path = normalize(filename) if base is None else normalize(base + b"/" + rest)
        elif ev.syscall == 1 and not filename.startswith(b"/"):
            path = None  # a failed execveat: its dirfd is not recorded
        else:
            path = self.resolve(pid, AT_FDCWD, filename)
        if ev.ret == 0:
            proc = self._procs.get(pid)
            if proc is not None and proc.cloexec:
                for fd in proc.cloexec:
                    proc.fds.pop(fd, None)
                proc.cloexec.clear()
        return path

    def _exit(self, ev: Exit) -> bytes | None:
        self._procs.pop(ev.pid, None)
        return None

    def apply_open(self, ev: Open) -> bytes | None:
        """apply, for an open: for the loops that test the type themselves
        (an open is most events, and a call level per event counts)."""
        pid = ev.pid
        proc = self._procs.get(pid)
        # (kernel_path's own test first: most files have no kernel paths)
        path = kernel_path(ev, ev.requested_path) if ev.kpath_src else None
        if path is None:
            request = ev.requested_path
            # resolve(pid, ev.dirfd, request), inlined, and its result kept
            # (_joined): the same few paths come back again and again
            if request[:1] == b"/":
                path = self._joined.get(request) or self._join(request, None, request)
            elif request and proc is not None:
                dirfd = ev.dirfd
                base = proc.cwd if dirfd == AT_FDCWD else proc.fds.get(dirfd)
                if base is not None:
                    key = (base, request)
                    path = self._joined.get(key) or self._join(key, base, request)
        fd = ev.ret
        if fd >= 0:
            if proc is None:
                proc = self._proc(pid)
            if path is None:
                proc.fds.pop(fd, None)
            else:
                proc.fds[fd] = path
                self._stored += len(path) + FD_COST
                if self._stored > self._room:
                    self._trim()
                    proc = self._proc(pid)  # (if it was forgotten)
            if ev.open_flags & O_CLOEXEC:
                proc.cloexec.add(fd)
            else:
                proc.cloexec.discard(fd)
        return path

    def _chdir(self, ev: Chdir) -> bytes | None:
        pid = ev.pid
        fd = ev.fd
        path = kernel_path(ev, ev.requested_path if fd == -1 else b"")
        if path is not None:
            pass
        elif fd == -1:
            path = self.resolve(pid, AT_FDCWD, ev.requested_path)
        else:
            path = self.fd_path(pid, fd)
        if ev.ret == 0:
            self._proc(pid).cwd = path
            self._stored += PROC_COST if path is None else PROC_COST + len(path)
            if self._stored > self._room:
                self._trim()
        return path


def with_paths(
    session: Session,
    *,
    follow: bool = False,
    poll_interval: float = 0.2,
    resolver: PathResolver | None = None,
) -> Iterator[tuple[Event, bytes | None]]:
    """(event, its resolved path) for each event of the session: the path
    of an exec's executable, an open's file, a chdir's target; None for the
    other types or when the base is unknown.

    resolver: pass one to ask it about the state after each event (a
    process's cwd); by default a fresh one from the header."""
    if resolver is None:
        resolver = PathResolver.for_session(session)
    apply = resolver.apply
    for ev in session.records(follow=follow, poll_interval=poll_interval):
        yield ev, apply(ev)
