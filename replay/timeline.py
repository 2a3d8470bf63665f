"""The timeline of `sessrec replay`: one line per event, filters, colour, and
playback at the original pace.

    +0.002    1000 bash            open    /home/alice/todo.txt O_RDONLY|O_CLOEXEC = 3
    +0.011    1001 bash            exec    nosuch = -2 ENOENT

Columns: time since the start of the recording (+seconds.milliseconds), pid
(pid/tid for a thread), the program (comm), the event type and its details.
Every byte string from the file is shown through replay.text.show(), so
escape sequences in argv, paths and comm are printed escaped, never sent to
the terminal.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, TextIO

from replay.base import Session, describe_gap
from replay.events import PathResolver, normalize
from replay.model import Process, ProcessModel
from replay.terms import Dest, glob_match
from replay.text import ascii_safe, encodable, printable, show
from replay.trust import kernel_dst
from sessrec import format as fmt
from sessrec import linux
from sessrec.errors import UsageError
from sessrec.event import (
    ARGV_TRUNCATED,
    KPATH_DELETED,
    KPATH_UNREACHABLE,
    PATH_TRUNCATED,
    READ_FAILED,
    TAMPERED,
    TYPE_BY_NAME,
    TYPE_NAMES,
    Cgroup,
    Chdir,
    Connect,
    Event,
    Exec,
    Exit,
    Fork,
    Open,
    failed,
)
from sessrec.linux import result, signal_name

# --- parsing the filters --------------------------------------------------------


def parse_types(values: Iterable[str]) -> frozenset[int]:
    """--type exec --type open,connect -> their type numbers."""
    types = set()
    for value in values:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            t = TYPE_BY_NAME.get(name)
            if t is None:
                known = ", ".join(TYPE_NAMES.values())
                raise UsageError(f"unknown event type {name!r}; the types are {known}")
            types.add(t)
    return frozenset(types)


@dataclass
class Filters:
    """Which events to show. Each filter given must match (AND); within
    --type, any of the types (OR)."""

    types: frozenset[int] | None = None
    pid: int | None = None
    children: bool = False  # with pid: its descendants too
    path: str | None = None  # glob on the resolved and the requested path
    dests: tuple[Dest, ...] = ()  # any of them
    failed: bool = False
    since: int | None = None  # ns since the clock (event ts), inclusive
    until: int | None = None

    @property
    def needs_model(self) -> bool:
        return self.pid is not None and self.children


class EventFilter:
    """Filters as a predicate on an event and its resolved path. Keeps the
    process model --children needs; give it every event, in order."""

    def __init__(self, filters: Filters, leader_pid: int | None = None):
        self.f = filters
        self.model = ProcessModel(leader_pid, index=False) if filters.needs_model else None
        self._member: dict[int, bool] = {}  # Process.seq -> under --pid

    def _in_subtree(self, proc: Process | None) -> bool:
        pid = self.f.pid
        if proc is not None and proc.seq < 0:  # not in the model: no lineage
            return proc.pid == pid
        chain = []
        answer = False
        while proc is not None:
            known = self._member.get(proc.seq)
            if known is not None:
                answer = known
                break
            if proc.pid == pid:
                answer = True
                break
            chain.append(proc.seq)
            proc = proc.parent
        for seq in chain:
            self._member[seq] = answer
        return answer

    def _cheap(self, t: int, pid: int, ts: int) -> bool:
        f = self.f
        if self.model is None and f.pid is not None and pid != f.pid:
            return False
        if f.types is not None and t not in f.types:
            return False
        if f.since is not None and ts < f.since:
            return False
        return f.until is None or ts <= f.until

    def _rest(self, ev: Event, path: bytes | None) -> bool:
        f = self.f
        if f.failed and not failed(ev):
            return False
        if f.path is not None:
            if not isinstance(ev, Open | Exec | Chdir) or not any(
                p is not None and glob_match(f.path, fmt.text(p))
                for p in (path, ev.requested_path or None)
            ):
                return False
        if f.dests:
            if not isinstance(ev, Connect):
                return False
            addr = linux.decode_sockaddr(ev.sockaddr)
            if not any(d.matches(addr) for d in f.dests):
                return False
        return True

    def __call__(self, ev: Event, path: bytes | None) -> bool:
        # The model must see every event, so it comes first.
        if self.model is not None and not self._in_subtree(self.model.feed(ev, path)):
            return False
        return self._cheap(ev.type, ev.pid, ev.ts) and self._rest(ev, path)


# --- formatting -------------------------------------------------------------------


class Style:
    """ANSI colours, or none."""

    def __init__(self, color: bool):
        self.color = color

    def _sgr(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def fail(self, text: str) -> str:
        return self._sgr("1;31", text)

    def dim(self, text: str) -> str:
        return self._sgr("2", text)

    def bold(self, text: str) -> str:
        return self._sgr("1", text)


def rel_time(ts: int) -> str:
    """+s.mmm since the start of the recording."""
    sign = "-" if ts < 0 else "+"
    sec, ns = divmod(abs(ts), 1_000_000_000)
    return f"{sign}{sec}.{ns // 1_000_000:03d}"


def argv_text(argv: list[bytes]) -> str:
    """argv as a shell would read it, every item escaped."""
    return shlex.join(show(a) for a in argv)


def _as_requested(path: bytes | None, requested: bytes | None,
                  kernel: bool = False) -> str:
    """The resolved path, with the path as passed when it was relative, or
    when the kernel's path is another (a symlink, or a rewritten buffer)."""
    if path is None:
        return "?" if not requested else f"{show(requested)} (unresolved)"
    shown = show(path)
    if requested and (not requested.startswith(b"/")
                      or (kernel and normalize(requested) != path)):
        shown += f" (as {show(requested)})"
    return shown


