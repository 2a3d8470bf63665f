"""The session's place in the Linux audit system (docs/AUDIT.md).

- ids(pid): the login uid and audit session id of a process, from /proc.
- AuditSession: at session start, queries the kernel's audit status
  (AUDIT_GET) and emits a start record; at session end, an end record with
  the event and lost counts. Both go through pyroute2's netlink socket
  (NETLINK_AUDIT) as AUDIT_TRUSTED_APP (1121) records.

The kernel stamps a user record with the *sender's* pid, auid and ses. The
records are sent by a short-lived grandchild of the recorder, which inherits
the recorder's audit session; for `sessrec record` that is also the command's
(the command is the recorder's child), so `ausearch --session N` finds them.

Nothing here may stop or stall a recording. The kernel handles a netlink
message in the sender's context, and when auditd's backlog is over its limit
it puts the sender to sleep, uninterruptibly, for up to backlog_wait_time
(60 s by default). So the grandchild does the talking, the recorder waits
for its answer at most `timeout` seconds, and a grandchild that is still
stuck is left behind (it exits on its own, or dies of SIGPIPE). Every
failure (no audit support, no permission, auditd stopped or disabled, a full
backlog, no answer) becomes a reason string in the header or the trailer.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

# Imported here, not in the sender: the sender is a fresh fork, and the
# import (about 0.15 s) would delay every record.
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, nlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nlsocket import NetlinkSocket

from sessrec import __version__, linux
from sessrec import format as fmt
from sessrec.event import TYPE_NAMES

NETLINK_AUDIT = 9
AUDIT_GET = 1000  # linux/audit.h: get the status
# A user-space record type (1100-1199 are user messages). TRUSTED_APP is
# "trusted application message, free-style text": ausearch parses it like the
# other user records (pid, uid, auid, ses, exe, terminal, res), so --session,
# -ua, -x and --success work, while aureport and aulast give it no meaning of
# their own, unlike USER_START/USER_END (PAM sessions) or USER_CMD (sudo).
# Types 2100-2999 would have no name at all: "UNKNOWN[2100]".
AUDIT_TRUSTED_APP = linux.AUDIT_TRUSTED_APP
RECORD_TYPE = AUDIT_TRUSTED_APP

TIMEOUT = 1.0  # seconds the recorder waits for the sender's answer
KernelError = (OSError, NetlinkError)

# struct audit_status (linux/audit.h), all u32, as far as sessrec reads it;
# the kernel's may be longer. These, AUDIT_GET, AUDIT_TRUSTED_APP and
# NETLINK_AUDIT are checked against the compiled header by
# tests/kernel/test_audit.py::test_audit_abi_matches_linux_audit_h.
STATUS_FIELDS = (
    "mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost", "backlog",
    "feature_bitmap", "backlog_wait_time",
)


def ids(pid: int) -> tuple[int | None, int | None]:
    """(login uid, audit session id) of a process; unset (4294967295) or
    unreadable is None."""
    out: list[int | None] = []
    for name in ("loginuid", "sessionid"):
        try:
            out.append(fmt.optional_id(int(Path(f"/proc/{pid}/{name}").read_text())))
        except (OSError, ValueError):
            out.append(None)
    return out[0], out[1]


class AuditStatus(NamedTuple):
    """What the header keeps of the kernel's audit status."""

    enabled: int  # 0 off, 1 on, 2 on and locked
    failure: int
    pid: int  # auditd's pid; 0 when no auditd is registered
    rate_limit: int
    backlog_limit: int
    lost: int
    backlog: int
    backlog_wait_time: int

    def as_dict(self) -> dict[str, int]:
        return dict(self._asdict())


class _audit_status(nlmsg):  # type: ignore[misc]
    fields = tuple((name, "I") for name in STATUS_FIELDS)


class _audit_text(nlmsg):  # type: ignore[misc]
    """A user record: its text."""

    fields = (("text", "s"),)


class AuditNetlink(Protocol):
    """What AuditSession needs of the kernel; tests substitute fakes.
    Methods raise OSError or pyroute2's NetlinkError (not an OSError)."""

    def status(self) -> AuditStatus: ...

    def send(self, msg_type: int, text: str) -> None: ...

    def close(self) -> None: ...


