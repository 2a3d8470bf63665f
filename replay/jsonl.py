"""Export a session as JSON lines: one object per event (docs/FORMAT.md lists
the keys). Bytes become text as UTF-8 with undecodable bytes written as \\xNN
escapes (errors="backslashreplace"), so the output is always valid UTF-8.

This is a hot loop (hundreds of thousands of events per second): it formats
each line with one f-string, and caches the JSON of values that repeat (comm,
open flags, socket addresses).
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import TextIO

from replay import trust
from replay.base import Session
from replay.cache import Texts
from replay.events import PathResolver
from replay.text import json_safe
from sessrec import format as fmt
from sessrec import linux
from sessrec.event import (
    ARGV_TRUNCATED,
    PATH_TRUNCATED,
    READ_FAILED,
    TYPE_NAMES,
    Cgroup,
    Chdir,
    Connect,
    Exec,
    Exit,
    Fork,
    Open,
)


def _jtext(data: bytes) -> str:
    """JSON string literal of kernel bytes."""
    return json_safe(encode_basestring(data.decode("utf-8", fmt.TEXT_ERRORS)))


def _jstr(text: str) -> str:
    """JSON string literal of text (from the file: a header's, an address)."""
    return json_safe(encode_basestring(text))


def _jpath(data: bytes | None) -> str:
    return "null" if data is None else _jtext(data)


def _jint(value: int | None) -> str:
    return "null" if value is None else str(value)


def _jbool(value: bool) -> str:
    return "true" if value else "false"


def _argv(argv: list[bytes]) -> str:
    return "[" + ",".join([_jtext(a) for a in argv]) + "]"


def _flag_names(flags: int) -> str:
    return "[" + ",".join(f'"{n}"' for n in linux.open_flag_names(flags)) + "]"


def _connect_fields(key: tuple[bytes, int, int]) -> str:
    sockaddr, sock_type, protocol = key
    addr = linux.decode_sockaddr(sockaddr)
    proto = linux.protocol_name(addr.family, sock_type, protocol)
    return (
        f'"family":"{addr.family_name}",'
        f'"protocol":{"null" if proto is None else _jstr(proto)},'
        f'"dst_addr":{"null" if addr.address is None else _jstr(addr.address)},'
        f'"dst_port":{_jint(addr.port)}'
    )


def _trust_fields(ev: Exec | Open | Chdir) -> str:
    """The kernel's word on an exec, open or chdir (replay/trust.py)."""
    return (
        f'"path_source":"{trust.path_source(ev)}",'
        f'"path_deleted":{_jbool(trust.path_deleted(ev))},'
        f'"path_outside_root":{_jbool(trust.path_unreachable(ev))},'
        f'"tampered":{_jbool(trust.tampered(ev))}'
    )


def _trusted(cache: dict[tuple[int, int], str], ev: Exec | Open | Chdir) -> str:
    """_trust_fields(ev), kept in cache under what it depends on."""
    if len(cache) >= 4096:  # (flags are 8 bits: never, but by a hostile file's kpath_src)
        cache.clear()
    text = cache[ev.kpath_src, ev.flags] = _trust_fields(ev)
    return text


def _kernel_dst_fields(ev: Connect) -> str:
    kaddr = trust.kernel_dst(ev)
    k = None if kaddr is None else linux.decode_sockaddr(kaddr)
    addr = None if k is None else k.address
    return (
        f'"dst_source":"{trust.dst_source(ev)}",'
        f'"kernel_dst_addr":{"null" if addr is None else _jstr(addr)},'
        f'"kernel_dst_port":{_jint(None if k is None else k.port)},'
        f'"tampered":{_jbool(trust.tampered(ev))}'
    )


def _exit_fields(raw: int) -> str:
    st = linux.decode_exit(raw)
    return (
        f'"exit_code":{_jint(st.exit_code)},"signal":{_jint(st.signal)},'
        f'"core_dumped":{_jbool(st.core_dumped)}'
    )


def write_jsonl(
    session: Session, out: TextIO, *, follow: bool = False, poll_interval: float = 0.2
) -> int:
    """Write one JSON object per event of session to out; return the count.

    session.damage (if any) is the caller's to report afterwards."""
    header = session.header
    wall_ns: int = header["clock"]["wall_ns"]
    session_id = _jstr(header["session_id"])
    timefmt = fmt.TimeFormatter()
    resolver = PathResolver.for_session(session)
    resolve, resolve_open = resolver.apply, resolver.apply_open
    comms = Texts(_jtext)
    # Paths come back again and again (libraries, headers): their JSON is kept,
    # for 2,048 of them (a path is up to 4 KiB, its JSON up to 5 times that).
    paths: Texts[bytes | None] = Texts(_jpath, 2048)
    flag_names = Texts(_flag_names)
    connects = Texts(_connect_fields)
    exits = Texts(_exit_fields)
    # (kpath_src, flags) -> _trust_fields: all that its text depends on.
    trusts: dict[tuple[int, int], str] = {}
    open_sys = linux.OPEN_SYSCALLS
    write = out.write
    n = 0
    # The time's text up to its second, for the second of the last event:
    # TimeFormatter's work, without a call per event.
    second = -1
    prefix = ""
    d3 = fmt.DIGITS3  # the nanoseconds' digits
    for ev in session.records(follow=follow, poll_interval=poll_interval):
        path = resolve_open(ev) if type(ev) is Open else resolve(ev)
        sec, ns = divmod(wall_ns + ev.ts, 1_000_000_000)
        if sec != second:
            second = sec
            prefix = timefmt.second(sec)
        common = (
            f'"time":"{prefix}.{d3[ns // 1_000_000]}{d3[ns // 1_000 % 1_000]}{d3[ns % 1_000]}Z",'
            f'"pid":{ev.pid},"tid":{ev.tid},'
            f'"ppid":{ev.ppid},"uid":{ev.uid},"comm":{comms[ev.comm]},"session_id":{session_id}'
        )
        if type(ev) is Open:
            fl = ev.open_flags
            sysno = ev.syscall
            sysname = open_sys[sysno] if 0 <= sysno < 4 else linux.syscall_name(open_sys, sysno)
            line = (
                f'{{"type":"open",{common},"path":{paths[path]},'
                f'"requested_path":{paths[ev.requested_path]},"flags":{fl},'
                f'"flag_names":{flag_names[fl]},"mode":{ev.mode},"syscall":"{sysname}",'
                f'"return_code":{ev.ret},'
                f'"path_truncated":{"true" if ev.flags & PATH_TRUNCATED else "false"},'
                f'{trusts.get((ev.kpath_src, ev.flags)) or _trusted(trusts, ev)}}}\n'
            )
        elif type(ev) is Exec:
            line = (
                f'{{"type":"exec",{common},"path":{paths[path]},'
                f'"requested_path":{paths[ev.requested_path]},"argv":{_argv(ev.argv)},'
                f'"argv_truncated":{"true" if ev.flags & ARGV_TRUNCATED else "false"},'
                f'"argc":{ev.argc},"return_code":{ev.ret},'
                f'{trusts.get((ev.kpath_src, ev.flags)) or _trusted(trusts, ev)}}}\n'
            )
        elif type(ev) is Fork:
            line = f'{{"type":"fork",{common},"child_pid":{ev.child_pid}}}\n'
        elif type(ev) is Exit:
            line = f'{{"type":"exit",{common},{exits[ev.exit_code_raw]}}}\n'
        elif type(ev) is Connect:
            line = (
                f'{{"type":"connect",{common},'
                f'{connects[ev.sockaddr, ev.sock_type, ev.protocol]},"return_code":{ev.ret},'
                f'{_kernel_dst_fields(ev)}}}\n'
            )
        elif type(ev) is Chdir:
            fd = ev.fd
            requested = paths[ev.requested_path] if fd == -1 else "null"
            line = (
                f'{{"type":"chdir",{common},"path":{paths[path]},'
                f'"requested_path":{requested},"fd":{fd},"return_code":{ev.ret},'
                f'{trusts.get((ev.kpath_src, ev.flags)) or _trusted(trusts, ev)}}}\n'
            )
        elif type(ev) is Cgroup:
            line = (
                f'{{"type":"cgroup",{common},"moved_pid":{ev.moved_pid},'
                f'"dst_cgroup_id":{ev.dst_id},"dst_hierarchy":{ev.dst_root},'
                f'"dst_level":{ev.dst_level},"dst_path":{_jtext(ev.dst_path)},'
                f'"tampered":{_jbool(trust.tampered(ev))}}}\n'
            )
        else:  # a type this module does not know yet: the common fields only
            name = TYPE_NAMES.get(ev.type, f"type_{ev.type}")
            line = f'{{"type":{json.dumps(name)},{common}}}\n'
        if ev.flags & READ_FAILED:  # its path, argv or address is missing or partial
            line = line[:-2] + ',"read_failed":true}\n'
        write(line)
        n += 1
    return n
