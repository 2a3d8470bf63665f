"""Export a session as Elastic Common Schema documents (NDJSON, ECS 8.x), one
per event, with the process fields Elastic's Session View builds its tree
from: process.entity_id, process.parent.entity_id, process.entry_leader and
process.session_leader. docs/EXPORTS.md has the mapping.

Every document describes the acting process as it is at that event (its
program, argv, working directory, start), which the process model and the
path resolver know while the file is read, in one pass. Paths go only in
file.* and process.working_directory, never in process.executable, which is
always the program's path. Fields ECS does not have (the raw return code,
open flags, the signal) are under the custom "sessrec" object.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Iterable, Mapping
from typing import Final, TextIO

from replay import cache
from replay.base import Session, no_gc
from replay.cache import Budget, Texts
from replay.events import PathResolver
from replay.export_ids import Ids
from replay.jsonl import _jtext
from replay.model import ExecInfo, Process, ProcessModel, running_program
from replay.text import json_safe
from replay.trust import kernel_dst
from sessrec import format as fmt
from sessrec import linux
from sessrec.event import (
    ARGV_TRUNCATED,
    TAMPERED,
    Cgroup,
    Chdir,
    Connect,
    Event,
    Exec,
    Exit,
    Fork,
    Open,
)
from sessrec.linux import EINPROGRESS

ECS_VERSION: Final = "8.11.0"
O_CREAT: Final = 0o100


def _text(data: bytes) -> str:
    return fmt.text(data)


def _outcome(ret: int) -> str:
    return "success" if ret >= 0 else "failure"


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(obj: object) -> str:
    return json_safe(_encode(obj))

# network.transport is an IANA protocol keyword; network.iana_number its
# number. MPTCP (kernel protocol 262) has no IANA number: it is "tcp", and
# sessrec.mptcp says it was MPTCP.
IANA_TRANSPORT: Final[Mapping[int, tuple[str, int]]] = {
    1: ("icmp", 1), 6: ("tcp", 6), 17: ("udp", 17), 58: ("ipv6-icmp", 58), 132: ("sctp", 132),
    262: ("tcp", 6),
}
MPTCP: Final = 262
# Processes whose encoded process.* is kept (about 2 KB each): a bound for
# files of many processes that never exit; and the characters of their
# process.* and working directories kept (by the texts made: a hostile file
# can give each its own 1 MiB path).
_MAX_CACHED: Final = 65536
_PROCESS_BUDGET: Final = 4 * cache.BUDGET
# The characters of the header's command that the leaders' args carry. Every
# document carries them twice: a file's 1 MiB command made each document 2
# MiB, its output the file's events times its header (leader_warning).
LEADER_ARGS_MAX: Final = 4096


# "000" to "fff": the last three hex digits of an event.id's index.
_HEX3: Final = tuple(f"{i:03x}" for i in range(4096))


def _bool(value: bool) -> str:
    return "true" if value else "false"


# A process's process.*, encoded: (the Process.version it shows; its
# members up to the thread's id; those after the user, up to its parent;
# and those closed with the leaders, once they are known).
_Entry = tuple[int, str, str, str | None]


def _cut(args: list[str]) -> list[str]:
    """args, whole up to LEADER_ARGS_MAX characters; past them, the one
    that crosses it cut there, and none after it."""
    kept: list[str] = []
    room = LEADER_ARGS_MAX
    for arg in args:
        if len(arg) > room:
            kept.append(arg[:room])
            break
        kept.append(arg)
        room -= len(arg)
    return kept


def leader_warning(header: fmt.Header) -> str | None:
    """What the documents leave out of a long recorded command, or None."""
    size = sum(map(len, header["command"]))
    if size <= LEADER_ARGS_MAX:
        return None
    return (f"the recorded command is {size:,} characters: process.entry_leader.args and "
            f"session_leader.args carry its first {LEADER_ARGS_MAX:,} (args_count counts "
            "them all; sessrec info shows it whole)")


class _Docs:
    """Builds the documents, one JSON line per event, each with one f-string
    around parts encoded once: the constant fields with the event.* head of
    each kind of event (_head), the user, the program (args, executable) of
    each exec, each destination, and the process.* object of a process until
    what it shows (program, working directory, parent) changes; the thread
    and the user go in between."""

    def __init__(self, session: Session):
        header = session.header
        self.header = header
        self.leader_pid: int = header["leader_pid"]
        self.wall_ns: int = header["clock"]["wall_ns"]
        self.ids = Ids(header["session_id"], "ecs")
        self.event_prefix = self.ids.event_prefix  # Ids.event, inlined in _head and write_all
        self.timefmt = fmt.TimeFormatter()
        # Only the live processes and their ancestors: a document shows no other.
        self.model = ProcessModel(header["leader_pid"], index=False, keep=False)
        self._feed = self.model.feed
        self._by_pid = self.model.by_pid
        self.resolver = PathResolver.for_session(session)
        self.user: str = header["user"]
        self.uid: int = header["uid"]
        host = {
            "name": header["hostname"],
            "hostname": header["hostname"],
            "os": {"type": "linux", "kernel": header["kernel"]},
        }
        labels = {"session_id": header["session_id"]}
        if header["audit_session_id"] is not None:
            labels["audit_session_id"] = str(header["audit_session_id"])
        if header["login_uid"] is not None:
            labels["login_uid"] = str(header["login_uid"])
        self.constant = (
            f'"ecs":{{"version":"{ECS_VERSION}"}},"host":{_dumps(host)},"labels":{_dumps(labels)}'
        )
        self.started_at = _dumps(header["started_at"])
        self.entity: dict[int, str] = {}  # Process.seq -> entity_id
        self._leader: str | None = None  # the leaders' JSON, once its entity id is known
        self._unknown_leader: str | None = None  # and until then
        # Process.seq -> its process.* (of the live processes: 2 KB each, and
        # their program's and working directory's text), and its characters
        # (by each text's length, as cache.Budget does, inline)
        self._cores: dict[int, _Entry] = {}
        self._core_chars = 0
        # what _entry's process.* shows but its head -> its text, and closed
        self._bodies: dict[tuple[str, str | None, bytes | None, int, str | None],
                           tuple[str, str | None]] = {}
        self._bodies_kept = Budget(4096)
        # (path, requested path, flags, syscall) -> an open's parts (_open_parts)
        self._opens: dict[tuple[bytes | None, bytes, int, int], tuple[str, str, str, str]] = {}
        self._opens_kept = Budget()
        self._programs: dict[tuple[bytes | None, ...], str] = {}  # (path, *argv) -> _program
        self._programs_kept = Budget()
        self._heads: dict[tuple[str, str, str, str], str] = {}  # (of the code's constants)
        self._users: dict[int, tuple[str, str]] = {}
        self._users_kept = Budget(4096)
        # Process.seq -> its latest cwd, for its exit's document (which the
        # resolver has forgotten by then), and their bytes, as _cores'
        self._cwds: dict[int, bytes] = {}
        self._cwd_bytes = 0
        # comms and working directories, as JSON strings, for _entry
        self._texts: Texts[bytes] = Texts(_jtext, 4096)
        self._flags: Texts[int] = Texts(
            lambda flags: _dumps(list(linux.open_flag_names(flags))))
        self._connects: dict[tuple[bytes, int, int], str] = {}
        self._connects_kept = Budget()
        self._exits: dict[int, tuple[str, str, int | str, str]] = {}  # _exit_parts
        self._exits_kept = Budget(4096)
        # the heads that do not depend on the event but for its outcome
        self._fork_head = self._head("process", "start", "fork", "success")
        self._exec_heads = (self._head("process", "start", "exec", "success"),
                            self._head("process", "start", "exec", "failure"))
        self.n = 0  # the documents written

    # --- processes ---

    def entity_id(self, proc: Process) -> str:
        if proc.seq < 0:  # not in the model (past its MAX_PROCESSES): not cached
            return self.ids.process(proc.pid, proc.start_ns)
        eid = self.entity.get(proc.seq)
        if eid is None:
            eid = self.entity[proc.seq] = self.ids.process(proc.pid, proc.start_ns)
        return eid

    def leader(self, proc: Process | None) -> dict[str, object]:
        """process.entry_leader / session_leader: the session's first
        process, the recorded command, as the header describes it; with
        the entity id of proc, its process in the model, once it is known."""
        h = self.header
        command = list(h["command"])
        args = _cut(command)
        leader: dict[str, object] = {"pid": h["leader_pid"], "args": args,
                                  "args_count": len(command), "start": h["started_at"],
                                  "working_directory": _text(h["cwd"])}
        if args:
            leader["name"] = posixpath.basename(args[0])
            if args[0].startswith("/"):
                leader["executable"] = args[0]
        if proc is not None:
            leader["entity_id"] = self.entity_id(proc)
        return leader

    def _leaders(self) -> str:
        """The entry_leader and session_leader members, encoded: without
        an entity id until the leader's process is in the model (each text
        made once: a file may never show it)."""
        if self._leader is not None:
            return self._leader
        proc = self.model.leader
        if proc is None or proc.pid != self.leader_pid:
            if self._unknown_leader is None:
                self._unknown_leader = self._leaders_text(self.leader(None))
            return self._unknown_leader
        self._leader = text = self._leaders_text(self.leader(proc))
        return text

    @staticmethod
    def _leaders_text(leader: dict[str, object]) -> str:
        text = _dumps(leader)
        return f',"entry_leader":{text},"session_leader":{text}'

    def _program(self, prog: ExecInfo) -> str:
        """The program's members of process.*: args, args_count, and
        executable and name when its path is known."""
        key = (prog.path, *prog.argv)  # by value: the same program, run again
        text = self._programs.get(key)
        if text is not None:
            return text
        text = f',"args":[{",".join([_jtext(a) for a in prog.argv])}],"args_count":{len(prog.argv)}'
        if prog.path is not None:
            text += (f',"executable":{_jtext(prog.path)}'
                     f',"name":{_jtext(posixpath.basename(prog.path))}')
        return self._programs_kept.keep(self._programs, key, text, 2 * len(text))

    def _cwd(self, proc: Process) -> bytes | None:
        """proc's working directory; at its exit (which the resolver has
        already forgotten), the last one seen."""
        cwd = self.resolver.cwd(proc.pid) if proc.end_ns is None else None
        if cwd is None:
            return self._cwds.get(proc.seq)
        if proc.seq >= 0:
            self._cwd_bytes += len(cwd)
            if self._cwd_bytes > _PROCESS_BUDGET:
                self._cwds.clear()
                self._cwd_bytes = 0
            self._cwds[proc.seq] = cwd
        return cwd

    def _entry(self, proc: Process, ts: int, now: str | None = None) -> _Entry:
        """proc's process.*, encoded (_Entry), from the cache while what it
        shows (program, working directory, comm, ppid, parent: its
        Process.version) is the same. The thread and user are the event's,
        put in by write_all. now: ts's text, when write_all has made it."""
        key = proc.version
        cached = self._cores.get(proc.seq)
        if cached is not None:
            if cached[0] == key:
                if cached[3] is None and self._leader is not None:
                    closed = cached[2] + self._leader + "}"
                    self._core_chars += len(closed)
                    cached = self._cores[proc.seq] = (key, cached[1], cached[2], closed)
                return cached
            head = cached[1]
        else:
            if not proc.forked and proc.pid == self.leader_pid:
                start = self.started_at  # it started the recording
            elif now is not None and proc.start_ns == ts:  # its fork's document
                start = now
            else:
                start = f'"{self.timefmt(self.wall_ns + proc.start_ns)}"'  # fork, or first seen
            head = (f'{{"pid":{proc.pid},"entity_id":"{self.entity_id(proc)}","start":{start},'
                    '"thread":{"id":')
        # running_program(proc, ts), _program and entity_id's cache, inlined
        # for their common cases (two calls of this a process)
        prog = proc.program
        if prog is None:
            prog = proc.inherited
        elif prog.ts > ts:  # an exec out of time order
            prog = running_program(proc, ts)
        program = "" if prog is None else (
            self._programs.get((prog.path, *prog.argv)) or self._program(prog))
        name = self._texts[proc.comm] if prog is None or prog.path is None else None
        cwd = self._cwd(proc)
        parent = proc.parent
        parent_id = ((self.entity.get(parent.seq) or self.entity_id(parent))
                     if parent is not None and parent.pid == proc.ppid else None)
        # The rest, by value: the children of one shell, running one program in
        # one directory, show the same.
        shows = (program, name, cwd, proc.ppid, parent_id)
        body = self._bodies.get(shows)
        if body is None:
            text = program
            if name is not None:
                text += f',"name":{name}'
            if cwd is not None:
                text += f',"working_directory":{self._texts[cwd]}'
            if parent_id is not None:
                text += f',"parent":{{"pid":{proc.ppid},"entity_id":"{parent_id}"}}'
            else:
                text += f',"parent":{{"pid":{proc.ppid}}}'
            body = (text, None if self._leader is None else text + self._leader + "}")
            if body[1] is not None:  # complete: kept
                self._bodies_kept.keep(self._bodies, shows, body, 3 * len(body[1]))
        entry = (key, head, *body)
        if proc.seq >= 0:
            cores = self._cores
            # the closed text too: each holds the leaders', which a cache miss
            # of _bodies makes anew
            self._core_chars += len(head) + len(body[0]) + len(body[1] or "")
            if len(cores) >= _MAX_CACHED or self._core_chars > _PROCESS_BUDGET:
                cores.clear()
                self._core_chars = 0
            cores[proc.seq] = entry
        return entry

    # --- documents ---

    def _head(self, category: str, etype: str, action: str, outcome: str) -> str:
        """What goes between a document's @timestamp and its event.id: the
        constant fields and event.*'s members before its id."""
        key = (category, etype, action, outcome)
        head = self._heads.get(key)
        if head is None:
            head = self._heads[key] = (
                f'Z",{self.constant},"event":{{"kind":"event","category":["{category}"],'
                f'"type":["{etype}"],"action":"{action}","outcome":"{outcome}",'
                f'"module":"sessrec","dataset":"sessrec.session","id":"{self.event_prefix}'
            )
        return head

    def _user(self, uid: int) -> tuple[str, str]:
        """What goes either side of process.*'s first part for the event's
        uid: the end of event.*, user and the start of process; the end of
        the thread and process.user."""
        u: dict[str, str] = {"id": str(uid)}
        if uid == self.uid:
            u["name"] = self.user
        parts = (f'}},"user":{_dumps(u)},"process":', f'}},"user":{{"id":"{uid}"}}')
        return self._users_kept.keep(self._users, uid, parts, len(parts[0]) + len(parts[1]))

    def _destination(self, ev: Connect) -> str:
        """destination, network and sessrec of a connect, but its return code:
        where the kernel connected, when it says (BPF ABI 2)."""
        kdst = kernel_dst(ev)
        key = (ev.sockaddr if kdst is None else kdst, ev.sock_type, ev.protocol)
        text = self._connects.get(key)
        if text is not None:
            return text
        addr = linux.decode_sockaddr(key[0])
        dest: dict[str, object] = {}
        network: dict[str, object] = {}
        extra = ""
        if addr.address is not None:
            dest["address"] = addr.address
        if addr.family in (linux.AF_INET, linux.AF_INET6) and addr.address is not None:
            dest["ip"] = addr.address.partition("%")[0]
            network["type"] = "ipv4" if addr.family == linux.AF_INET else "ipv6"
            network["direction"] = "egress"
            iana = IANA_TRANSPORT.get(ev.protocol)
            if iana is not None:
                network["transport"], number = iana
                network["iana_number"] = str(number)
            if ev.protocol == MPTCP:
                extra = ',"mptcp":true'
        if addr.port is not None:
            dest["port"] = addr.port
        text = (f',"destination":{_dumps(dest)}' if dest else "") + (
            f',"network":{_dumps(network)}' if network else "")
        text += f'\0,"family":"{addr.family_name}"{extra}}}'
        return self._connects_kept.keep(self._connects, key, text, len(key[0]) + len(text))

    def _open_parts(self, key: tuple[bytes | None, bytes, int, int]) -> tuple[str, str, str, str]:
        """An open's event.* heads (success, failure), and its members
        before and after its return code."""
        path, requested, flags, syscall = key
        etype = "creation" if flags & O_CREAT else "access"
        if path is not None:
            head, _, tail = path.rpartition(b"/")
            file = f'"path":{_jtext(path)},"directory":{_jtext(head or b"/")}'
            if tail:
                file += f',"name":{_jtext(tail)}'
        else:
            tail = requested.rstrip(b"/").rpartition(b"/")[2]
            file = f'"name":{_jtext(tail)}' if tail else ""
        parts = (
            self._head("file", etype, "open", "success"),
            self._head("file", etype, "open", "failure"),
            f',"file":{{{file}}},"sessrec":{{"return_code":',
            f',"flags":{self._flags[flags]},"requested_path":{_jtext(requested)},'
            f'"syscall":"{linux.syscall_name(linux.OPEN_SYSCALLS, syscall)}"}}',
        )
        size = len(requested) + len(path or b"") + sum(map(len, parts[2:]))
        return self._opens_kept.keep(self._opens, key, parts, size)

    def _exit_parts(self, raw: int) -> tuple[str, str, int | str, str]:
        """An exit's exit_code member, its event.* head, its signal and the
        members after it, for its wait status."""
        st = linux.decode_exit(raw)
        parts = (f',"exit_code":{linux.shell_status(raw)}',
                 self._head("process", "end", "exit", "success" if raw == 0 else "failure"),
                 "null" if st.signal is None else st.signal,
                 f',"core_dumped":{_bool(st.core_dumped)}}}')
        return self._exits_kept.keep(self._exits, raw, parts, 256)

    def _other(self, ev: Event, path: bytes | None, now: str
               ) -> tuple[str, str, int, str, str, int | str, str]:
        """The parts of a document (write_all's) of any event but an open:
        its event.* head; process.* up to "thread"; the thread's id; process.*
        after "user", closed; then the other top-level members (file,
        destination, network, sessrec), encoded, around the event's return
        code (before, ret, after)."""
        proc = self._feed(ev, path)
        if type(ev) is Fork:  # its process is the child (the forking process, when
            # the child is not in the model, past its MAX_PROCESSES)
            proc = self._by_pid.get(ev.child_pid, proc)
        # proc's process.* (_entry), from the cache while what it shows is the same
        entry = self._cores.get(proc.seq)
        if entry is None or entry[3] is None or entry[0] != proc.version:
            entry = self._entry(proc, ev.ts, now)
        closed = entry[3]
        if closed is None:  # the leaders' entity id is not known yet
            closed = entry[2] + self._leaders() + "}"
        tid = ev.tid
        ret: int | str
        if type(ev) is Exec:
            ret = ev.ret
            file = ""
            if ret < 0:  # the caller's process; the program it tried:
                tried = path if path is not None else ev.requested_path
                file = (f',"file":{{"path":{_jtext(tried)},'
                        f'"name":{_jtext(posixpath.basename(tried))}}}')
            head = self._exec_heads[ret < 0]
            before = f'{file},"sessrec":{{"return_code":'
            after = (f',"argc":{ev.argc},"argv_truncated":'
                     f'{_bool(bool(ev.flags & ARGV_TRUNCATED))}}}')
        elif type(ev) is Fork:  # the thread: the child's (its process), not the forking one
            head = self._fork_head
            before = after = ret = ""
            if proc.pid != ev.pid:
                tid = proc.pid
        elif type(ev) is Exit:
            raw = ev.exit_code_raw
            code, head, ret, after = self._exits.get(raw) or self._exit_parts(raw)
            closed = f'{entry[2]}{code},"end":{now}{self._leaders()}}}'
            self._cores.pop(proc.seq, None)  # its last event
            self._cwds.pop(proc.seq, None)
            self.entity.pop(proc.seq, None)  # made again if a child shows it
            before = ',"sessrec":{"signal":'
        elif type(ev) is Connect:
            ret = ev.ret
            if ret == -EINPROGRESS:
                outcome = "unknown"
            else:
                outcome = "success" if ret == 0 else "failure"
            head = self._head("network", "connection", "connect", outcome)
            dest, _, after = self._destination(ev).partition("\0")
            before = f'{dest},"sessrec":{{"return_code":'
        elif type(ev) is Chdir:
            ret = ev.ret
            head = self._head("process", "change", "chdir", _outcome(ret))
            before = ',"sessrec":{"return_code":'
            after = "}" if path is None else f',"directory":{_jtext(path)}}}'
        elif type(ev) is Cgroup:
            head = self._head("process", "change", "cgroup-move", "success")
            before = ',"sessrec":{"moved_pid":'
            ret = ev.moved_pid
            after = f',"cgroup_path":{_jtext(ev.dst_path)},"cgroup_id":{ev.dst_id}}}'
        else:  # pragma: no cover - the reader knows no other types
            raise TypeError(ev)
        return head, entry[1], tid, closed, before, ret, after

    def write_all(self, events: Iterable[Event], write: Callable[[str], object]) -> None:
        """Write each event's document: its head (_head), then process.* in
        two parts, entry[1] (up to "thread") and closed (after "user", to its
        end), around the thread's id and the user; then the other top-level
        members around the event's return code. Opens, most events, are
        done here and the others by _other. What the loop uses per event is
        in locals: a method call and a dozen attributes per event were a
        tenth of the export."""
        resolve = self.resolver.apply
        resolve_open = self.resolver.apply_open
        by_pid = self._by_pid
        feed = self._feed
        cores = self._cores
        entry_of = self._entry
        opens = self._opens
        open_parts = self._open_parts
        other = self._other
        users = self._users
        user_of = self._user
        wall_ns = self.wall_ns
        second = fmt.TimeFormatter.second
        d3 = fmt.DIGITS3  # the nanoseconds' digits
        hex3 = _HEX3
        # @timestamp: the start of the last event's second, in the events'
        # clock (ts, small numbers: one subtraction per event), and its text
        start = -1 << 80
        stamp = second_text = ""
        uid = -1  # the last event's uid, and its parts (_user)
        user = ("", "")
        n = self.n
        id_high = f"{n >> 12:09x}"  # an event.id's index but its last three hex digits
        ret: int | str
        try:
            for ev in events:
                # fmt.TimeFormatter, inlined: a call per event was a tenth of the export.
                # The nanoseconds past the last event's second, when in it (no divmod).
                ns = ev.ts - start
                if not 0 <= ns < 1_000_000_000:
                    sec, ns = divmod(wall_ns + ev.ts, 1_000_000_000)
                    start = sec * 1_000_000_000 - wall_ns
                    second_text = second(sec)
                    stamp = '{"@timestamp":"' + second_text
                if type(ev) is Open:
                    path = resolve_open(ev)
                    # Fed only when it changes the process, as the counts it
                    # would change are not shown.
                    proc = by_pid.get(ev.pid)
                    if proc is None or proc.end_ns is not None or proc.ppid != ev.ppid or (
                            proc.comm != ev.comm):
                        proc = feed(ev, path)
                    # proc's process.* (_entry), from the cache while what it shows is the same
                    entry = cores.get(proc.seq)
                    if entry is None or entry[3] is None or entry[0] != proc.version:
                        entry = entry_of(proc, ev.ts)
                    closed = entry[3]
                    if closed is None:  # the leaders' entity id is not known yet
                        closed = entry[2] + self._leaders() + "}"
                    key = (path, ev.requested_path, ev.open_flags, ev.syscall)
                    ok, failed, before, after = opens.get(key) or open_parts(key)
                    ret = ev.ret
                    head = ok if ret >= 0 else failed
                    tid = ev.tid
                    core = entry[1]
                else:  # (its time's text: a fork's start, an exit's end)
                    now = (f'"{second_text}.{d3[ns // 1_000_000]}{d3[ns // 1_000 % 1_000]}'
                           f'{d3[ns % 1_000]}Z"')
                    head, core, tid, closed, before, ret, after = other(ev, resolve(ev), now)
                # Ids.event, inlined: the index's last three hex digits from a
                # table, the others once per 4,096 events (a format per event cost more).
                low = n & 0xFFF
                if not low:
                    id_high = f"{n >> 12:09x}"
                if ev.uid != uid:
                    uid = ev.uid
                    user = users.get(uid) or user_of(uid)
                # Flagged tampered (replay/trust.py): tagged, so a search finds it.
                tags = ',"tags":["sessrec-tampered"]' if ev.flags & TAMPERED else ""
                write(f'{stamp}.{d3[ns // 1_000_000]}{d3[ns // 1_000 % 1_000]}{d3[ns % 1_000]}'
                      f'{head}{id_high}{hex3[low]}","sequence":{n}'
                      f'{user[0]}{core}{tid}{user[1]}{closed}{before}{ret}{after}{tags}}}\n')
                n += 1
        finally:
            self.n = n


def write_ecs(session: Session, out: TextIO,
              warn: Callable[[str], None] | None = None) -> int:
    """Write one ECS document per event of session to out; return the count.

    session.damage (if any) is the caller's to report afterwards; warn gets
    what the leaders' args leave out of a long recorded command, and the
    process model's warning when the session has more processes than it
    keeps."""
    docs = _Docs(session)
    cut = leader_warning(session.header)
    if cut and warn is not None:
        warn(cut)
    # The collector paused: what the export makes has no cycles, and its
    # passes would walk the caches and the live processes for nothing.
    with no_gc():
        docs.write_all(session.records(), out.write)
    limit = docs.model.limit_warning()
    docs.model.release()
    if limit and warn is not None:
        warn(limit)
    return docs.n
