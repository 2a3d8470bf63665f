"""replay/auditlog.py: auditd's log read, filtered by audit session and
merged into a session's timeline, on hand-written logs in the formats auditd
3.0 writes (RAW and ENRICHED), with the damage a log can have."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from srec_util import HEADER, ev, write_session

from replay import audit_timeline, auditlog
from replay.auditlog import AuditEvent, AuditRecord
from sessrec.cli import main

GS = "\x1d"
T0 = 1795260400  # seconds of the first event below


def stamp(ms: int, serial: int) -> str:
    return f"msg=audit({T0 + ms // 1000}.{ms % 1000:03d}:{serial})"


LOGIN = (f"type=USER_LOGIN {stamp(-1000, 490)}: pid=90 uid=0 auid=54321 ses=7 "
         "msg='op=login id=54321 exe=\"/usr/sbin/sshd\" hostname=10.0.0.1 addr=10.0.0.1 "
         f"terminal=ssh res=success'{GS}UID=\"root\" AUID=\"unknown(54321)\"")
EXEC = [
    f"type=SYSCALL {stamp(119, 500)}: arch=c000003e syscall=59 success=yes exit=0 a0=55d "
    "a1=55e a2=55f a3=0 items=2 ppid=100 pid=101 auid=54321 uid=0 gid=0 euid=0 suid=0 "
    "fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=7 comm=\"echo\" exe=\"/usr/bin/echo\" "
    f"key=\"sessrec-test\"{GS}ARCH=x86_64 SYSCALL=execve AUID=\"unknown(54321)\" UID=\"root\"",
    f"type=EXECVE {stamp(119, 500)}: argc=3 a0=\"echo\" a1=68656C6C6F20776F726C64 a2_len=10 "
    "a2[0]=6162636465 a2[1]=6667686970",
    # a record of another event (another session) in the middle of this one
    f"type=SYSCALL {stamp(120, 501)}: arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 "
    "a2=3 a3=0 items=2 ppid=1 pid=2 auid=1000 uid=1000 gid=0 euid=0 suid=0 fsuid=0 egid=0 "
    "sgid=0 fsgid=0 tty=(none) ses=70 comm=\"ls\" exe=\"/usr/bin/ls\" key=(null)",
    f"type=CWD {stamp(119, 500)}: cwd=\"/tmp\"",
    f"type=PATH {stamp(119, 500)}: item=0 name=\"/usr/bin/echo\" inode=1 dev=fe:01 "
    "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 "
    "cap_fver=0 cap_frootid=0",
    f"type=PROCTITLE {stamp(119, 500)}: proctitle=6563686F0068656C6C6F20776F726C64",
]
TTY = (f"type=TTY {stamp(1000, 510)}: tty pid=101 uid=0 auid=54321 ses=7 major=136 minor=0 "
       "comm=\"bash\" data=6C730D")
NEW_LOGIN = (f"type=LOGIN {stamp(1500, 520)}: pid=1 uid=0 old-auid=54321 auid=1000 "
             "tty=(none) old-ses=7 ses=8 res=1")
SUDO = (f"node=host2 type=USER_CMD {stamp(2000, 530)}: pid=5 uid=1000 auid=54321 ses=7 "
        "msg='cwd=\"/root\" cmd=6C73202D6C terminal=pts/0 res=success'")
OTHER_SES = (f"type=USER_END {stamp(2100, 531)}: pid=6 uid=0 auid=54321 ses=77 "
             "msg='op=PAM:session_close acct=\"x\" exe=\"/usr/sbin/sshd\" res=success'")
RECORDER = (f"type=SYSCALL {stamp(2200, 532)}: arch=c000003e syscall=321 success=yes exit=3 "
            "a0=5 a1=0 a2=74 a3=0 items=0 ppid=1 pid=999 auid=54321 uid=0 ses=7 comm=\"python\" "
            "exe=\"/usr/bin/python3\" key=(null)")


def write_logs(tmp_path: Path, current: list[str], old: list[str] | None = None) -> Path:
    log = tmp_path / "audit.log"
    log.write_text("".join(line + "\n" for line in current))
    if old is not None:
        (tmp_path / "audit.log.1").write_text("".join(line + "\n" for line in old))
    return log


def read(log: Path, **kw: Any) -> tuple[list[AuditEvent], list[str]]:
    warnings: list[str] = []
    events = list(auditlog.read_events(auditlog.log_files(str(log)), session_id=7,
                                       warn=warnings.append, **kw))
    return events, warnings


def test_the_events_of_one_session_with_all_their_records(tmp_path: Path) -> None:
    log = write_logs(tmp_path, [*EXEC, TTY, NEW_LOGIN, SUDO, OTHER_SES], old=[LOGIN])
    events, warnings = read(log)
    assert warnings == []
    assert [e.kind for e in events] == ["USER_LOGIN", "EXECVE", "TTY", "USER_CMD"]
    login, execve, tty, sudo = events

    assert login.time_ns == (T0 - 1) * 10**9 and login.serial == 490
    assert login.value("op") == "login" and login.value("exe") == "/usr/sbin/sshd"
    assert login.value("res") == "success" and login.session_id == 7
    assert login.records[0].interpreted == {"UID": "root", "AUID": "unknown(54321)"}

    assert [r.type for r in execve.records] == ["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE"]
    assert execve.time_ns == T0 * 10**9 + 119_000_000 and execve.pid == 101
    assert execve.argv() == ["echo", "hello world", "abcdefghip"]
    assert execve.value("proctitle") == "echo hello world"
    assert execve.value("cwd") == "/tmp" and execve.value("name") == "/usr/bin/echo"
    assert execve.value("key") == "sessrec-test"
    assert execve.records[0].interpreted["SYSCALL"] == "execve"
    assert execve.value("a0") == "55d"  # SYSCALL's registers stay numbers
    assert execve.summary() == 'EXECVE pid=101 echo "hello world" abcdefghip key=sessrec-test'

    assert tty.value("data") == "ls\r" and tty.pid == 101
    assert sudo.node == "host2" and sudo.value("cmd") == "ls -l"
    assert sudo.value("cwd") == "/root" and sudo.value("terminal") == "pts/0"


def test_time_window_and_excluded_pids(tmp_path: Path) -> None:
    log = write_logs(tmp_path, [*EXEC, TTY, SUDO, RECORDER], old=[LOGIN])
    since = T0 * 10**9
    events, _ = read(log, since_ns=since, until_ns=since + 1_500_000_000)
    assert [e.kind for e in events] == ["EXECVE", "TTY"]
    events, _ = read(log, exclude_pids=(999,))
    assert "SYSCALL" not in [e.kind for e in events]
    events, _ = read(log)
    assert events[-1].kind == "SYSCALL" and events[-1].pid == 999


def test_bad_lines_are_warned_and_skipped(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(line + b"\n" for line in [
        LOGIN.encode(),
        b"garbage that is not a record",
        b"type=SYSCALL msg=audit(12:34): pid=1 ses=7",  # no milliseconds
        b"x" * (auditlog.MAX_LINE + 10),
        b"",
        b"----",
        "type=TTY msg=audit(1795260401.000:600): tty pid=1 ses=7 comm=\"b\xe9\" data=41".encode(
            "latin-1"),
        EXEC[0].encode()[:EXEC[0].index(" comm=")],  # cut short: still a record
        TTY.encode(),
    ]))
    events, warnings = read(log)
    assert [e.serial for e in events] == [490, 600, 500, 510]
    assert events[1].value("comm") == "b\\xe9"
    assert warnings == [
        f"{log}:2: not an audit record; skipped",
        f"{log}:3: not an audit record; skipped",
        f"{log}:4: a line longer than {auditlog.MAX_LINE} bytes; skipped",
    ]


def test_many_bad_lines_are_counted(tmp_path: Path) -> None:
    log = write_logs(tmp_path, ["nonsense"] * (auditlog.WARN_LINES + 5) + [TTY])
    events, warnings = read(log)
    assert [e.kind for e in events] == ["TTY"]
    assert len(warnings) == auditlog.WARN_LINES + 1
    assert warnings[-1] == "5 more unreadable audit log lines skipped"


def test_missing_and_unreadable_logs(tmp_path: Path) -> None:
    events, warnings = read(tmp_path / "nope.log")
    assert events == [] and warnings == [f"{tmp_path / 'nope.log'}: no such audit log"]
    (tmp_path / "dir.log").mkdir()
    events, warnings = read(tmp_path / "dir.log")
    assert events == [] and warnings[0].startswith(f"cannot read the audit log {tmp_path}")


def test_rotated_files_oldest_first(tmp_path: Path) -> None:
    for name in ("audit.log", "audit.log.1", "audit.log.2", "audit.log.10", "audit.log.x"):
        (tmp_path / name).write_text("")
    names = [Path(p).name for p in auditlog.log_files(str(tmp_path / "audit.log"))]
    assert names == ["audit.log.10", "audit.log.2", "audit.log.1", "audit.log"]


def test_records_of_an_event_far_apart_in_the_log(tmp_path: Path) -> None:
    """Events are completed after EVENT_TIMEOUT_NS of log time: a record
    arriving later than that starts a separate event, and is still shown."""
    late = f"type=PROCTITLE {stamp(119, 500)}: proctitle=6C73"
    far = TTY.replace(stamp(1000, 510), stamp(5000, 511))
    log = write_logs(tmp_path, [*EXEC[:2], far, late])
    events, _ = read(log)
    assert [e.serial for e in events] == [500, 511]
    assert [r.type for r in events[0].records] == ["SYSCALL", "EXECVE"]


def test_parse_line_field_forms() -> None:
    parsed = auditlog.parse_line(
        f"type=USER_AVC {stamp(0, 1)}: pid=1 uid=0 auid=4294967295 ses=4294967295 "
        "msg='avc:  denied  { status } for auid=0 uid=0 exe=\"/bin/x\" sauid=0 "
        f"hostname=? addr=? terminal=?'{GS}AUID=\"unset\"")
    assert parsed is not None
    node, t, serial, rec = parsed
    assert (node, t, serial, rec.type) == (None, T0 * 10**9, 1, "USER_AVC")
    assert rec.fields["uid"] == "0" and rec.fields["exe"] == "/bin/x"
    assert rec.fields["msg"].startswith("avc:  denied")
    assert rec.interpreted == {"AUID": "unset"}
    assert auditlog.parse_line("type=X msg=audit(1.2:3): a=b") is None


def _audit(ms: int, kind: str = "TTY", key: tuple[str, int, int] | None = None) -> AuditEvent:
    if key is None:
        rec = AuditRecord(kind, {"pid": "1"}, {}, "")
        return AuditEvent(ms * 1_000_000, ms, None, [rec])
    name = {"exec": "execve", "open": "openat"}[key[0]]
    rec = AuditRecord("SYSCALL", {"pid": str(key[1]), "exit": str(key[2])},
                      {"SYSCALL": name}, "")
    return AuditEvent(ms * 1_000_000, ms, None, [rec])


def _merge(session: list[tuple[int, Any]], audit: list[AuditEvent]) -> list[Any]:
    out = audit_timeline.merge_by_time(session, lambda e: e[0] * 1_000_000, audit,
                                 event_key=lambda e: e[1])
    return [x.serial if isinstance(x, AuditEvent) else x[0] for x in out]


def test_merge_by_time() -> None:
    session = [(10, None), (20, None), (30, None)]
    assert _merge(session, [_audit(5), _audit(20), _audit(25), _audit(99)]) == [
        5, 10, 20, 20, 25, 30, 99]
    assert _merge([], [_audit(1)]) == [1]
    assert _merge(session, []) == [10, 20, 30]


def test_syscall_pairs_sit_next_to_their_session_event() -> None:
    """auditd's stamp is early (coarse clock, syscall entry, ms): by time the
    exec of pid 7 would come before pid 6's; paired, each precedes its own."""
    session = [(10, ("exec", 6, 0)), (11, None), (14, ("exec", 7, 0)), (15, ("open", 7, 3))]
    audit = [_audit(8, key=("exec", 6, 0)), _audit(9, key=("exec", 7, 0)),
             _audit(12), _audit(13, key=("open", 7, 3))]
    assert _merge(session, audit) == [8, 10, 11, 12, 9, 14, 13, 15]


