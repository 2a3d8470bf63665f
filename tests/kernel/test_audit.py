"""The session and auditd, for real: Debian's auditd, the kernel's audit
sessions, ausearch, and audit rules.

The `auditd` fixture starts auditd if it is not running (there is no systemd
in CI) and restores afterwards, even when a test fails, what the tests change:
the audit rules (saved with `auditctl -l`), the enabled flag, and whether
auditd runs at all. A new audit session is made the way a login makes one:
a root process writes its own /proc/self/loginuid, and the kernel gives it a
new session id; `sessrec record` then runs inside it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from krec import TIMEOUT_FACTOR, Recorder, header, info, run_cli

from recorder import audit
from replay import audit_timeline, auditlog
from replay.reader import open_session, read_trailer_fast
from sessrec.event import Exec

pytestmark = pytest.mark.kernel

IN_CI = os.environ.get("CI", "").lower() == "true"
LOGIN_UID = 54321  # any uid will do: the kernel does not check it
RULE_KEY = "sessrec-test"
WAIT = 10.0  # seconds to wait for auditd to write a record


def need(ok: bool, reason: str) -> None:
    """Skip without it; under CI=true, fail (CI must run this tier)."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI=true, but the audit tests {reason}", pytrace=False)
    pytest.skip(f"audit tests: {reason}")


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/sbin:/usr/sbin")
    need(path is not None, f"need {name} (Debian's auditd package; ./setup.sh installs it)")
    assert path is not None
    return path


def status() -> dict[str, int]:
    out = subprocess.run([tool("auditctl"), "-s"], check=True, capture_output=True,
                         text=True).stdout
    values: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def wait_for(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def running_pid() -> int:
    """auditd's pid; 0 if none is registered with the kernel, or if the one
    registered was killed (the kernel forgets a killed auditd only when a
    delivery to it fails: CI machines start that way)."""
    pid = status().get("pid", 0)
    return pid if pid > 0 and audit.pid_alive(pid) else 0


@dataclass
class Auditd:
    """The running auditd; started_here: this fixture started it (and may
    stop it)."""

    started_here: bool
    log: str = auditlog.DEFAULT_LOG

    @property
    def pid(self) -> int:
        return running_pid()

    def start(self) -> None:
        # It daemonizes itself; it takes over from a killed one still registered.
        subprocess.run([tool("auditd")], check=True, stdin=subprocess.DEVNULL,
                       capture_output=True)
        wait_for(lambda: self.pid != 0, "auditd to register with the kernel")

    def stop(self) -> None:
        pid = self.pid
        assert pid > 0, "no auditd to stop"  # never kill(0): that is our process group
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: status().get("pid") != pid and not audit.pid_alive(pid),
                 "auditd to stop")

    def check_writes_log(self) -> None:
        """A user record with a unique text must reach self.log: the auditd
        registered is the one writing the log these tests read."""
        token = f"sessrec-test-probe-{os.getpid()}-{time.monotonic_ns()}"
        subprocess.run([tool("auditctl"), "-m", token], check=True, capture_output=True)

        def logged() -> bool:
            try:
                with open(self.log, "rb") as f:
                    f.seek(max(0, os.fstat(f.fileno()).st_size - (1 << 20)))
                    return token.encode() in f.read()
            except FileNotFoundError:
                return False

        try:
            wait_for(logged, "a probe record")
        except AssertionError:
            need(False, f"auditd (pid {self.pid}) does not write {self.log}: "
                 "a probe record never arrived there")

    def rules(self) -> list[list[str]]:
        out = subprocess.run([tool("auditctl"), "-l"], check=True, capture_output=True,
                             text=True).stdout
        return [shlex.split(line) for line in out.splitlines()
                if line.strip() and line.strip() != "No rules"]