class PyrouteAudit:
    """NETLINK_AUDIT through pyroute2."""

    def __init__(self) -> None:
        self._sock: Any = NetlinkSocket(family=NETLINK_AUDIT)
        self._sock.marshal.msg_map[AUDIT_GET] = _audit_status

    def status(self) -> AuditStatus:
        # No NLM_F_ACK: the kernel sends the status from a kernel thread, so an
        # ACK could overtake it. An error is answered even without the flag.
        replies = list(self._sock.nlm_request(
            _audit_status(), msg_type=AUDIT_GET, msg_flags=NLM_F_REQUEST))
        for reply in replies:
            if reply["header"]["type"] == AUDIT_GET:
                return AuditStatus(*(int(reply.get(k) or 0) for k in AuditStatus._fields))
        raise OSError(errno.EPROTO, "no audit status in the kernel's answer")

    def send(self, msg_type: int, text: str) -> None:
        msg = _audit_text()
        # The kernel takes the last byte for a terminating NUL and drops it:
        # without one, the record would lose its last character.
        msg["text"] = text + "\0"
        for _ in self._sock.nlm_request(msg, msg_type=msg_type,
                                        msg_flags=NLM_F_REQUEST | NLM_F_ACK):
            pass  # the ACK; an error ACK raises NetlinkError

    def close(self) -> None:
        self._sock.close()


def describe_error(e: BaseException) -> str:
    """'EPERM (Operation not permitted)', with a hint where one helps."""
    code = getattr(e, "code", None) or getattr(e, "errno", None)
    if not isinstance(code, int):
        return str(e) or type(e).__name__
    text = f"{errno.errorcode.get(code, f'errno {code}')} ({os.strerror(code)})"
    if code == errno.EPERM:
        text += ": needs CAP_AUDIT_WRITE (records) and CAP_AUDIT_CONTROL (status)"
    elif code == errno.EPROTONOSUPPORT:
        text += ": the kernel has no audit support"
    elif code == errno.ECONNREFUSED:
        text += ": audit netlink is refused outside the initial namespaces"
    return text


def pid_alive(pid: int) -> bool:
    """pid names a live process (not a zombie) in this pid namespace."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # it exists; we may just not read it
    return stat[stat.rindex(")") + 2] not in "ZX"


def skip_reason(status: AuditStatus, alive: Callable[[int], bool] = pid_alive) -> str | None:
    """Why no record should be sent with this status, or None."""
    if status.enabled == 0:
        return "auditing is disabled in the kernel (auditctl -e 0)"
    if status.pid == 0:
        return "auditd is not running"
    if not alive(status.pid):
        # The kernel forgets a killed auditd only when a delivery to it
        # fails; this record would be that delivery, and would be dropped.
        return (f"auditd is not running (pid {status.pid} is still registered with the "
                "kernel, but has exited)")
    if status.backlog_limit and status.backlog >= status.backlog_limit:
        return (f"auditd's backlog is full ({status.backlog} of {status.backlog_limit}); "
                "not sending, so as not to block")
    return None


def exchange(text: str, connect: Callable[[], AuditNetlink]) -> dict[str, Any]:
    """In the sending process: query the status, then send text unless the
    status says not to. Returns {"status": map or None, "sent": bool,
    "reason": str or None}; kernel errors become the reason."""
    try:
        link = connect()
    except KernelError as e:
        return {"status": None, "sent": False,
                "reason": f"cannot open the audit netlink socket: {describe_error(e)}"}
    try:
        status: AuditStatus | None = None
        note = None
        try:
            status = link.status()
        except KernelError as e:
            # Sending may still work (CAP_AUDIT_WRITE without CAP_AUDIT_CONTROL).
            note = f"audit status unknown: {describe_error(e)}"
        status_map = None if status is None else status.as_dict()
        if status is not None:
            reason = skip_reason(status)
            if reason is not None:
                return {"status": status_map, "sent": False, "reason": reason}
        try:
            link.send(RECORD_TYPE, text)
        except KernelError as e:
            refused = f"the kernel refused the audit record: {describe_error(e)}"
            return {"status": status_map, "sent": False,
                    "reason": f"{note}; {refused}" if note else refused}
        return {"status": status_map, "sent": True, "reason": note}
    finally:
        try:
            link.close()
        except KernelError:
            pass


def run_detached(work: Callable[[], dict[str, Any]], timeout: float) -> dict[str, Any]:
    """work() in a detached grandchild; its answer, or an answer saying why
    there is none after timeout seconds. The grandchild inherits this
    process's audit session (the kernel stamps its records as ours) and its
    cgroup (the session's BPF programs do not see it)."""
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        return {"sent": False, "status": None, "reason": f"cannot fork: {describe_error(e)}"}
    if pid == 0:
        try:
            os.close(r)
            if os.fork() == 0:
                # Ctrl-C must not cut the record short; the recorder's SIGTERM
                # handler (which forwards to the command) does not belong here.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                try:
                    answer = work()
                except BaseException as e:  # report whatever it is
                    answer = {"sent": False, "status": None,
                              "reason": f"audit sender failed: {describe_error(e)}"}
                data = json.dumps(answer).encode()
                while data:
                    data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)  # the middle child exits at once
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                return {"sent": False, "status": None,
                        "reason": f"no answer from audit netlink within {timeout:g} s "
                        "(auditd's backlog full?); the record may still be written"}
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    try:
        result: object = json.loads(b"".join(chunks))
    except ValueError:
        result = None
    if not isinstance(result, dict):
        return {"sent": False, "status": None, "reason": "the audit sender gave no answer"}
    return result