def test_unpaired_syscall_events_are_shown_by_time_after_a_wait() -> None:
    late = 10 + audit_timeline.PAIR_WAIT_NS // 1_000_000 + 1
    session = [(10, None), (late, None), (late, ("exec", 1, 0))]
    audit = [_audit(10, key=("exec", 9, 0)), _audit(20, key=("exec", 1, 0))]
    # exec 9 never comes: shown once its wait is over, before the event at
    # `late`; exec 1 came in time, and sits right before its session event.
    assert _merge(session, audit) == [10, 10, late, 20, late]


def test_pair_keys_from_syscall_numbers_without_enriched_names() -> None:
    rec = AuditRecord("SYSCALL", {"arch": "c000003e", "syscall": "257", "pid": "4",
                                  "exit": "-2"}, {}, "")
    assert audit_timeline.audit_pair_key(AuditEvent(0, 1, None, [rec])) == ("open", 4, -2)
    rec = AuditRecord("SYSCALL", {"arch": "c000003e", "syscall": "1", "pid": "4",
                                  "exit": "5"}, {}, "")
    assert audit_timeline.audit_pair_key(AuditEvent(0, 1, None, [rec])) is None


@pytest.mark.parametrize("header_audit, trailer_audit, text", [
    ({"record_type": 1121, "sender_session_id": 3, "start_record": True, "reason": None,
      "status": {"enabled": 1, "pid": 4321}},
     {"end_record": True, "reason": None},
     "auditing enabled; auditd pid 4321; start and end records written (TRUSTED_APP)"),
    ({"record_type": 1121, "sender_session_id": 3, "start_record": False,
      "reason": "auditd is not running", "status": {"enabled": 1, "pid": 0}},
     {"end_record": False, "reason": "auditd is not running"},
     "auditing enabled; auditd not running; no record written"),  # said once
    ({"record_type": 1121, "sender_session_id": 3, "start_record": False,
      "reason": "auditd is not running (pid 77 is still registered with the kernel, but has "
      "exited)", "status": {"enabled": 1, "pid": 77}},
     {"end_record": False, "reason": "auditd is not running"},
     "auditing enabled; auditd pid 77; no record written; auditd is not running (pid 77 is "
     "still registered with the kernel, but has exited); auditd is not running"),
    ({"record_type": 1121, "sender_session_id": None, "start_record": False,
      "reason": "cannot open the audit netlink socket: EPROTONOSUPPORT", "status": None},
     None,
     "status unknown; no record written; cannot open the audit netlink socket: "
     "EPROTONOSUPPORT"),
])
def test_info_audit(header_audit: dict[str, Any], trailer_audit: dict[str, Any] | None,
                    text: str) -> None:
    trailer = None if trailer_audit is None else {"audit": trailer_audit}
    info = auditlog.audit_info({"audit": header_audit}, trailer)
    assert auditlog.describe_audit(info) == text
    assert info["start_record"] is header_audit["start_record"]
    assert auditlog.describe_audit(None) == "not recorded (format 1.0)"