@pytest.fixture(scope="module")
def auditd() -> Iterator[Auditd]:
    tool("ausearch")
    before = status()
    need(before.get("enabled") != 2, "need changeable audit rules, but they are locked (-e 2)")
    d = Auditd(started_here=running_pid() == 0)
    saved_rules = d.rules()
    try:
        if d.started_here:
            d.start()
        if status().get("enabled") == 0:
            subprocess.run([tool("auditctl"), "-e", "1"], check=True, capture_output=True)
        d.check_writes_log()
        yield d
    finally:
        auditctl = tool("auditctl")
        if d.rules() != saved_rules:
            subprocess.run([auditctl, "-D"], check=True, capture_output=True)
            for rule in saved_rules:
                subprocess.run([auditctl, *rule], check=True, capture_output=True)
        if d.started_here and d.pid != 0:
            d.stop()
        elif not d.started_here and d.pid == 0:
            d.start()
        subprocess.run([auditctl, "-e", str(before.get("enabled", 1))], check=True,
                       capture_output=True)


@pytest.fixture(scope="module")
def can_log_in() -> None:
    """Probe: can a root process here start an audit session?"""
    probe = subprocess.run(
        [sys.executable, "-c", f"open('/proc/self/loginuid', 'w').write('{LOGIN_UID}')"],
        capture_output=True, text=True)
    need(probe.returncode == 0, "cannot start an audit session (writing /proc/self/loginuid "
         f"failed: {probe.stderr.strip().splitlines()[-1:] or '?'})")


_LOGIN = """
import os, sys
with open("/proc/self/loginuid", "w") as f:
    f.write(sys.argv[1])
print(open("/proc/self/sessionid").read(), flush=True)
sys.stdin.readline()
os.execv(sys.executable, [sys.executable, "-m", "sessrec", "record", *sys.argv[2:]])
"""


@dataclass
class LoginRecording:
    session: int  # the audit session id the kernel gave the "login"
    path: Path
    status: int
    stderr: str
    header: dict[str, Any]
    trailer: dict[str, Any]