def encode_value(value: str) -> str:
    """A value as audit writes untrusted strings: "quoted", or hex (upper
    case, unquoted) if it holds a quote, a space, a control or a non-ASCII
    character."""
    data = value.encode("utf-8", "surrogateescape")
    if any(b == 0x22 or b < 0x21 or b > 0x7E for b in data):
        return data.hex().upper()
    return f'"{value}"'


def _terminal() -> str:
    for fd in (0, 1, 2):
        try:
            return os.ttyname(fd).removeprefix("/dev/") or "?"
        except OSError:
            continue
    return "?"


def _exe() -> str:
    try:
        return encode_value(os.readlink("/proc/self/exe"))
    except OSError:
        return "?"


def record_text(op: str, session_id: str, path: str, fields: Mapping[str, object],
                success: bool = True) -> str:
    """The text of a start or end record, laid out like libaudit's
    audit_log_user_message: op first, res last (ausearch reads res= up to
    the closing quote the kernel adds)."""
    parts = [f"op={op}", f"sessrec_session={session_id}", f"file={encode_value(path)}"]
    parts += [f"{k}={v}" for k, v in fields.items()]
    parts += [f"exe={_exe()}", "hostname=?", "addr=?", f"terminal={_terminal()}",
              f"res={'success' if success else 'failed'}"]
    return " ".join(parts)


class Sender:
    """A long-lived sending process, for the daemon: forked once at start-up
    (while the daemon is small), it sends each record it is given and answers
    with exchange()'s answer. A fork per session, as run_detached does, costs
    the daemon tens of milliseconds once BCC has grown it. Records are sent
    in order; one that gets no answer within the timeout is reported as such,
    and its late answer is skipped."""

    def __init__(self, connect: Callable[[], AuditNetlink] = PyrouteAudit) -> None:
        import socket

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.pid = os.fork()
        if self.pid == 0:
            code = 0
            try:
                ours.close()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                with theirs.makefile("rwb") as f:
                    for line in f:
                        req = json.loads(line)
                        try:
                            answer = exchange(req["text"], connect)
                        except Exception as e:  # report whatever it is
                            answer = {"sent": False, "status": None,
                                      "reason": f"audit sender failed: {describe_error(e)}"}
                        f.write(json.dumps({"n": req["n"], **answer}).encode() + b"\n")
                        f.flush()
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self._sock = ours
        self._buf = b""
        self._n = 0

    def send(self, text: str, timeout: float) -> dict[str, Any]:
        self._n += 1
        n = self._n
        deadline = time.monotonic() + timeout
        try:
            self._sock.sendall(json.dumps({"n": n, "text": text}).encode() + b"\n")
            while True:
                if b"\n" not in self._buf:
                    left = deadline - time.monotonic()
                    if left <= 0 or not select.select([self._sock], [], [], left)[0]:
                        return {"sent": False, "status": None,
                                "reason": f"no answer from audit netlink within {timeout:g} s "
                                "(auditd's backlog full?); the record may still be written"}
                    data = self._sock.recv(65536)
                    if not data:
                        raise OSError("the audit sender exited")
                    self._buf += data
                    continue
                line, _, self._buf = self._buf.partition(b"\n")
                answer = json.loads(line)
                if answer.get("n") == n:
                    answer.pop("n")
                    return dict(answer)
        except (OSError, ValueError) as e:
            return {"sent": False, "status": None,
                    "reason": f"audit sender failed: {describe_error(e)}"}

    def close(self) -> None:
        self._sock.close()
        os.waitpid(self.pid, 0)