# --- the commands ---------------------------------------------------------------


def _session_with_log(tmp_path: Path) -> tuple[Path, Path]:
    """A session (audit session 42, recorder pid 999) with two execs, and an
    audit log with their EXECVE events, early as auditd's are, plus others."""
    wall = HEADER["clock"]["wall_ns"]
    ms = 1_000_000
    path = tmp_path / "s.srec"
    write_session(path, [
        ev(2, pid=1000, body=[0, b"/bin/a", [b"a"], 1, 1000, 0], ts=100 * ms),
        ev(4, pid=1000, ts=101 * ms),
        ev(2, pid=1001, body=[0, b"/bin/b", [b"b", b"x y"], 2, 1001, 0], ts=102 * ms),
    ], header={**HEADER, "audit": {"record_type": 1121, "status": None,
                                   "sender_session_id": 42, "start_record": False,
                                   "reason": "auditd is not running"}})

    def at(offset_ms: int, serial: int) -> str:
        t = wall + offset_ms * ms
        return f"msg=audit({t // 10**9}.{t % 10**9 // ms:03d}:{serial})"

    def execve(offset_ms: int, serial: int, pid: int, args: str) -> list[str]:
        return [
            f"type=SYSCALL {at(offset_ms, serial)}: arch=c000003e syscall=59 success=yes "
            f"exit=0 a0=1 a1=2 a2=3 a3=0 items=2 ppid=1 pid={pid} auid=1000 uid=0 ses=42 "
            f'comm="x" exe="/bin/x" key="k"',
            f"type=EXECVE {at(offset_ms, serial)}: {args}",
        ]

    log = tmp_path / "audit.log"
    log.write_text("\n".join([
        *execve(95, 10, 1000, 'argc=1 a0="a"'),
        *execve(96, 11, 1001, 'argc=2 a0="b" a1=782079'),
        f"type=USER_CMD {at(97, 12)}: pid=7 uid=0 auid=1000 ses=43 msg='cmd=6C73 res=success'",
        "this is not audit",
        f"type=TTY {at(150, 13)}: tty pid=1000 uid=0 auid=1000 ses=42 major=1 minor=1 "
        "comm=\"a\" data=1B5B324A",
        f"type=TTY {at(5000, 14)}: tty pid=1000 uid=0 auid=1000 ses=42 data=41",  # too late
    ]) + "\n")
    return path, log