def _kernel_marks(ev: Event, style: Style) -> str:
    """What the kernel's objects add (replay/trust.py): deleted, outside the
    root, tampered."""
    text = ""
    if ev.flags & KPATH_DELETED:
        text += " [deleted]"
    if ev.flags & KPATH_UNREACHABLE:
        text += " [outside the root]"
    if ev.flags & TAMPERED:
        text += " " + style.fail("[TAMPERED]")
    return text


def exit_text(raw: int, *, short: bool = False) -> str:
    """'code 3', 'killed by SIGSEGV (core dumped)'; short: 'exit 3',
    'SIGSEGV core'."""
    st = linux.decode_exit(raw)
    if st.signal is None:
        return f"exit {st.exit_code}" if short else f"code {st.exit_code}"
    if short:
        return signal_name(st.signal) + (" core" if st.core_dumped else "")
    core = " (core dumped)" if st.core_dumped else ""
    return f"killed by {signal_name(st.signal)}{core}"


def address_text(addr: linux.SockAddr, protocol: str | None) -> str:
    """'tcp 192.0.2.1:80', 'tcp [2001:db8::1]:443', 'unix stream /run/x.sock'."""
    where = "?" if addr.address is None else printable(addr.address)
    if addr.family == linux.AF_INET6 and addr.address is not None:
        where = f"[{where}]"
    if addr.port is not None:
        where = f"{where}:{addr.port}"
    if addr.family == linux.AF_UNIX:
        return f"unix {protocol or '?'} {where}"
    if addr.family in (linux.AF_INET, linux.AF_INET6):
        return f"{protocol or addr.family_name} {where}"
    return f"{addr.family_name} {protocol or '?'} {where}".rstrip(" ?")


# An event whose path, argv or address the BPF program could not read from
# the process (SR_FLAG_READ_FAILED): what is shown is missing or partial.
READ_FAILED_NOTE: Final = "[not read: the kernel could not read it from the process]"


def details(ev: Event, path: bytes | None, style: Style) -> str:
    """The details column of one event, with its resolved path."""
    text = _details(ev, path, style)
    return f"{text} {READ_FAILED_NOTE}" if ev.flags & READ_FAILED else text


def _details(ev: Event, path: bytes | None, style: Style) -> str:

    def ret(r: int, is_failure: bool) -> str:
        text = f"= {result(r)}"
        return style.fail(text) if is_failure else text

    if isinstance(ev, Open):
        flags = "|".join(linux.open_flag_names(ev.open_flags))
        text = f"{_as_requested(path, ev.requested_path, ev.kpath_src != 0)} {flags}"
        if ev.open_flags & (0o100 | 0o20000000):  # O_CREAT, __O_TMPFILE: mode matters
            text += f" {ev.mode:04o}"
        if ev.flags & PATH_TRUNCATED:
            text += " [path truncated]"
        return f"{text}{_kernel_marks(ev, style)} {ret(ev.ret, ev.ret < 0)}"
    if isinstance(ev, Exec):
        text = argv_text(ev.argv) if ev.argv else "''"
        argv0 = ev.argv[0] if ev.argv else None
        if path is not None and path != argv0:
            text += f" ({show(path)})"
        elif path is None and ev.requested_path != argv0:
            text += f" ({show(ev.requested_path)})"
        if ev.flags & ARGV_TRUNCATED or ev.argc != len(ev.argv):
            text += f" [argv truncated, argc {ev.argc}]"
        text += _kernel_marks(ev, style)
        return text if ev.ret == 0 else f"{text} {ret(ev.ret, True)}"
    if isinstance(ev, Connect):
        kdst = kernel_dst(ev)  # where the kernel connected, when it says
        addr = linux.decode_sockaddr(ev.sockaddr if kdst is None else kdst)
        proto = linux.protocol_name(addr.family, ev.sock_type, ev.protocol)
        text = address_text(addr, proto)
        if kdst is not None and ev.flags & TAMPERED:
            text += f" (as {address_text(linux.decode_sockaddr(ev.sockaddr), proto)})"
        return f"{text}{_kernel_marks(ev, style)} {ret(ev.ret, failed(ev))}"
    if isinstance(ev, Exit):
        text = exit_text(ev.exit_code_raw)
        return style.fail(text) if ev.exit_code_raw else text
    if isinstance(ev, Fork):
        return f"child {ev.child_pid}"
    if isinstance(ev, Chdir):
        text = _as_requested(path, ev.requested_path if ev.fd == -1 else None,
                             ev.kpath_src != 0)
        if ev.fd != -1:
            text += f" (fd {ev.fd})"
        text += _kernel_marks(ev, style)
        return text if ev.ret == 0 else f"{text} {ret(ev.ret, True)}"
    if isinstance(ev, Cgroup):
        where = "cgroup2" if ev.dst_root == 0 else f"cgroup hierarchy {ev.dst_root}"
        return f"pid {ev.moved_pid} to {show(ev.dst_path)} ({where}){_kernel_marks(ev, style)}"
    raise TypeError(f"not an event: {ev!r}")  # pragma: no cover


