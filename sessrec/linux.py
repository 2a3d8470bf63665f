"""Linux's numbers and names, as the recording machine has them: wait
statuses, the syscalls sessrec records, open flags, address families and
protocols, socket addresses, errno values and signals.

These describe the kernel, not the session file (sessrec/format.py): the
analyst's machine may number them differently (macOS does), so they are
tables here rather than the errno, signal and socket modules.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Final, NamedTuple

from sessrec.format import text


class WaitStatus(NamedTuple):
    """A wait status (the kernel's task->exit_code, what wait(2) gives),
    split. Not a command's exit status: that is sessrec.cli.ExitStatus."""

    exit_code: int | None  # set when the process exited normally
    signal: int | None  # set when a signal killed it
    core_dumped: bool


def decode_exit(raw: int) -> WaitStatus:
    """Split the kernel's task->exit_code (a wait status)."""
    sig = raw & 0x7F
    if sig == 0:
        return WaitStatus((raw >> 8) & 0xFF, None, False)
    return WaitStatus(None, sig, bool(raw & 0x80))


def shell_status(raw: int) -> int:
    """The status as a shell reports it in $?: the code, or 128 + signal."""
    sig = raw & 0x7F
    return (raw >> 8) & 0xFF if sig == 0 else 128 + sig


AT_FDCWD: Final = -100
O_CLOEXEC: Final = 0o2000000

OPEN_SYSCALLS: Final = ("open", "openat", "openat2", "creat")  # enum sr_open_syscall


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


# asm-generic/errno-base.h and errno.h: x86-64, arm64 and most architectures
# (alpha, mips, parisc and sparc number some of these differently). 512 and
# up are kernel-internal values a syscall tracepoint can still observe.
ERRNO_NAMES: Final[Mapping[int, str]] = dict(enumerate(
    (
        "EPERM ENOENT ESRCH EINTR EIO ENXIO E2BIG ENOEXEC EBADF ECHILD EAGAIN ENOMEM "
        "EACCES EFAULT ENOTBLK EBUSY EEXIST EXDEV ENODEV ENOTDIR EISDIR EINVAL ENFILE "
        "EMFILE ENOTTY ETXTBSY EFBIG ENOSPC ESPIPE EROFS EMLINK EPIPE EDOM ERANGE EDEADLK "
        "ENAMETOOLONG ENOLCK ENOSYS ENOTEMPTY ELOOP - ENOMSG EIDRM ECHRNG EL2NSYNC "
        "EL3HLT EL3RST ELNRNG EUNATCH ENOCSI EL2HLT EBADE EBADR EXFULL ENOANO EBADRQC "
        "EBADSLT - EBFONT ENOSTR ENODATA ETIME ENOSR ENONET ENOPKG EREMOTE ENOLINK EADV "
        "ESRMNT ECOMM EPROTO EMULTIHOP EDOTDOT EBADMSG EOVERFLOW ENOTUNIQ EBADFD EREMCHG "
        "ELIBACC ELIBBAD ELIBSCN ELIBMAX ELIBEXEC EILSEQ ERESTART ESTRPIPE EUSERS ENOTSOCK "
        "EDESTADDRREQ EMSGSIZE EPROTOTYPE ENOPROTOOPT EPROTONOSUPPORT ESOCKTNOSUPPORT "
        "EOPNOTSUPP EPFNOSUPPORT EAFNOSUPPORT EADDRINUSE EADDRNOTAVAIL ENETDOWN "
        "ENETUNREACH ENETRESET ECONNABORTED ECONNRESET ENOBUFS EISCONN ENOTCONN ESHUTDOWN "
        "ETOOMANYREFS ETIMEDOUT ECONNREFUSED EHOSTDOWN EHOSTUNREACH EALREADY EINPROGRESS "
        "ESTALE EUCLEAN ENOTNAM ENAVAIL EISNAM EREMOTEIO EDQUOT ENOMEDIUM EMEDIUMTYPE "
        "ECANCELED ENOKEY EKEYEXPIRED EKEYREVOKED EKEYREJECTED EOWNERDEAD ENOTRECOVERABLE "
        "ERFKILL EHWPOISON"
    ).split(),
    start=1,
)) | {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
}

EINPROGRESS: Final = 115


def errno_name(errnum: int) -> str:
    """'ENOENT' for 2; 'E999' for a number without a name."""
    name = ERRNO_NAMES.get(errnum)
    return f"E{errnum}" if name is None or name == "-" else name


def result(ret: int) -> str:
    """A syscall's return value as people read it: '3', '-2 ENOENT'."""
    return f"{ret} {errno_name(-ret)}" if ret < 0 else str(ret)


# Linux signal numbers on x86, arm and most architectures.
SIGNAL_NAMES: Final[Mapping[int, str]] = dict(enumerate(
    (
        "SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT SIGBUS SIGFPE SIGKILL SIGUSR1 "
        "SIGSEGV SIGUSR2 SIGPIPE SIGALRM SIGTERM SIGSTKFLT SIGCHLD SIGCONT SIGSTOP "
        "SIGTSTP SIGTTIN SIGTTOU SIGURG SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH SIGIO "
        "SIGPWR SIGSYS"
    ).split(),
    start=1,
))


def signal_name(signum: int) -> str:
    """'SIGKILL' for 9; 'SIG34' for real-time and unknown signals."""
    return SIGNAL_NAMES.get(signum) or f"SIG{signum}"


# Audit record types (linux/audit.h) that sessrec writes or names.
AUDIT_USER: Final = 1005
AUDIT_TRUSTED_APP: Final = 1121
AUDIT_RECORD_NAMES: Final[Mapping[int, str]] = {
    AUDIT_TRUSTED_APP: "TRUSTED_APP", AUDIT_USER: "USER"}
