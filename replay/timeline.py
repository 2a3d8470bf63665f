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

import calendar
import fnmatch
import ipaddress
import re
import shlex
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from replay.base import Session, describe_gap
from replay.events import with_paths
from replay.model import Process, ProcessModel
from replay.text import ascii_safe, encodable, printable, result, show, signal_name
from sessrec import format as fmt
from sessrec.errors import UsageError
from sessrec.event import (
    ARGV_TRUNCATED,
    PATH_TRUNCATED,
    TYPE_BY_NAME,
    TYPE_NAMES,
    Chdir,
    Connect,
    Event,
    Exec,
    Exit,
    Fork,
    Open,
    failed,
)

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


_RELATIVE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?$")
_UNIT_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?([Zz]|[+-]\d\d:\d\d)$"
)


def rfc3339_ns(text: str) -> int | None:
    """ns since the epoch of an RFC 3339 time with a zone
    ('2026-11-21T11:10:02.123456789Z'); None if it is not one."""
    m = _RFC3339.match(text.strip())
    if not m:
        return None
    year, mon, day, hh, mm, ss = (int(g) for g in m.groups()[:6])
    try:
        secs = calendar.timegm((year, mon, day, hh, mm, ss, 0, 0, 0))
        time.gmtime(secs)  # range check
    except (ValueError, OverflowError, OSError):
        return None
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        secs -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    frac = (m.group(7) or "").ljust(9, "0")
    return secs * 1_000_000_000 + int(frac)


def parse_when(spec: str, wall_ns: int) -> int:
    """--since/--until as ns since the recording's clock (event ts).

    Relative: seconds since the start of the recording, '90', '1.5', '500ms',
    '2m', '1h'. Absolute: RFC 3339 with a zone, '2026-11-21T11:10:02.5Z'."""
    m = _RELATIVE.match(spec.strip())
    if m:
        return int(float(m.group(1)) * _UNIT_NS[m.group(2) or "s"])
    absolute = rfc3339_ns(spec)
    if absolute is None:
        raise UsageError(
            f"cannot read time {spec!r}: give seconds since the start (1.5, 500ms, 2m, 1h) "
            "or an RFC 3339 time with a zone (2026-11-21T11:10:02Z)"
        )
    return absolute - wall_ns


IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestMatcher:
    """--dest: ADDR, ADDR:PORT, [V6ADDR]:PORT, V6ADDR, :PORT, a CIDR network
    (10.0.0.0/8, [2001:db8::/32]:443), or a unix socket path or @abstract
    name (glob patterns allowed). An IPv4 address also matches its
    v4-mapped IPv6 form."""

    def __init__(self, spec: str):
        self.spec = spec
        host, port = self._split(spec.strip())
        self.port: int | None = None
        if port is not None:
            if not port.isdigit() or int(port) > 65535:
                raise UsageError(f"--dest {spec!r}: {port!r} is not a port number")
            self.port = int(port)
        self.net: IPNet | None = None
        self.pattern: str | None = None
        if host not in ("", "*"):
            try:
                self.net = ipaddress.ip_network(host, strict=False)
            except ValueError:
                self.pattern = host  # a unix path, @name, or a name compared as text

    @staticmethod
    def _split(spec: str) -> tuple[str, str | None]:
        if spec.startswith("["):
            host, sep, rest = spec[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise UsageError(f"--dest {spec!r}: write an IPv6 address as [ADDR] or [ADDR]:PORT")
            return host, rest[1:] if rest else None
        if spec.startswith(("/", "@")):
            return spec, None
        if spec.count(":") == 1:
            host, _, port = spec.partition(":")
            return host, port
        return spec, None

    def __call__(self, addr: fmt.SockAddr) -> bool:
        if self.port is not None and addr.port != self.port:
            return False
        if self.net is not None:
            if addr.address is None or addr.family not in (fmt.AF_INET, fmt.AF_INET6):
                return False
            try:
                ip = ipaddress.ip_address(addr.address.partition("%")[0])
            except ValueError:
                return False
            if ip in self.net:
                return True
            mapped = getattr(ip, "ipv4_mapped", None)
            return mapped is not None and mapped in self.net
        if self.pattern is not None:
            return addr.address is not None and fnmatch.fnmatchcase(addr.address, self.pattern)
        return True


@dataclass
class Filters:
    """Which events to show. Each filter given must match (AND); within
    --type, any of the types (OR)."""

    types: frozenset[int] | None = None
    pid: int | None = None
    children: bool = False  # with pid: its descendants too
    path: str | None = None  # glob on the resolved and the requested path
    dests: tuple[DestMatcher, ...] = ()  # any of them
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
                p is not None and fnmatch.fnmatchcase(fmt.text(p), f.path)
                for p in (path, ev.requested_path or None)
            ):
                return False
        if f.dests:
            if not isinstance(ev, Connect):
                return False
            addr = fmt.decode_sockaddr(ev.sockaddr)
            if not any(d(addr) for d in f.dests):
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


