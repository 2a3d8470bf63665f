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
- tampered: the caller's memory and the kernel's object disagree beyond what
  resolution explains (the BPF programs' flag, or a connect whose kernel
  destination is not the one the caller's sockaddr names), or a session
  process moved out of its session's cgroup.
"""

from __future__ import annotations

import ipaddress
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
_CONNECT = int(EventType.CONNECT)
_INET = (fmt.AF_INET, fmt.AF_INET6)


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


def connect_mismatch(ev: list[Any]) -> bool:
    """The kernel connected somewhere else than the caller's sockaddr says:
    another port, or another address (an unspecified address, which the
    kernel turns into loopback, and v4-mapped v6 addresses explained)."""
    kaddr = kernel_dst(ev)
    if kaddr is None:
        return False
    k = fmt.decode_sockaddr(kaddr)
    c = fmt.decode_sockaddr(ev[fmt.CONNECT_SOCKADDR])
    if c.family not in _INET or k.address is None or c.address is None:
        return False
    if k.port != c.port:
        return True
    ka, ca = _ip(k.address), _ip(c.address)
    if ka is None or ca is None or ka == ca:
        return False
    return not ca.is_unspecified


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def tampered(ev: list[Any]) -> bool:
    """The verdict every output shows (see the module's docstring)."""
    if ev[fmt.I_FLAGS] & _TAMPERED:
        return True
    return ev[0] == _CONNECT and connect_mismatch(ev)
