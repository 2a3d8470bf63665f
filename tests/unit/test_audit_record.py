"""recorder/audit.py without root: the netlink side is a fake, so every
failure path (no audit support, refused, auditd stopped or disabled, a full
backlog, a sender that never answers) is exercised here. The real kernel and
auditd are in tests/kernel/test_audit.py."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.exceptions import NetlinkError
from srec_util import HEADER, TRAILER, read_all

from recorder import audit
from recorder.writer import SessionWriter
from sessrec import format as fmt
from sessrec.errors import FormatError

UUID = "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b"
# auditd's pid must name a live process: this one will do.
RUNNING = audit.AuditStatus(enabled=1, failure=1, pid=os.getpid(), rate_limit=0, backlog_limit=64,
                            lost=0, backlog=0, backlog_wait_time=15000)


class FakeAudit:
    """An AuditNetlink whose answers the test decides."""

    def __init__(self, status: audit.AuditStatus | Exception = RUNNING,
                 send_error: Exception | None = None):
        self._status = status
        self.send_error = send_error
        self.sent: list[tuple[int, str]] = []
        self.closed = False

    def status(self) -> audit.AuditStatus:
        if isinstance(self._status, Exception):
            raise self._status
        return self._status

    def send(self, msg_type: int, text: str) -> None:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append((msg_type, text))

    def close(self) -> None:
        self.closed = True


def test_ids_of_this_process_match_proc() -> None:
    login_uid, session = audit.ids(os.getpid())
    for value, name in ((login_uid, "loginuid"), (session, "sessionid")):
        raw = int(Path(f"/proc/self/{name}").read_text())
        assert value == (None if raw == fmt.UNSET_ID else raw)


def test_ids_of_a_missing_process_are_none() -> None:
    assert audit.ids(2**22 + 12345) == (None, None)


@pytest.mark.parametrize("change, words", [
    ({"enabled": 0}, "disabled"),
    ({"pid": 0}, "auditd is not running"),
    ({"backlog": 64}, "backlog is full (64 of 64)"),
])
def test_status_that_forbids_sending(change: dict[str, int], words: str) -> None:
    fake = FakeAudit(RUNNING._replace(**change))
    answer = audit.exchange("op=x res=success", lambda: fake)
    assert answer["sent"] is False and words in answer["reason"]
    assert answer["status"] == RUNNING._replace(**change).as_dict()
    assert fake.sent == [] and fake.closed


def test_a_killed_auditd_still_registered_gets_no_record() -> None:
    """After SIGKILL the kernel keeps auditd's pid until a delivery fails;
    a record sent then would be dropped. A zombie, then a reaped child."""
    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, unreaped: a zombie
    assert Path(f"/proc/{child.pid}").exists()

    def check() -> None:
        fake = FakeAudit(RUNNING._replace(pid=child.pid))
        answer = audit.exchange("op=x res=success", lambda: fake)
        assert answer["sent"] is False and fake.sent == []
        assert answer["reason"] == (f"auditd is not running (pid {child.pid} is still "
                                    "registered with the kernel, but has exited)")

    check()
    child.wait()
    check()


def test_running_auditd_gets_the_record() -> None:
    fake = FakeAudit()
    answer = audit.exchange("op=x res=success", lambda: fake)
    assert answer == {"status": RUNNING.as_dict(), "sent": True, "reason": None}
    assert fake.sent == [(audit.AUDIT_TRUSTED_APP, "op=x res=success")]


def test_locked_audit_still_takes_user_records() -> None:
    fake = FakeAudit(RUNNING._replace(enabled=2))
    assert audit.exchange("op=x", lambda: fake)["sent"] is True


def test_no_audit_support() -> None:
    def connect() -> audit.AuditNetlink:
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    answer = audit.exchange("op=x", connect)
    assert answer["sent"] is False and answer["status"] is None
    assert "EPROTONOSUPPORT" in answer["reason"] and "no audit support" in answer["reason"]


def test_record_refused_with_eperm() -> None:
    fake = FakeAudit(send_error=NetlinkError(errno.EPERM, "Operation not permitted"))
    answer = audit.exchange("op=x", lambda: fake)
    assert answer["sent"] is False and answer["status"] == RUNNING.as_dict()
    assert "refused" in answer["reason"] and "EPERM" in answer["reason"]
    assert "CAP_AUDIT_WRITE" in answer["reason"] and fake.closed


def test_status_refused_but_record_accepted() -> None:
    """CAP_AUDIT_WRITE without CAP_AUDIT_CONTROL: the record goes out, and the
    header says the status is unknown."""
    fake = FakeAudit(status=NetlinkError(errno.EPERM))
    answer = audit.exchange("op=x", lambda: fake)
    assert answer["sent"] is True and answer["status"] is None
    assert answer["reason"].startswith("audit status unknown: EPERM")


def test_both_refused() -> None:
    fake = FakeAudit(status=NetlinkError(errno.EPERM), send_error=NetlinkError(errno.EPERM))
    answer = audit.exchange("op=x", lambda: fake)
    assert answer["sent"] is False
    assert "status unknown" in answer["reason"] and "refused" in answer["reason"]


def test_detached_sender_answers() -> None:
    answer = audit.run_detached(lambda: {"sent": True, "status": None, "reason": "pid "
                                         + str(os.getpid())}, timeout=5)
    assert answer["sent"] is True
    assert answer["reason"] != f"pid {os.getpid()}"  # it ran in another process


def test_detached_sender_that_hangs_is_left_behind() -> None:
    """A kernel that blocks the sender (a full backlog) costs the recorder
    the timeout, not the block."""

    def stuck() -> dict[str, Any]:
        time.sleep(3)
        return {"sent": True}

    t0 = time.monotonic()
    answer = audit.run_detached(stuck, timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert answer["sent"] is False and "no answer" in answer["reason"]


def test_detached_sender_that_crashes() -> None:
    def boom() -> dict[str, Any]:
        raise RuntimeError("boom")

    answer = audit.run_detached(boom, timeout=5)
    assert answer["sent"] is False and "boom" in answer["reason"]


def test_value_encoding() -> None:
    assert audit.encode_value("/var/log/s.srec") == '"/var/log/s.srec"'
    assert audit.encode_value("/tmp/a b") == "2F746D702F612062"
    assert audit.encode_value('a"b') == "612262"
    assert audit.encode_value("é") == "C3A9"


def _session(fake: FakeAudit) -> audit.AuditSession:
    return audit.AuditSession(UUID, "/tmp/my session.srec", 1000, connect=lambda: fake,
                              detach=False)


def test_start_and_end_records() -> None:
    fake = FakeAudit()
    s = _session(fake)
    header = s.start()
    assert header["start_record"] is True and header["reason"] is None
    assert header["record_type"] == 1121 and header["status"] == RUNNING.as_dict()
    assert header["sender_session_id"] == audit.ids(os.getpid())[1]
    trailer = s.end({"exec": 3, "open": 5}, {"open": 2}, "cgroup-empty", 0)
    assert trailer == {"end_record": True, "reason": None}
    s.abort()  # the end was reached: nothing more is sent
    (t1, start), (t2, end) = fake.sent
    assert t1 == t2 == audit.AUDIT_TRUSTED_APP
    assert start.startswith(f"op=sessrec-start sessrec_session={UUID} "
                            f"file={audit.encode_value('/tmp/my session.srec')} leader_pid=1000 ")
    assert f"recorder_pid={os.getpid()} " in start
    assert start.endswith(" res=success")
    assert " events=8 events_fork=0 events_exec=3 " in end and " events_open=5 " in end
    assert " lost=2 " in end and " lost_open=2 " in end
    assert " end_reason=cgroup-empty exit_status=0 " in end and end.endswith(" res=success")


def test_abort_sends_a_failed_end_record() -> None:
    fake = FakeAudit()
    s = _session(fake)
    s.start()
    s.abort()
    assert fake.sent[-1][1].startswith("op=sessrec-end")
    assert " end_reason=error exit_status=? " in fake.sent[-1][1]
    assert fake.sent[-1][1].endswith(" res=failed")


def test_abort_after_no_start_record_sends_nothing() -> None:
    fake = FakeAudit(RUNNING._replace(pid=0))
    s = _session(fake)
    assert s.start()["start_record"] is False
    s.abort()
    assert fake.sent == []


def test_the_audit_maps_are_valid_session_file_keys(tmp_path: Path) -> None:
    fake = FakeAudit(RUNNING._replace(enabled=0))
    s = _session(fake)
    header = {**HEADER, "audit": s.start()}
    trailer = {**TRAILER, "audit": s.end({}, {}, "cgroup-empty", None)}
    path = tmp_path / "a.srec"
    w = SessionWriter(path, header)
    w.close(trailer)
    _, session = read_all(path)
    assert session.header["audit"]["reason"].startswith("auditing is disabled")
    assert session.trailer is not None and session.trailer["audit"]["end_record"] is False


@pytest.mark.parametrize("bad", [
    {"start_record": 1},
    {"status": {"pid": "1"}},
    {"record_type": None},
])
def test_a_malformed_audit_map_is_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    good = {"record_type": 1121, "status": None, "sender_session_id": None,
            "start_record": False, "reason": "auditd is not running"}
    with pytest.raises(FormatError, match="audit"):
        fmt.validate_header({"k": "header", "format": [1, 1], **HEADER,
                             "audit": {**good, **bad}})
    fmt.validate_header({"k": "header", "format": [1, 1], **HEADER, "audit": good})
    fmt.validate_header({"k": "header", "format": [1, 0], **HEADER})  # 1.0: no audit key