def test_replay_with_the_audit_log(tmp_path: Path) -> None:
    path, log = _session_with_log(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert main(["replay", str(path), "--audit-log", str(log)], stdout=out, stderr=err) == 0
    lines = out.getvalue().splitlines()
    kinds = [line.split()[3] for line in lines]
    assert kinds == ["audit", "exec", "open", "audit", "exec", "audit"], lines
    assert lines[0].split()[4:] == ["EXECVE", "pid=1000", "a", "key=k"]
    assert lines[3].split(None, 4)[4] == 'EXECVE pid=1001 b "x y" key=k'
    assert lines[5].endswith("TTY pid=1000 \\x1b[2J")  # escaped, never sent to the terminal
    assert err.getvalue() == f"sessrec: warning: {log}:6: not an audit record; skipped\n"

    out = io.StringIO()
    assert main(["replay", str(path), "--audit-log", str(log), "--pid", "1001"],
                stdout=out, stderr=io.StringIO()) == 0
    assert [line.split()[3] for line in out.getvalue().splitlines()] == ["audit", "exec"]
    err = io.StringIO()
    assert main(["replay", str(path), "--audit-log", str(log), "--follow"],
                stdout=io.StringIO(), stderr=err) == 2
    assert "cannot --follow" in err.getvalue()


def test_find_by_audit_session(tmp_path: Path) -> None:
    for name, ses in (("a.srec", 42), ("b.srec", 43), ("c.srec", 42), ("d.srec", None)):
        write_session(tmp_path / name, [], header={**HEADER, "audit_session_id": ses})
    out = io.StringIO()
    assert main(["find", "--audit-session", "42", str(tmp_path)], stdout=out,
                stderr=io.StringIO()) == 0
    assert out.getvalue() == f"{tmp_path / 'a.srec'}\n{tmp_path / 'c.srec'}\n"
    out = io.StringIO()
    assert main(["find", "--audit-session", "7", str(tmp_path)], stdout=out,
                stderr=io.StringIO()) == 1
    assert out.getvalue() == ""
    err = io.StringIO()
    assert main(["find", "--audit-session", "4294967295", str(tmp_path)],
                stdout=io.StringIO(), stderr=err) == 2


def test_numbers_of_thousands_of_digits_are_not_numbers(tmp_path: Path) -> None:
    """int() refuses more than 4,300 digits: a 5,000-digit pid, exit or
    argument number is text, never a traceback."""
    path, log = _session_with_log(tmp_path)
    big = "9" * 5000
    wall = HEADER["clock"]["wall_ns"] + 100_000_000
    stamp_ = f"msg=audit({wall // 10**9}.{wall % 10**9 // 1_000_000:03d}:900)"
    with log.open("a") as f:
        f.write(f"type=SYSCALL {stamp_}: arch=c000003e syscall=59 success=no exit={big} "
                f"a0=1 items=0 ppid=1 pid={big} auid=1000 uid=0 ses=42 comm=\"x\" key=\"k\"\n")
        f.write(f"type=EXECVE {stamp_}: argc=1 a{big}=\"x\" a0=\"y\"\n")
        f.write(f"type=TTY {stamp_}: tty pid=\u00b2 ses=42 data=6C73\n")
    out, err = io.StringIO(), io.StringIO()
    assert main(["replay", str(path), "--audit-log", str(log)], stdout=out, stderr=err) == 0
    assert "Traceback" not in err.getvalue()
    big_event = [line for line in out.getvalue().splitlines() if "EXECVE pid=" + big[:10] in line]
    assert len(big_event) == 1 and big_event[0].endswith(" y key=k")
