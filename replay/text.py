"""Showing untrusted text to people: the one escaping function, and the names
of Linux errno values and signals.

A session file records what programs passed to the kernel: argv, paths and
comm may hold escape sequences (``\\x1b]0;title\\x07``, ``\\x1b[2J``) or
bidirectional overrides meant to drive or fool the analyst's terminal. Every
piece of such text goes through printable() (or show() for bytes) before it
is written anywhere a terminal may read it: replay, tree, info.

Errno and signal numbers are those of the recording machine, Linux; the
analyst's machine may number them differently (macOS does), so the names are
tables here rather than the errno and signal modules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final, TextIO

# What a terminal must not be sent raw: C0 controls, DEL, C1 controls, and
# every invisible format character (Unicode's Cc, Cf, Zl and Zp categories,
# which tests/unit/test_text.py checks against unicodedata): the soft hyphen,
# Arabic and Syriac marks, the Mongolian vowel separator, zero-width and
# directional marks, line and paragraph separators, bidi embeddings,
# overrides and isolates, invisible operators and the deprecated format
# characters (U+206A-206F), BOM, interlinear annotation, and the TAG block.
_FORMAT_CHARS: Final = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f"
)
_UNSAFE: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT_CHARS}]")
# The same but C0, which JSON escapes itself (and whose newline is a JSON
# document's layout).
_JSON_UNSAFE: Final = re.compile(f"[\x7f-\x9f{_FORMAT_CHARS}]")


_SHORT: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    short = _SHORT.get(ch)
    if short is not None:
        return short
    c = ord(ch)
    if c < 0x100:
        return f"\\x{c:02x}"
    return f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def printable(text: str) -> str:
    """text with every control character and invisible format character
    written as an escape (\\x1b, \\x07, \\u202e; \\n, \\t and \\r as such): safe
    for a terminal."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def _json_escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x10000:
        return f"\\u{c:04x}"
    c -= 0x10000  # a surrogate pair, as JSON spells a character past U+FFFF
    return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"


def json_text(obj: object, stream: TextIO | None = None) -> str:
    """obj as indented JSON for people (`--json`), with the characters
    printable() escapes written as \\u escapes: the same data, but nothing a
    terminal would act on. ASCII only when stream does not take UTF-8."""
    ascii_only = stream is not None and not encodable(stream)
    text = json.dumps(obj, indent=2, ensure_ascii=ascii_only)
    return _JSON_UNSAFE.sub(_json_escape, text)


def show(data: bytes) -> str:
    """Kernel bytes for display: UTF-8, undecodable bytes as \\xNN, then
    printable()."""
    return printable(data.decode("utf-8", "backslashreplace"))


def encodable(stream: TextIO) -> bool:
    """Whether stream takes any str (UTF-8); else callers stay in ASCII."""
    enc = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
    return enc in ("utf-8", "utf8")


def ascii_safe(text: str) -> str:
    """Non-ASCII characters as \\xNN / \\uNNNN, for a stream that is not UTF-8."""
    return text.encode("ascii", "backslashreplace").decode("ascii")



def duration_text(ns: int) -> str:
    """'0.412 ms', '25.0 ms', '1.25 s', '3m05s', '2h03m'."""
    if ns < 1_000_000:
        return f"{ns / 1e6:.3f} ms"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    s = ns / 1e9
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"

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


def use_color(choice: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """--color=always|never|auto. auto: colour only on a terminal, and not
    when NO_COLOR is set (https://no-color.org) or TERM is dumb."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())