def format_event(ev: Event, path: bytes | None, style: Style) -> str:
    """One timeline line (without the newline)."""
    who = str(ev.pid) if ev.tid == ev.pid else f"{ev.pid}/{ev.tid}"
    kind = TYPE_NAMES[ev.type]
    is_failure = failed(ev)
    if is_failure:
        kind = style.fail(f"{kind:<7}")
    elif isinstance(ev, Exec):
        kind = style.bold(f"{kind:<7}")
    else:
        kind = f"{kind:<7}"
    return (
        f"{style.dim(f'{rel_time(ev.ts):>9}')} {who:>7} {show(ev.comm):<15} "
        f"{kind} {details(ev, path, style)}"
    )


# --- the command ------------------------------------------------------------------


class Pacer:
    """Sleeps between events to play the session at its pace, scaled by
    speed (2 = twice as fast), with gaps capped at max_gap seconds."""

    def __init__(
        self, speed: float, max_gap: float | None, sleep: Callable[[float], None] | None = None
    ):
        self.speed = speed
        self.max_gap = max_gap
        self.sleep = time.sleep if sleep is None else sleep
        self.prev: int | None = None

    def wait(self, ts: int) -> None:
        if self.prev is not None and ts > self.prev:
            delay = (ts - self.prev) / 1e9 / self.speed
            if self.max_gap is not None:
                delay = min(delay, self.max_gap)
            if delay > 0:
                self.sleep(delay)
        self.prev = ts


def write_timeline(
    session: Session,
    out: TextIO,
    *,
    filters: Filters | None = None,
    style: Style | None = None,
    pacer: Pacer | None = None,
    follow: bool = False,
    poll_interval: float = 0.2,
) -> int:
    """Write the timeline of session to out; return the number of lines.

    session.damage (if any) is the caller's to report afterwards."""
    style = style or Style(False)
    header = session.header
    filters = filters or Filters()
    keep = EventFilter(filters, header["leader_pid"])
    # Without a model to feed, an event of another type is dropped here,
    # before a call (the --type filter of keep() says the same).
    types = filters.types if not filters.needs_model else None
    safe = encodable(out)
    flush = follow or pacer is not None
    write = out.write
    n = 0
    gaps = 0  # session.gaps grows as the reader meets gap maps, in file order

    def gap_lines() -> int:
        nonlocal gaps
        new = session.gaps[gaps:]
        gaps = len(session.gaps)
        for gap in new:
            line = gap_line(gap)
            write((line if safe else ascii_safe(line)) + "\n")
        return len(new)

    resolve = PathResolver.for_session(session).apply
    for ev in session.records(follow=follow, poll_interval=poll_interval):
        path = resolve(ev)
        if len(session.gaps) != gaps:
            n += gap_lines()
        if (types is not None and ev.type not in types) or not keep(ev, path):
            continue
        if pacer is not None:
            pacer.wait(ev.ts)
        line = format_event(ev, path, style)
        write((line if safe else ascii_safe(line)) + "\n")
        if flush:
            out.flush()
        n += 1
    return n + gap_lines()


def gap_line(gap: fmt.Gap | fmt.GapSpan) -> str:
    """A timeline line for a stretch of the session with events missing."""
    at = "+{:.3f}".format(gap["ts"] / 1e9)
    return f"{at:>9}   !!! " + printable(describe_gap(gap))
