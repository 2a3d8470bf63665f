"""auditd's log on the replay timeline (docs/AUDIT.md).

read_events() reads auditd's log files (raw or ENRICHED format, as auditd
writes them or `ausearch --raw` prints them) and yields the events of one
audit session, each with all its records: auditd writes an event as several
lines that share the `msg=audit(TIME:SERIAL)` stamp (SYSCALL, EXECVE, CWD,
PATH, PROCTITLE), and only some of them carry `ses=`.
replay/audit_timeline.py interleaves those events with a session file's.

This is a parser of its own rather than auparse (Debian's python3-audit):
`replay` must work wherever sessrec is installed, including a laptop that
was handed a session file and an audit.log and has neither root nor the
audit packages; and a bad line must be a counted warning, not the end of the
run. What it handles: events grouped by serial (records of different events
may interleave); `node=` prefixes; the ENRICHED part after the 0x1d
separator; hex-encoded values (proctitle, EXECVE arguments, split arguments
`a1[0]`, names, TTY data, ...); the quoted `msg='...'` of user-space records,
whose fields are merged into the record's. Lines it cannot read are skipped
with a warning naming the file and line.

Everything here comes from a file someone else wrote: values are returned as
text and displays must escape control characters.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypedDict

from replay.base import Session
from replay.reader import read_trailer_fast
from replay.terms import parse_instant
from sessrec import linux
from sessrec.errors import SessrecError
from sessrec.format import Header, Trailer

DEFAULT_LOG = "/var/log/audit/audit.log"
# auditd cuts a record at 8970 bytes; the ENRICHED part adds to that.
MAX_LINE = 64 * 1024
# An event is complete once the log has moved this far past it (as auparse's
# end_of_event_timeout), or when this many other events are pending.
EVENT_TIMEOUT_NS = 2_000_000_000
MAX_PENDING = 4096
# Audit times are the syscall's entry time from a coarse clock, printed in
# milliseconds; session events are exact to the nanosecond. Events this close
# to the session's ends still belong to it.
MARGIN_NS = 1_000_000_000
WARN_LINES = 10  # bad lines reported one by one; the rest are counted

GS = "\x1d"  # separates the raw fields from the ENRICHED interpretations

_HEAD = re.compile(
    r"(?:node=(?P<node>\S+) )?type=(?P<type>\S+) "
    r"msg=audit\((?P<sec>\d{1,12})\.(?P<ms>\d{3}):(?P<serial>\d{1,20})\):\s?"
)
_FIELD = re.compile(r"""([^\s=']+)=("[^"]*"|'[^']*'|\S*)""")
_HEX = re.compile(r"(?:[0-9A-F]{2})+")
# Numbers from the log are at most 20 ASCII digits: int() refuses more than
# 4,300 (and str.isdigit() takes "²", which int() refuses too).
_EXECVE_ARG = re.compile(r"a([0-9]{1,9})(?:\[([0-9]{1,9})\])?")
_NUMBER = re.compile(r"[0-9]{1,20}")


def _number(v: str | None) -> int | None:
    return int(v) if v is not None and _NUMBER.fullmatch(v) else None
# Fields whose unquoted values are hex-encoded text (auparse's escaped types).
_HEX_FIELDS = frozenset({
    "acct", "cmd", "comm", "cwd", "data", "dir", "exe", "file", "grp", "key", "name",
    "new", "new_group", "new_user", "ocomm", "old", "path", "proctitle", "root_dir",
    "sw", "vm", "watch",
})

Warn = Callable[[str], None]


@dataclass(frozen=True)
class AuditRecord:
    """One line of the log. fields: the values as text (quotes removed, hex
    decoded); the fields of a user record's msg='...' are merged in, after
    the kernel's own (which win). interpreted: the ENRICHED part."""

    type: str
    fields: Mapping[str, str]
    interpreted: Mapping[str, str]
    raw: str

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass
class AuditEvent:
    """The records that share one `msg=audit(TIME:SERIAL)` stamp."""

    time_ns: int
    serial: int
    node: str | None
    records: list[AuditRecord] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """EXECVE for an execve's event (whose first record is SYSCALL),
        otherwise the first record's type."""
        types = [r.type for r in self.records]
        return "EXECVE" if "EXECVE" in types else types[0]

    def record(self, type_name: str) -> AuditRecord | None:
        for r in self.records:
            if r.type == type_name:
                return r
        return None

    def value(self, name: str) -> str | None:
        """The first value of a field in any of the records."""
        for r in self.records:
            v = r.fields.get(name)
            if v is not None:
                return v
        return None

    @property
    def pid(self) -> int | None:
        return _number(self.value("pid"))

    @property
    def session_id(self) -> int | None:
        return _number(self.value("ses"))

    def argv(self) -> list[str] | None:
        """An EXECVE record's arguments, split ones (a1[0], a1[1]) joined."""
        rec = self.record("EXECVE")
        if rec is None:
            return None
        parts: dict[int, dict[int, str]] = {}
        for k, v in rec.fields.items():
            m = _EXECVE_ARG.fullmatch(k)
            if m:
                parts.setdefault(int(m[1]), {})[int(m[2] or 0)] = v
        return ["".join(p[i] for i in sorted(p)) for _, p in sorted(parts.items())]

    def summary(self) -> str:
        """One line for people (raw text: escape it for a terminal)."""
        kind = self.kind
        pieces: list[str] = [kind]
        if kind == "EXECVE":
            pieces.append(f"pid={self.value('pid') or '?'}")
            argv = self.argv() or []
            pieces.append(" ".join(_quote(a) for a in argv))
        elif kind == "SYSCALL":
            rec = self.records[0]
            name = rec.interpreted.get("SYSCALL") or rec.get("syscall") or "?"
            pieces.append(name)
            for k in ("pid", "success", "exit", "comm", "exe"):
                if rec.get(k) is not None:
                    pieces.append(f"{k}={_quote(rec.fields[k])}")
        elif kind == "TTY" or kind == "USER_TTY":
            pieces.append(f"pid={self.value('pid') or '?'}")
            pieces.append(_quote(self.value("data") or self.value("msg") or ""))
        else:
            rec = self.records[0]
            shown = ("op", "acct", "id", "cmd", "sessrec_session", "file", "exe",
                     "hostname", "addr", "terminal", "auid", "ses", "res")
            for k in shown:
                v = rec.get(k)
                if v is not None and v != "?":
                    pieces.append(f"{k}={_quote(v)}")
        key = self.value("key")
        if key not in (None, "(null)") and kind in ("EXECVE", "SYSCALL"):
            pieces.append(f"key={_quote(key or '')}")
        return " ".join(p for p in pieces if p)

    def as_dict(self) -> dict[str, object]:
        """For JSON: every record's fields (interpretations under 'interpreted')."""
        return {
            "audit_type": self.kind,
            "serial": self.serial,
            "node": self.node,
            "summary": self.summary(),
            "records": [
                {"type": r.type, "fields": dict(r.fields),
                 **({"interpreted": dict(r.interpreted)} if r.interpreted else {})}
                for r in self.records
            ],
        }


def _quote(text: str) -> str:
    return f'"{text}"' if (not text or any(c.isspace() for c in text)) else text


def _decode_hex(value: str, name: str) -> str:
    data = bytes.fromhex(value)
    if name == "proctitle":
        data = data.rstrip(b"\0").replace(b"\0", b" ")
    elif name == "key":
        data = data.replace(b"\x01", b",")  # several keys
    return data.decode("utf-8", "backslashreplace")


def _values(text: str, execve: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    inner: dict[str, str] = {}
    for m in _FIELD.finditer(text):
        name, value = m[1], m[2]
        if value.startswith('"') and len(value) >= 2:
            value = value[1:-1]
        elif value.startswith("'") and len(value) >= 2:
            value = value[1:-1]
            if name == "msg":
                inner = _values(value, False)
        elif (name in _HEX_FIELDS or (execve and _EXECVE_ARG.fullmatch(name))) \
                and _HEX.fullmatch(value):
            value = _decode_hex(value, name)
        out.setdefault(name, value)
    for name, value in inner.items():
        out.setdefault(name, value)
    return out


def parse_line(line: str) -> tuple[str | None, int, int, AuditRecord] | None:
    """(node, time_ns, serial, record) of one log line, or None if the line is
    not an audit record."""
    m = _HEAD.match(line)
    if m is None:
        return None
    body = line[m.end():]
    raw, _, enriched = body.partition(GS)
    typ = m["type"]
    fields = _values(raw, typ == "EXECVE")
    interpreted = _values(enriched, False) if enriched else {}
    time_ns = int(m["sec"]) * 1_000_000_000 + int(m["ms"]) * 1_000_000
    return m["node"], time_ns, int(m["serial"]), AuditRecord(typ, fields, interpreted, line)


def log_files(path: str) -> list[str]:
    """path and its rotated files (path.1, path.2, ...), oldest first, as
    auditd rotates them (path.1 is the newest of the old ones)."""
    directory, base = os.path.split(path)
    rotated: list[tuple[int, str]] = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        names = []
    for name in names:
        n = _number(name[len(base) + 1:]) if name.startswith(base + ".") else None
        if n is not None:
            rotated.append((n, os.path.join(directory, name)))
    return [p for _, p in sorted(rotated, reverse=True)] + [path]


class _Lines:
    """The lines of the log files, with warnings for what cannot be read."""

    def __init__(self, warn: Warn):
        self.warn = warn
        self.bad = 0

    def bad_line(self, where: str, why: str) -> None:
        self.bad += 1
        if self.bad <= WARN_LINES:
            self.warn(f"{where}: {why}; skipped")

    def read(self, paths: Sequence[str], missing_ok: bool) -> Iterator[tuple[str, str]]:
        for path in paths:
            try:
                f = open(path, "rb")
            except FileNotFoundError:
                if not missing_ok:
                    self.warn(f"{path}: no such audit log")
                continue
            except OSError as e:
                self.warn(f"cannot read the audit log {path}: {e.strerror or e}")
                continue
            with f:
                number = 0
                while True:
                    chunk = f.readline(MAX_LINE + 1)
                    if not chunk:
                        break
                    number += 1
                    if len(chunk) > MAX_LINE and not chunk.endswith(b"\n"):
                        while chunk and not chunk.endswith(b"\n"):
                            chunk = f.readline(MAX_LINE + 1)
                        self.bad_line(f"{path}:{number}", f"a line longer than {MAX_LINE} bytes")
                        continue
                    yield f"{path}:{number}", chunk.decode("utf-8", "backslashreplace")

    def finish(self) -> None:
        if self.bad > WARN_LINES:
            self.warn(f"{self.bad - WARN_LINES} more unreadable audit log lines skipped")


def read_events(paths: Sequence[str], *, session_id: int, since_ns: int | None = None,
                until_ns: int | None = None, exclude_pids: Iterable[int] = (),
                warn: Warn = lambda _m: None, missing_ok: bool = False) -> Iterator[AuditEvent]:
    """The events of audit session session_id in the log files paths (oldest
    first; see log_files), within [since_ns, until_ns], in log order (which is
    nearly time order). Events of exclude_pids (the recorder) are left out.
    Unreadable lines and files become warnings; this never raises for them."""
    ses = re.compile(rf"(?<![\w-])ses={session_id}(?![\w])")
    excluded = {str(p) for p in exclude_pids}
    lines = _Lines(warn)
    pending: OrderedDict[tuple[str | None, int, int], list[tuple[str, str]]] = OrderedDict()

    def complete(key: tuple[str | None, int, int],
                 items: list[tuple[str, str]]) -> AuditEvent | None:
        if not any(ses.search(text.partition(GS)[0]) for _, text in items):
            return None
        event = AuditEvent(key[1], key[2], key[0])
        for where, text in items:
            parsed = parse_line(text)
            if parsed is None:  # matched the stamp before; cannot happen
                lines.bad_line(where, "not an audit record")
                continue
            event.records.append(parsed[3])
        if not event.records or event.value("pid") in excluded:
            return None
        return event

    for where, text in lines.read(paths, missing_ok):
        text = text.rstrip("\r\n")
        if not text or text == "----":  # ausearch's separator
            continue
        m = _HEAD.match(text)
        if m is None:
            lines.bad_line(where, "not an audit record")
            continue
        t = int(m["sec"]) * 1_000_000_000 + int(m["ms"]) * 1_000_000
        if (since_ns is not None and t < since_ns) or (until_ns is not None and t > until_ns):
            continue
        key = (m["node"], t, int(m["serial"]))
        items = pending.get(key)
        if items is None:
            pending[key] = items = []
        items.append((where, text))
        while pending:
            first = next(iter(pending))
            if first[1] >= t - EVENT_TIMEOUT_NS and len(pending) <= MAX_PENDING:
                break
            event = complete(first, pending.pop(first))
            if event is not None:
                yield event
    for key, items in pending.items():
        event = complete(key, items)
        if event is not None:
            yield event
    lines.finish()


def session_audit_events(header: Header, trailer: Trailer | None,
                         last_event_ns: int | None, log_path: str | None = None, *,
                         warn: Warn = lambda _m: None) -> Iterator[AuditEvent]:
    """The audit events of a session file's audit session during the
    recording (MARGIN_NS either side), from log_path (default: auditd's log)
    and its rotated files, without the recorder's own. last_event_ns: the
    wall time of the last event, the end when the file has no trailer."""
    ses = header["audit_session_id"]
    if ses is None:
        warn("the session has no audit session id (its login uid was unset): "
             "no audit records to show")
        return iter(())
    start = header["clock"]["wall_ns"]
    end = parse_instant(trailer["ended_at"]) if trailer is not None else None
    if end is None:
        end = last_event_ns if last_event_ns is not None else start
    recorder = header["recorder"]["pid"]
    path = log_path or DEFAULT_LOG
    return read_events(log_files(path), session_id=ses, since_ns=start - MARGIN_NS,
                       until_ns=end + MARGIN_NS,
                       exclude_pids=(recorder,), warn=warn)


def audit_events_of(session: Session, log_path: str | None = None, *,
                    warn: Warn = lambda _m: None) -> Iterator[AuditEvent]:
    """session_audit_events() for an open session file. A file without a
    trailer (the recorder was killed) is read once more to find its end."""
    header = session.header
    try:
        trailer = read_trailer_fast(session.path)
    except SessrecError:
        trailer = None
    last = None
    if trailer is None:
        last_ts = None
        for ev in session.records():
            last_ts = ev.ts
        if last_ts is not None:
            last = header["clock"]["wall_ns"] + last_ts
    return session_audit_events(header, trailer, last, log_path, warn=warn)


# --- the header's audit keys, for `sessrec info` ---------------------------------



class AuditInfo(TypedDict):
    """The "audit" value of `sessrec info --json`."""

    status: dict[str, int] | None
    auditd_running: bool | None
    enabled: int | None
    record_type: int
    sender_session_id: int | None
    start_record: bool
    end_record: bool | None
    reason: str | None


def audit_info(header: Header, trailer: Trailer | None) -> AuditInfo:
    """The "audit" value of `sessrec info --json`, from the header's and the
    trailer's audit maps (format 1.1 and later)."""
    h = header["audit"]
    t = None if trailer is None else trailer.get("audit")
    status = h["status"]
    reasons = [r for r in (h["reason"], None if t is None else t["reason"]) if r]
    return {
        "status": status,
        "auditd_running": None if status is None else bool(status.get("pid")),
        "enabled": None if status is None else status.get("enabled"),
        "record_type": h["record_type"],
        "sender_session_id": h["sender_session_id"],
        "start_record": h["start_record"],
        "end_record": None if t is None else t["end_record"],
        "reason": "; ".join(dict.fromkeys(reasons)) or None,
    }


def describe_audit(info: AuditInfo | None) -> str:
    """audit_info() in one line for people."""
    if info is None:
        return "not recorded (format 1.0)"
    status = info["status"]
    if status is None:
        parts = ["status unknown"]
    else:
        state = {0: "disabled", 1: "enabled", 2: "enabled and locked"}.get(
            status.get("enabled", -1), "unknown")
        pid = status.get("pid") or 0
        parts = [f"auditing {state}", f"auditd pid {pid}" if pid else "auditd not running"]
    written = [w for w, ok in (("start", info["start_record"]), ("end", info["end_record"]))
               if ok]
    name = linux.AUDIT_RECORD_NAMES.get(info["record_type"], str(info["record_type"]))
    if written:
        parts.append(f"{' and '.join(written)} record{'s' * (len(written) > 1)} written "
                     f"({name})")
    else:
        parts.append("no record written")
    reason = info["reason"]
    if reason and not (reason == "auditd is not running" and "auditd not running" in parts):
        parts.append(reason)
    return "; ".join(parts)
