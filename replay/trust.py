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

from typing import Any

from sessrec import format as fmt
from sessrec.format import EventType, KpathSource

_TAMPERED = int(fmt.EventFlag.TAMPERED)
_DELETED = int(fmt.EventFlag.KPATH_DELETED)
_UNREACHABLE = int(fmt.EventFlag.KPATH_UNREACHABLE)
_KPATH_AT = {int(EventType.OPEN): fmt.OPEN_KPATH, int(EventType.EXEC): fmt.EXEC_KPATH,
             int(EventType.CHDIR): fmt.CHDIR_KPATH}
_FILE = int(KpathSource.FILE)
_NONE = int(KpathSource.NONE)


def path_source(ev: list[Any]) -> str | None:
    """"kernel", "kernel_base" or "request" for exec, open and chdir; None
    for other types."""
    at = _KPATH_AT.get(ev[0])
    if at is None:
        return None
    src = ev[at + 1] if len(ev) > at + 1 else _NONE
    if src == _FILE:
        return "kernel"
    return "request" if src == _NONE else "kernel_base"


def path_deleted(ev: list[Any]) -> bool:
    """The file had been unlinked (the kernel's path names where it was)."""
    return bool(ev[fmt.I_FLAGS] & _DELETED)


def path_unreachable(ev: list[Any]) -> bool:
    """The kernel's path lies outside the process's root (a chroot): it is
    the path from the mount namespace's root."""
    return bool(ev[fmt.I_FLAGS] & _UNREACHABLE)


def kernel_dst(ev: list[Any]) -> bytes | None:
    """A connect's destination as the kernel stored it (a sockaddr), or None."""
    if len(ev) <= fmt.CONNECT_KADDR or not ev[fmt.CONNECT_KADDR_SRC]:
        return None
    kaddr: bytes = ev[fmt.CONNECT_KADDR]
    return kaddr


def dst_source(ev: list[Any]) -> str:
    return "caller" if kernel_dst(ev) is None else "kernel"


def tampered(ev: list[Any]) -> bool:
    """The verdict every output shows (see the module's docstring)."""
    return bool(ev[fmt.I_FLAGS] & _TAMPERED)