def _as_requested(path: bytes | None, requested: bytes | None) -> str:
    """The resolved path, with the path as passed when it was relative."""
    if path is None:
        return "?" if not requested else f"{show(requested)} (unresolved)"
    shown = show(path)
    if requested and not requested.startswith(b"/"):
        shown += f" (as {show(requested)})"
    return shown


def exit_text(raw: int) -> str:
    st = fmt.decode_exit(raw)
    if st.signal is None:
        return f"code {st.exit_code}"
    core = " (core dumped)" if st.core_dumped else ""
    return f"killed by {signal_name(st.signal)}{core}"


def address_text(addr: fmt.SockAddr, protocol: str | None) -> str:
    """'tcp 192.0.2.1:80', 'tcp [2001:db8::1]:443', 'unix stream /run/x.sock'."""
    where = "?" if addr.address is None else printable(addr.address)
    if addr.family == fmt.AF_INET6 and addr.address is not None:
        where = f"[{where}]"
    if addr.port is not None:
        where = f"{where}:{addr.port}"
    if addr.family == fmt.AF_UNIX:
        return f"unix {protocol or '?'} {where}"
    if addr.family in (fmt.AF_INET, fmt.AF_INET6):
        return f"{protocol or addr.family_name} {where}"
    return f"{addr.family_name} {protocol or '?'} {where}".rstrip(" ?")


def details(ev: Event, path: bytes | None, style: Style) -> str:
    """The details column of one event, with its resolved path."""

    def ret(r: int, is_failure: bool) -> str:
        text = f"= {result(r)}"
        return style.fail(text) if is_failure else text

    if isinstance(ev, Open):
        flags = "|".join(fmt.open_flag_names(ev.open_flags))
        text = f"{_as_requested(path, ev.requested_path)} {flags}"
        if ev.open_flags & (0o100 | 0o20000000):  # O_CREAT, __O_TMPFILE: mode matters
            text += f" {ev.mode:04o}"
        if ev.flags & PATH_TRUNCATED:
            text += " [path truncated]"
        return f"{text} {ret(ev.ret, ev.ret < 0)}"
    if isinstance(ev, Exec):
        text = argv_text(ev.argv) if ev.argv else "''"
        argv0 = ev.argv[0] if ev.argv else None
        if path is not None and path != argv0:
            text += f" ({show(path)})"
        elif path is None and ev.requested_path != argv0:
            text += f" ({show(ev.requested_path)})"
        if ev.flags & ARGV_TRUNCATED or ev.argc != len(ev.argv):
            text += f" [argv truncated, argc {ev.argc}]"
        return text if ev.ret == 0 else f"{text} {ret(ev.ret, True)}"
    if isinstance(ev, Connect):
        addr = fmt.decode_sockaddr(ev.sockaddr)
        text = address_text(addr, fmt.protocol_name(addr.family, ev.sock_type, ev.protocol))
        return f"{text} {ret(ev.ret, failed(ev))}"
    if isinstance(ev, Exit):
        text = exit_text(ev.exit_code_raw)
        return style.fail(text) if ev.exit_code_raw else text
    if isinstance(ev, Fork):
        return f"child {ev.child_pid}"
    if isinstance(ev, Chdir):
        text = _as_requested(path, ev.requested_path if ev.fd == -1 else None)
        if ev.fd != -1:
            text += f" (fd {ev.fd})"
        return text if ev.ret == 0 else f"{text} {ret(ev.ret, True)}"
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

    for ev, path in with_paths(session, follow=follow, poll_interval=poll_interval):
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


def gap_line(gap: dict[str, Any]) -> str:
    """A timeline line for a stretch of the session with events missing."""
    at = "+{:.3f}".format(gap["ts"] / 1e9)
    return f"{at:>9}   !!! " + printable(describe_gap(gap))
