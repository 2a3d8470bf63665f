"""Export a session as Teleport audit events (one JSON object per line), so
that pipelines built for Teleport's enhanced session recording, such as
Elastic's Teleport integration, can ingest it. docs/EXPORTS.md has the
mapping; the field names and types are Teleport's
(api/proto/teleport/legacy/types/events/events.proto: SessionStart,
SessionEnd, SessionCommand, SessionDisk, SessionNetwork, BPFMetadata).

    session.start    T2000I  first, from the header
    session.command  T4000I  each exec (also failed ones: return_code < 0)
    session.disk     T4001I  each open
    session.network  T4002I  each connect of an IPv4 or IPv6 socket
    session.process_exit SR4003I  each exit (a sessrec event: Teleport has
                             no exit event)
    session.end      T2004I  last, from the trailer (not for an unfinished file)

Teleport has no event for fork, chdir, connects of other socket families
(unix), or connects of raw and ICMP sockets (no connection is made): those
are not exported here (they are in the jsonl and ECS exports).
"""

from __future__ import annotations

import json
from typing import TextIO

from replay.base import Session
from replay.cache import Texts
from replay.events import PathResolver
from replay.export_ids import Ids
from replay.jsonl import _jpath, _jtext
from replay.text import json_safe
from replay.trust import kernel_dst
from sessrec import format as fmt
from sessrec import linux
from sessrec.event import Connect, Exec, Exit, Open

SESSION_START = ("session.start", "T2000I")
SESSION_END = ("session.end", "T2004I")
SESSION_COMMAND = ("session.command", "T4000I")
SESSION_DISK = ("session.disk", "T4001I")
SESSION_NETWORK = ("session.network", "T4002I")
# Not a Teleport event: Teleport records no exits. The code is outside
# Teleport's "T" namespace so it can never collide with one of theirs.
SESSION_PROCESS_EXIT = ("session.process_exit", "SR4003I")

OPERATION_CONNECT = 0  # SessionNetwork.NetworkOperation CONNECT
SOCK_RAW = 3
# A connect() on a raw or ICMP ("ping") socket only sets the address that
# send() uses: no connection, and no port.
ICMP_PROTOCOLS = frozenset((1, 58))  # IPPROTO_ICMP, IPPROTO_ICMPV6
ACTION_OBSERVED = 0  # EventAction OBSERVED: recorded, not enforced
# src_addr: the recorder does not see the local address; the unspecified
# address of the family says so and keeps the field an IP.
UNKNOWN_SOURCE = {linux.AF_INET: "0.0.0.0", linux.AF_INET6: "::"}


def _kind(kind: tuple[str, str]) -> str:
    return f'"event":"{kind[0]}","code":"{kind[1]}"'


