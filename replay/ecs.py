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
from typing import Any, Final, TextIO

from replay.base import Session
from replay.events import PathResolver, with_paths
from replay.export_ids import Ids
from replay.jsonl import _Cache, _jtext
from replay.model import Process, ProcessModel, running_program
from sessrec import format as fmt
from sessrec.event import (
    ARGV_TRUNCATED,
    EINPROGRESS,
    Chdir,
    Connect,
    Event,
    Exec,
    Exit,
    Fork,
    Open,
)

ECS_VERSION: Final = "8.11.0"
O_CREAT: Final = 0o100


def _text(data: bytes) -> str:
    return fmt.text(data)


def _outcome(ret: int) -> str:
    return "success" if ret >= 0 else "failure"


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _Docs:
    """Builds the documents, one JSON line per event. What does not change
    from one event to the next is encoded once: the constant fields, the
    event.* prefix of each kind of event, and the process.* object of a
    process until its program, working directory or parent changes."""

    def __init__(self, session: Session):
        header = session.header
        self.header = header
        self.wall_ns: int = header["clock"]["wall_ns"]
        self.ids = Ids(header["session_id"])
        self.timefmt = fmt.TimeFormatter()
        self.model = ProcessModel(header["leader_pid"], index=False)
        self.resolver = PathResolver.from_header(header)
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
        self.entity: dict[int, str] = {}  # Process.seq -> entity_id
        self._leader: str | None = None  # encoded, once its entity id is known
        self._processes: dict[tuple[Any, ...], str] = {}
        self._event_heads: dict[tuple[str, str, str, str], str] = {}
        self._users: dict[int, str] = {}
        self._cwds: dict[int, bytes] = {}  # Process.seq -> its latest cwd
        self._flags = _Cache(lambda flags: _dumps(list(fmt.open_flag_names(flags))))
        self.n = 0

    # --- processes ---

    def entity_id(self, proc: Process) -> str:
        eid = self.entity.get(proc.seq)
        if eid is None:
            eid = self.entity[proc.seq] = self.ids.process(proc.pid, proc.start_ns)
        return eid

    def leader(self) -> dict[str, Any]:
        """process.entry_leader / session_leader: the session's first
        process, the recorded command, as the header describes it."""
        h = self.header
        command = list(h["command"])
        leader: dict[str, Any] = {"pid": h["leader_pid"], "args": command,
                                  "args_count": len(command), "start": h["started_at"],
                                  "working_directory": _text(h["cwd"])}
        if command:
            leader["name"] = posixpath.basename(command[0])
            if command[0].startswith("/"):
                leader["executable"] = command[0]
        proc = self.model.leader
        if proc is not None and proc.pid == h["leader_pid"]:
            leader["entity_id"] = self.entity_id(proc)
        return leader

    def _leader_json(self) -> str:
        if self._leader is not None:
            return self._leader
        leader = self.leader()
        text = _dumps(leader)
        if "entity_id" in leader:
            self._leader = text
        return text

    def process(self, proc: Process, ev: Event) -> dict[str, Any]:
        """The process.* fields of proc at this event, as a dict."""
        if not proc.forked and proc.pid == self.header["leader_pid"]:
            start = self.header["started_at"]  # it started the recording
        else:
            start = self.timefmt(self.wall_ns + proc.start_ns)  # fork, or first seen
        doc: dict[str, Any] = {
            "pid": proc.pid,
            "entity_id": self.entity_id(proc),
            "start": start,
            "thread": {"id": ev.tid if ev.pid == proc.pid else proc.pid},
            "user": {"id": str(ev.uid)},
        }
        prog = running_program(proc, ev.ts)
        if prog is not None:
            args = [_text(a) for a in prog.argv]
            doc["args"] = args
            doc["args_count"] = len(args)
            if prog.path is not None:
                doc["executable"] = _text(prog.path)
                doc["name"] = _text(posixpath.basename(prog.path))
        doc.setdefault("name", _text(proc.comm))
        cwd = self._cwd(proc)
        if cwd is not None:
            doc["working_directory"] = _text(cwd)
        parent: dict[str, Any] = {"pid": proc.ppid}
        if proc.parent is not None and proc.parent.pid == proc.ppid:
            parent["entity_id"] = self.entity_id(proc.parent)
        doc["parent"] = parent
        return doc

    def _cwd(self, proc: Process) -> bytes | None:
        """proc's working directory; at its exit (which the resolver has
        already forgotten), the last one seen."""
        cwd = self.resolver.cwd(proc.pid) if proc.end_ns is None else None
        if cwd is None:
            return self._cwds.get(proc.seq)
        self._cwds[proc.seq] = cwd
        return cwd

    def process_json(self, proc: Process, ev: Event, **extra: Any) -> str:
        """process.* encoded, from the cache when nothing it shows changed."""
        leader = self._leader_json()
        if extra:
            doc = self.process(proc, ev)
            doc.update(extra)
            return _dumps(doc)[:-1] + f',"entry_leader":{leader},"session_leader":{leader}}}'
        prog = running_program(proc, ev.ts)
        key = (proc.seq, id(prog), self._cwd(proc), proc.ppid,
               ev.tid if ev.pid == proc.pid else proc.pid, ev.uid, leader is self._leader)
        text = self._processes.get(key)
        if text is None:
            if len(self._processes) > 65536:
                self._processes.clear()
            text = _dumps(self.process(proc, ev))[:-1]
            text += f',"entry_leader":{leader},"session_leader":{leader}}}'
            self._processes[key] = text
        return text

    # --- documents ---

    def line(self, ev: Event, category: str, etype: str, action: str, outcome: str,
             process: str, **fields: str | dict[str, Any] | None) -> str:
        """One document: fields are the other top-level objects (file,
        destination, network, sessrec): dicts to encode, or JSON text."""
        head_key = (category, etype, action, outcome)
        head = self._event_heads.get(head_key)
        if head is None:
            head = self._event_heads[head_key] = (
                f'"kind":"event","category":["{category}"],"type":["{etype}"],'
                f'"action":"{action}","outcome":"{outcome}","module":"sessrec",'
                f'"dataset":"sessrec.session"'
            )
        user = self._users.get(ev.uid)
        if user is None:
            u: dict[str, str] = {"id": str(ev.uid)}
            if ev.uid == self.uid:
                u["name"] = self.user
            user = self._users[ev.uid] = _dumps(u)
        n = self.n
        self.n += 1
        parts = [
            f'{{"@timestamp":"{self.timefmt(self.wall_ns + ev.ts)}",{self.constant},'
            f'"event":{{{head},"id":"{self.ids.event(n)}","sequence":{n}}},'
            f'"user":{user},"process":{process}'
        ]
        for key, value in fields.items():
            if value:
                parts.append(f',"{key}":{value if isinstance(value, str) else _dumps(value)}')
        parts.append("}\n")
        return "".join(parts)

    def document(self, ev: Event, path: bytes | None) -> str:
        proc = self.model.feed(ev, path)
        if isinstance(ev, Open):  # the most frequent event: encoded by hand
            etype = "creation" if ev.open_flags & O_CREAT else "access"
            file = []
            if path is not None:
                head, _, tail = path.rpartition(b"/")
                file.append(f'"path":{_jtext(path)},"directory":{_jtext(head or b"/")}')
            else:
                tail = ev.requested_path.rstrip(b"/").rpartition(b"/")[2]
            if tail:
                file.append(f'"name":{_jtext(tail)}')
            return self.line(
                ev, "file", etype, "open", _outcome(ev.ret), self.process_json(proc, ev),
                file="{" + ",".join(file) + "}",
                sessrec=f'{{"return_code":{ev.ret},"flags":{self._flags[ev.open_flags]},'
                f'"requested_path":{_jtext(ev.requested_path)},'
                f'"syscall":"{fmt.syscall_name(fmt.OPEN_SYSCALLS, ev.syscall)}"}}',
            )
        if isinstance(ev, Exec):
            attempted = None
            if ev.ret < 0:  # the caller's process; the program it tried:
                tried = path if path is not None else ev.requested_path
                attempted = {"path": _text(tried), "name": _text(posixpath.basename(tried))}
            extra = {"return_code": ev.ret, "argc": ev.argc,
                     "argv_truncated": bool(ev.flags & ARGV_TRUNCATED)}
            return self.line(ev, "process", "start", "exec", _outcome(ev.ret),
                             self.process_json(proc, ev), file=attempted, sessrec=extra)
        if isinstance(ev, Connect):
            if ev.ret == -EINPROGRESS:
                outcome = "unknown"
            else:
                outcome = "success" if ev.ret == 0 else "failure"
            addr = fmt.decode_sockaddr(ev.sockaddr)
            dest: dict[str, Any] = {}
            network: dict[str, Any] = {}
            if addr.address is not None:
                dest["address"] = addr.address
            if addr.family in (fmt.AF_INET, fmt.AF_INET6) and addr.address is not None:
                dest["ip"] = addr.address.partition("%")[0]
                network["type"] = "ipv4" if addr.family == fmt.AF_INET else "ipv6"
                network["direction"] = "egress"
                proto = fmt.protocol_name(addr.family, ev.sock_type, ev.protocol)
                if proto is not None:
                    network["transport"] = proto
            if addr.port is not None:
                dest["port"] = addr.port
            return self.line(ev, "network", "connection", "connect", outcome,
                             self.process_json(proc, ev), destination=dest, network=network,
                             sessrec={"return_code": ev.ret, "family": addr.family_name})
        if isinstance(ev, Exit):
            st = fmt.decode_exit(ev.exit_code_raw)
            process = self.process_json(proc, ev, exit_code=fmt.shell_status(ev.exit_code_raw),
                                        end=self.timefmt(self.wall_ns + ev.ts))
            return self.line(ev, "process", "end", "exit",
                             "success" if ev.exit_code_raw == 0 else "failure", process,
                             sessrec={"signal": st.signal, "core_dumped": st.core_dumped})
        if isinstance(ev, Fork):
            child = self.model.by_pid[ev.child_pid]
            return self.line(ev, "process", "start", "fork", "success",
                             self.process_json(child, ev))
        if isinstance(ev, Chdir):
            changed: dict[str, Any] = {"return_code": ev.ret}
            if path is not None:
                changed["directory"] = _text(path)
            return self.line(ev, "process", "change", "chdir", _outcome(ev.ret),
                             self.process_json(proc, ev), sessrec=changed)
        raise TypeError(ev)  # pragma: no cover - the reader knows no other types


def write_ecs(session: Session, out: TextIO) -> int:
    """Write one ECS document per event of session to out; return the count.

    session.damage (if any) is the caller's to report afterwards."""
    docs = _Docs(session)
    write = out.write
    document = docs.document
    n = 0
    for ev, path in with_paths(session, resolver=docs.resolver):
        write(document(ev, path))
        n += 1
    return n