class AuditSession:
    """The audit side of one recorded session: start() at its start, end()
    at its end, abort() in a finally (a failed end record if end() never
    ran). header and trailer are the "audit" maps of the session file."""

    def __init__(self, session_id: str, path: str, leader_pid: int, *,
                 connect: Callable[[], AuditNetlink] = PyrouteAudit,
                 timeout: float = TIMEOUT, detach: bool = True,
                 sender: Sender | None = None):
        self.session_id = session_id
        self.path = os.path.abspath(path)
        self.leader_pid = leader_pid
        self.connect = connect
        self.timeout = timeout
        self.detach = detach
        self.sender = sender
        self.header: dict[str, Any] = {}
        self.trailer: dict[str, Any] | None = None

    def _send(self, text: str) -> dict[str, Any]:
        if self.sender is not None:
            return self.sender.send(text, self.timeout)

        def work() -> dict[str, Any]:
            return exchange(text, self.connect)

        return run_detached(work, self.timeout) if self.detach else work()

    def start(self) -> dict[str, Any]:
        """Sends the start record; returns the header's "audit" map."""
        _, sender_session = ids(os.getpid())
        answer = self._send(record_text("sessrec-start", self.session_id, self.path, {
            "leader_pid": self.leader_pid,
            "recorder_pid": os.getpid(),
            "recorder_version": __version__,
        }))
        self.header = {
            "record_type": RECORD_TYPE,
            "status": _status_map(answer.get("status")),
            "sender_session_id": sender_session,
            "start_record": answer.get("sent") is True,
            "reason": _reason(answer),
        }
        return self.header

    def end(self, counts: Mapping[str, int], lost: Mapping[str, int], end_reason: str,
            exit_status: int | None, success: bool = True) -> dict[str, Any]:
        """Sends the end record; returns the trailer's "audit" map."""
        names = list(TYPE_NAMES.values())
        fields: dict[str, object] = {"events": sum(counts.values())}
        fields.update((f"events_{n}", counts.get(n, 0)) for n in names)
        fields["lost"] = sum(lost.values())
        fields.update((f"lost_{n}", lost.get(n, 0)) for n in names)
        fields["end_reason"] = end_reason
        fields["exit_status"] = "?" if exit_status is None else exit_status
        answer = self._send(
            record_text("sessrec-end", self.session_id, self.path, fields, success))
        self.trailer = {"end_record": answer.get("sent") is True, "reason": _reason(answer)}
        return self.trailer

    def note(self, op: str, fields: Mapping[str, object]) -> dict[str, Any]:
        """Sends one record of this session with op and fields, from this
        process's audit session (`sessrec pam` runs in the login's own);
        returns {"sent": bool, "reason": str or None}."""
        answer = self._send(record_text(op, self.session_id, self.path, fields))
        return {"sent": answer.get("sent") is True, "reason": _reason(answer)}

    def abort(self) -> None:
        """After an error: a failed end record, if a start record went out."""
        if self.trailer is None and self.header.get("start_record"):
            self.end({}, {}, "error", None, success=False)


def _status_map(value: object) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    return {k: v for k, v in value.items() if isinstance(k, str) and type(v) is int}


def _reason(answer: Mapping[str, Any]) -> str | None:
    reason = answer.get("reason")
    return reason if isinstance(reason, str) else None