def _dump(obj: object) -> str:
    return json_safe(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def write_teleport(session: Session, out: TextIO) -> int:
    """Write the session as Teleport audit events to out; return the count.

    session.damage (if any) is the caller's to report afterwards.

    A hot loop like replay.jsonl's: each line is one f-string of the fields
    that change, around pre-encoded ones that do not."""
    header = session.header
    wall_ns: int = header["clock"]["wall_ns"]
    sid: str = header["session_id"]
    user: str = header["user"]
    ids = Ids(sid, "teleport")
    event_id = ids.event
    timefmt = fmt.TimeFormatter()
    audit_id = header["audit_session_id"]
    # BPFMetadata.AuditSessionID is a uint32 that Teleport always writes;
    # an unset id is the kernel's (u32)-1, as Teleport would read it.
    audit_session_id = fmt.UNSET_ID if audit_id is None else audit_id
    cgroup_id: int = header["cgroup_id"]
    # SessionMetadata, UserMetadata, ServerMetadata: the same in every event.
    common = (
        f'"sid":{_dump(sid)},"login":{_dump(user)},"user":{_dump(user)},'
        f'"server_id":"{ids.server(header["hostname"])}",'
        f'"server_hostname":{_dump(header["hostname"])}'
    )
    comms = Texts(_jtext)
    paths: Texts[bytes | None] = Texts(_jpath, 2048)  # as jsonl's
    argvs: Texts[tuple[bytes, ...]] = Texts(
        lambda argv: "[" + ",".join(_jtext(a) for a in argv[1:]) + "]")
    command, disk = _kind(SESSION_COMMAND), _kind(SESSION_DISK)
    network, process_exit = _kind(SESSION_NETWORK), _kind(SESSION_PROCESS_EXIT)
    write = out.write

    def line(n: int, kind: str, time: str, body: str) -> str:
        """time: a JSON string. The header's and trailer's times are the
        file's text, encoded like every other string (a crafted one would
        forge events)."""
        return f'{{"ei":{n},{kind},"time":{time},"uid":"{event_id(n)}",{common}{body}}}\n'

    start = {"initial_command": list(header["command"])}
    write(line(0, _kind(SESSION_START), _dump(header["started_at"]), "," + _dump(start)[1:-1]))
    n = 1
    resolve = PathResolver.for_session(session).apply
    for ev in session.records():
        path = resolve(ev)
        if type(ev) is Open:
            body = (
                f',"pid":{ev.pid},"cgroup_id":{cgroup_id},"program":{comms[ev.comm]},'
                f'"audit_session_id":{audit_session_id},'
                f'"path":{paths[ev.requested_path if path is None else path]},'
                f'"flags":{ev.open_flags},"return_code":{ev.ret}'
            )
            kind = disk
        elif type(ev) is Exec:
            body = (
                f',"pid":{ev.pid},"cgroup_id":{cgroup_id},"program":{comms[ev.comm]},'
                f'"audit_session_id":{audit_session_id},"ppid":{ev.ppid},'
                f'"path":{paths[ev.requested_path if path is None else path]},'
                f'"argv":{argvs[tuple(ev.argv)]},"return_code":{ev.ret}'
            )
            kind = command
        elif type(ev) is Connect:
            if ev.sock_type == SOCK_RAW or ev.protocol in ICMP_PROTOCOLS:
                continue  # no connection: not what SessionNetwork's CONNECT means
            kdst = kernel_dst(ev)  # where the kernel connected, when it says
            addr = linux.decode_sockaddr(ev.sockaddr if kdst is None else kdst)
            src = UNKNOWN_SOURCE.get(addr.family)
            if src is None or addr.address is None:
                continue
            dst = addr.address.partition("%")[0]  # without an IPv6 zone
            body = (
                f',"pid":{ev.pid},"cgroup_id":{cgroup_id},"program":{comms[ev.comm]},'
                f'"audit_session_id":{audit_session_id},'
                f'"src_addr":"{src}","dst_addr":"{dst}","dst_port":{addr.port},'
                f'"version":{4 if addr.family == linux.AF_INET else 6},'
                f'"operation":{OPERATION_CONNECT},"action":{ACTION_OBSERVED}'
            )
            kind = network
        elif type(ev) is Exit:
            raw = ev.exit_code_raw
            st = linux.decode_exit(raw)
            body = (
                f',"pid":{ev.pid},"cgroup_id":{cgroup_id},"program":{comms[ev.comm]},'
                f'"audit_session_id":{audit_session_id},'
                f'"ppid":{ev.ppid},"exit_code":{linux.shell_status(raw)},'
                f'"signal":{st.signal or 0},"core_dumped":{"true" if st.core_dumped else "false"}'
            )
            kind = process_exit
        else:  # fork, chdir: Teleport has no such events
            continue
        write(line(n, kind, f'"{timefmt(wall_ns + ev.ts)}"', body))
        n += 1

    trailer = session.trailer
    if trailer is not None:
        end = {
            "enhanced_recording": True,
            "participants": [user],
            "session_start": header["started_at"],
            "session_stop": trailer["ended_at"],
            "initial_command": list(header["command"]),
            # Whether the session had a terminal: not recorded by sessrec.
            "interactive": False,
        }
        write(line(n, _kind(SESSION_END), _dump(trailer["ended_at"]), "," + _dump(end)[1:-1]))
        n += 1
    return n
