"""Finding systemd-logind's sessions in the cgroup tree (`enrolment = "logind"`).

Where logind runs, each login lives in
<cgroup2>/user.slice/user-UID.slice/session-ID.scope, and ID is the login's
audit session id (logind takes it from /proc/<leader>/sessionid; without
auditing it makes ids of its own, "c1", "c2", ...). ScopeWatcher follows
that tree with inotify, which reports every mkdir and rmdir made through
the VFS, cgroupfs included: new user slices are watched as they appear, and
each new session scope is reported once.

What this misses (docs/NODE.md): systemd creates the scope and moves the
session's first process into it while pam_systemd waits in open_session;
the watcher learns of the scope only afterwards, so whatever runs between
the move and the daemon's reaction is not recorded. Use the PAM hook as
well where that matters.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from sessrec.errors import EnvironmentProblem

USER_SLICE = "user.slice"
_USER_RE = re.compile(r"user-(\d+)\.slice")
_SCOPE_RE = re.compile(r"session-(c?\d+)\.scope")

# linux/inotify.h
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_ONLYDIR = 0x1000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")   # wd, mask, cookie, len; then the name


@dataclass(frozen=True)
class Scope:
    """One logind session scope."""

    path: Path
    uid: int
    session: str                    # logind's session id: "42", or "c1"
    audit_session_id: int | None    # the id, when it is an audit session id


def parse_scope(path: Path) -> Scope | None:
    """The Scope a cgroup directory is, or None: .../user-UID.slice/session-ID.scope."""
    s, u = _SCOPE_RE.fullmatch(path.name), _USER_RE.fullmatch(path.parent.name)
    if s is None or u is None:
        return None
    sid = s.group(1)
    return Scope(path=path, uid=int(u.group(1)), session=sid,
                 audit_session_id=None if sid.startswith("c") else int(sid))


class ScopeWatcher:
    """Reports session scopes under <root> (the user.slice directory), those
    there at the start and each new one, once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise EnvironmentProblem(f"inotify_init1: {os.strerror(ctypes.get_errno())}")
        self.fd: int = fd
        self._dirs: dict[int, Path] = {}       # watch descriptor -> slice directory
        self._known: set[Path] = set()
        self._pending: list[Scope] = []
        self._watch(root)
        self._scan(root)

    def fileno(self) -> int:
        return self.fd

    def _watch(self, d: Path) -> bool:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(d),
                                          IN_CREATE | IN_DELETE | IN_ONLYDIR)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR) and d != self.root:
                return False        # a slice gone already
            raise EnvironmentProblem(f"cannot watch {d}: {os.strerror(err)}")
        self._dirs[wd] = d
        return True

    def _scan(self, d: Path) -> None:
        """Reports what is already in d (a slice watched just now may have
        had scopes made before its watch existed)."""
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return
        for name in names:
            self._seen(d / name)

    def _seen(self, p: Path) -> None:
        if p.parent == self.root and _USER_RE.fullmatch(p.name):
            if self._watch(p):
                self._scan(p)
            return
        scope = parse_scope(p)
        if scope is not None and p.parent.parent == self.root and p not in self._known:
            self._known.add(p)
            self._pending.append(scope)

    def read(self) -> tuple[list[Scope], list[Path]]:
        """The scopes seen since the last call, and the scope directories
        removed since then. Does not block."""
        gone: list[Path] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            off = 0
            while off + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, off)
                raw = data[off + _EVENT.size: off + _EVENT.size + size].rstrip(b"\0")
                off += _EVENT.size + size
                parent = self._dirs.get(wd)
                if mask & IN_IGNORED:
                    self._dirs.pop(wd, None)
                if parent is None or not raw or not mask & IN_ISDIR:
                    continue
                p = parent / os.fsdecode(raw)
                if mask & IN_CREATE:
                    self._seen(p)
                elif mask & IN_DELETE and p in self._known:
                    self._known.discard(p)
                    gone.append(p)
        new, self._pending = self._pending, []
        return new, gone

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
