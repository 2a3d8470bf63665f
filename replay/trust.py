"""What the kernel's own objects say about an event, against what the caller
passed (BPF ABI 2), judged once here for every output: replay, the HTML,
the exports, `search --tampered` and `info`.

- path_source: where an event's `path` comes from. "kernel": the kernel's
  object (the file opened, the executable, the new cwd); "kernel_base": a
  failed call, the request joined to the directory the kernel resolved it
  from; "request": the caller's string resolved lexically against the
  recorded chdirs (files of ABI 1, or no kernel object).
- dst_source: where a connect's destination comes from. "kernel": the
  socket's (struct sock); "caller": the caller's sockaddr, which is all there
  is when the connect failed before the kernel stored one.
- tampered: the BPF programs' verdict, set where the caller's memory and
  the kernel's object disagree beyond what resolution explains (a connect
  whose kernel destination is not the one the caller's sockaddr names, an
  unspecified address excepted), and on a session process moved out of its
  session's cgroup.
"""

from __future__ import annotations

from sessrec.event import (
    KPATH_DELETED,
    KPATH_UNREACHABLE,
    TAMPERED,
    Chdir,
    Connect,
    Event,
    Exec,
    KpathSource,
    Open,
)

_DELETED = KPATH_DELETED
_UNREACHABLE = KPATH_UNREACHABLE
_FILE = int(KpathSource.FILE)
_NONE = int(KpathSource.NONE)


def path_source(ev: Exec | Open | Chdir) -> str:
    """"kernel", "kernel_base" or "request" (see the module's docstring)."""
    src = ev.kpath_src
    if src == _FILE:
        return "kernel"
    return "request" if src == _NONE else "kernel_base"


def path_deleted(ev: Event) -> bool:
    """The file had been unlinked (the kernel's path names where it was)."""
    return bool(ev.flags & _DELETED)


def path_unreachable(ev: Event) -> bool:
    """The kernel's path lies outside the process's root (a file opened
    before a chroot): it is the path from the mount namespace's root."""
    return bool(ev.flags & _UNREACHABLE)


def kernel_dst(ev: Connect) -> bytes | None:
    """A connect's destination as the kernel stored it (a sockaddr), or None."""
    return ev.kaddr if ev.kaddr_src else None


def dst_source(ev: Connect) -> str:
    return "caller" if not ev.kaddr_src else "kernel"


def tampered(ev: Event) -> bool:
    """The verdict every output shows (see the module's docstring)."""
    return bool(ev.flags & TAMPERED)