def record_in_new_audit_session(path: Path, cmd: list[str],
                                before_start: Callable[[int], None] = lambda _ses: None
                                ) -> LoginRecording:
    """Like a login: a child sets its login uid (the kernel starts a new
    audit session), then execs `sessrec record -o path -- cmd`.
    before_start(session id) runs before the recorder starts."""
    p = subprocess.Popen([sys.executable, "-c", _LOGIN, str(LOGIN_UID), "-o", str(path), "--",
                          *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    try:
        line = p.stdout.readline()
        assert line.strip().isdigit(), f"no session id from the login child: {line!r}"
        ses = int(line)
        before_start(ses)
        p.stdin.write("go\n")
        p.stdin.flush()
        _, err = p.communicate(timeout=120 * TIMEOUT_FACTOR)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert path.exists(), f"record wrote no file: {err}"
    trailer = read_trailer_fast(path)
    assert trailer is not None, err
    return LoginRecording(ses, path, p.returncode, err, header(path), trailer)


def ausearch(session: int, uuid: str, ops: tuple[str, ...]) -> list[str]:
    """The TRUSTED_APP records of an audit session naming uuid, once every op
    in ops is among them (auditd writes asynchronously)."""
    found: list[str] = []

    def check() -> bool:
        out = subprocess.run([tool("ausearch"), "--session", str(session), "-m", "TRUSTED_APP",
                              "--raw"], capture_output=True, text=True).stdout
        found[:] = [line for line in out.splitlines() if f"sessrec_session={uuid} " in line]
        return all(any(f"op={op} " in line for line in found) for op in ops)

    wait_for(check, f"ausearch to find {ops} of audit session {session}")
    return found


def test_a_login_session(auditd: Auditd, can_log_in: None, tmp_path: Path) -> None:
    rec = record_in_new_audit_session(tmp_path / "login.srec", ["/bin/true"])
    assert rec.status == 0, rec.stderr
    h = rec.header
    assert h["audit_session_id"] == rec.session
    assert h["login_uid"] == LOGIN_UID
    # The records came from inside the session: the kernel stamps the sender's.
    assert h["audit"]["sender_session_id"] == rec.session
    assert h["audit"]["start_record"] is True and h["audit"]["reason"] is None
    assert h["audit"]["status"]["pid"] == auditd.pid and h["audit"]["status"]["enabled"] == 1
    assert rec.trailer["audit"] == {"end_record": True, "reason": None}

    start, end = ausearch(rec.session, h["session_id"], ("sessrec-start", "sessrec-end"))
    for line in (start, end):
        assert line.startswith("type=TRUSTED_APP ")
        assert f" auid={LOGIN_UID} ses={rec.session} " in line
        assert f' file="{rec.path}" ' in line
        assert line.endswith(" res=success'")  # whole, to its last character
    assert f" leader_pid={h['leader_pid']} recorder_pid={h['recorder']['pid']} " in start
    counts = rec.trailer["counts"]
    assert f" events={sum(counts.values())} " in end and f" events_exec={counts['exec']} " in end
    assert " lost=0 " in end and " end_reason=cgroup-empty exit_status=0 " in end

    # ... and the other way: from the audit session to the file.
    status, out, err = run_cli("find", "--audit-session", str(rec.session), tmp_path)
    assert (status, out) == (0, f"{tmp_path / 'login.srec'}\n"), err
    i = info(rec.path)
    assert (i["audit_session_id"], i["login_uid"]) == (rec.session, LOGIN_UID)
    assert i["audit"]["start_record"] and i["audit"]["end_record"]
    status, text, _ = run_cli("info", rec.path)
    assert f"login uid {LOGIN_UID}, audit session {rec.session}" in text
    assert f"auditing enabled; auditd pid {auditd.pid}; start and end records written" in text


def test_auditd_records_merged_into_the_replay(auditd: Auditd, can_log_in: None,
                                               tmp_path: Path) -> None:
    """An audit rule logs execve for the session only; the merged timeline
    puts each of auditd's EXECVE events right before sessrec's exec event
    of the same process and arguments."""
    auditctl = tool("auditctl")
    rule: list[str] = []

    def add_rule(ses: int) -> None:
        rule[:] = ["always,exit", "-F", "arch=b64", "-S", "execve", "-F", f"sessionid={ses}",
                   "-k", RULE_KEY]
        subprocess.run([auditctl, "-a", *rule], check=True, capture_output=True)

    script = "sleep 0.1; /bin/true; sleep 0.1; /bin/echo merged"
    try:
        rec = record_in_new_audit_session(tmp_path / "merge.srec", ["/bin/sh", "-c", script],
                                          add_rule)
    finally:
        if rule:
            subprocess.run([auditctl, "-d", *rule], check=True, capture_output=True)
    assert rec.status == 0, rec.stderr
    ausearch(rec.session, rec.header["session_id"], ("sessrec-end",))

    def merged() -> list[Any]:
        warnings: list[str] = []
        with open_session(rec.path) as s:
            audit = auditlog.session_audit_events(s.header, rec.trailer, None, auditd.log,
                                                  warn=warnings.append)
            wall = s.header["clock"]["wall_ns"]
            items = list(audit_timeline.merge_by_time(
                s.records(), lambda e: wall + e.ts, audit,
                event_key=audit_timeline.event_pair_key))
        assert warnings == []
        return items

    execs: list[Exec] = []
    items: list[Any] = []

    def all_there() -> bool:
        items[:] = merged()
        execs[:] = [e for e in items if isinstance(e, Exec) and e.ret == 0]
        audited = [e for e in items if isinstance(e, auditlog.AuditEvent) and e.kind == "EXECVE"]
        return len(audited) >= len(execs)

    wait_for(all_there, "auditd's EXECVE records")
    names = [os.path.basename(e.argv[0].decode()) for e in execs]
    assert names == ["sh", "sleep", "true", "sleep", "echo"]
    for e in execs:
        before = items[items.index(e) - 1]
        assert isinstance(before, auditlog.AuditEvent), f"no audit event before {e}"
        assert before.kind == "EXECVE" and before.pid == e.pid
        assert before.argv() == [a.decode() for a in e.argv]
        assert before.value("key") == RULE_KEY
        assert before.session_id == rec.session
    ops = [i.value("op") for i in items if isinstance(i, auditlog.AuditEvent)
           and i.kind == "TRUSTED_APP"]
    assert ops == ["sessrec-start", "sessrec-end"]
    # The same through the command line.
    status, out, err = run_cli("replay", rec.path, "--audit-log", auditd.log, "--type", "exec")
    assert status == 0 and err == ""
    # time, pid, comm (15 wide), then the type and the details
    shown = [line[34:].split(None, 1) for line in out.splitlines()]
    ours = [text for kind, text in shown if text.startswith("TRUSTED_APP ")]
    assert [t.split()[1] for t in ours] == ["op=sessrec-start", "op=sessrec-end"]
    pairs = [(kind, text) for kind, text in shown if not text.startswith("TRUSTED_APP ")]
    assert [kind for kind, _ in pairs] == ["audit", "exec"] * 5
    for (_, text), e in zip(pairs[0::2], execs, strict=True):
        assert text.startswith(f"EXECVE pid={e.pid} ") and text.endswith(f" key={RULE_KEY}")
    # The rule is gone again.
    assert not any(f"sessionid={rec.session}" in r for r in auditd.rules())


def _no_audit_record(rec_header: dict[str, Any], trailer_audit: dict[str, Any],
                     words: str) -> None:
    a = rec_header["audit"]
    assert a["start_record"] is False and words in a["reason"]
    assert trailer_audit["end_record"] is False and words in trailer_audit["reason"]


def test_auditd_stopped(auditd: Auditd, record: Recorder) -> None:
    need(auditd.started_here or IN_CI,
         "would stop an auditd they did not start (stop it first to run this test)")
    auditd.stop()
    try:
        rec = record(["/bin/true"])
        assert rec.status == 0
        assert rec.header["audit"]["status"]["pid"] == 0
        trailer = read_trailer_fast(rec.path)
        assert trailer is not None
        _no_audit_record(rec.header, trailer["audit"], "auditd is not running")
        assert "auditd not running; no record written" in run_cli("info", rec.path)[1]
    finally:
        auditd.start()


def test_auditing_disabled(auditd: Auditd, record: Recorder) -> None:
    auditctl = tool("auditctl")
    subprocess.run([auditctl, "-e", "0"], check=True, capture_output=True)
    try:
        rec = record(["/bin/true"])
    finally:
        subprocess.run([auditctl, "-e", "1"], check=True, capture_output=True)
    assert rec.status == 0
    trailer = read_trailer_fast(rec.path)
    assert trailer is not None
    _no_audit_record(rec.header, trailer["audit"], "auditing is disabled")


def test_audit_abi_matches_linux_audit_h(tmp_path: Path) -> None:
    """recorder/audit.py's struct audit_status fields, AUDIT_GET and the
    netlink family against the compiler's view of <linux/audit.h>, and its
    record type within the kernel's user-message range. (The kernel headers
    do not name 1121; libaudit does, and auditd writing it as
    `type=TRUSTED_APP` in test_a_login_session checks that.)"""
    gcc = shutil.which("gcc")
    need(gcc is not None and Path("/usr/include/linux/audit.h").exists(),
         "need gcc and <linux/audit.h> (linux-libc-dev)")
    assert gcc is not None
    fields = " ".join(f'printf("{f} %zu\\n", offsetof(struct audit_status, {f}));'
                      for f in audit.STATUS_FIELDS)
    src = tmp_path / "abi.c"
    src.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/audit.h>\n"
        "#include <linux/netlink.h>\n"
        f"int main(void) {{ {fields} printf(\"size %zu\\n\", sizeof(struct audit_status)); "
        'printf("AUDIT_GET %d\\nFIRST %d\\nLAST %d\\nNETLINK_AUDIT %d\\n", AUDIT_GET, '
        "AUDIT_FIRST_USER_MSG, AUDIT_LAST_USER_MSG, NETLINK_AUDIT); return 0; }\n")
    subprocess.run([gcc, "-o", tmp_path / "abi", src], check=True, capture_output=True)
    out = subprocess.run([tmp_path / "abi"], check=True, capture_output=True, text=True).stdout
    got = dict(line.split() for line in out.splitlines())
    for i, name in enumerate(audit.STATUS_FIELDS):
        assert int(got[name]) == 4 * i, name  # u32 each, in this order
    assert int(got["size"]) >= 4 * len(audit.STATUS_FIELDS)  # the kernel's may be longer
    assert int(got["AUDIT_GET"]) == audit.AUDIT_GET
    assert int(got["FIRST"]) <= audit.RECORD_TYPE <= int(got["LAST"])
    assert int(got["NETLINK_AUDIT"]) == audit.NETLINK_AUDIT
