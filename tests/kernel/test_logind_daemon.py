"""The daemon's logind enrolment (recorder/enrol_logind.py) on this
machine's real cgroup2 hierarchy. There is no systemd here, so the test
plays systemd-logind's part: it makes user.slice/user-UID.slice/
session-N.scope under a private top cgroup (the daemon's `logind_root`
points there, never at a real logind tree), with N a real audit session id,
and moves a real login shell into the scope, as systemd does for
pam_systemd.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from daemonctl import Daemon, cgroup2, gated, make_daemon, release, rmdir
from krec import export, header, info

from replay.reader import read_trailer_fast

pytestmark = pytest.mark.kernel

NOBODY = 65534
# The login shell: a new audit session (a root process that writes its
# loginuid gets one), its id on stdout, then it waits until the test has
# moved it into its scope and the daemon has adopted it.
LOGIN = f"""
echo {NOBODY} >/proc/self/loginuid
cat /proc/self/sessionid; echo
read _
/bin/true after-adoption
/bin/sleep 0.2 &
wait
/bin/cat /etc/hostname >/dev/null
"""


@dataclass
class Logind:
    """A logind-like tree: <top>/user.slice, made and removed by the test."""

    top: Path

    @property
    def root(self) -> Path:
        return self.top / "user.slice"

    def scope(self, uid: int, session: int | str) -> Path:
        p = self.root / f"user-{uid}.slice" / f"session-{session}.scope"
        p.mkdir(parents=True)
        return p

    def cleanup(self) -> None:
        for d in sorted(self.top.rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                for pid in (d / "cgroup.procs").read_text().split():
                    (cgroup2() / "cgroup.procs").write_text(pid)
                rmdir(d)
        rmdir(self.top)


@pytest.fixture(scope="module")
def logind() -> Iterator[Logind]:
    t = Logind(cgroup2() / f"sessrec-logind-test-{secrets.token_hex(3)}")
    t.root.mkdir(parents=True)
    try:
        yield t
    finally:
        t.cleanup()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, logind: Logind) -> Iterator[Daemon]:
    d = make_daemon(tmp_path_factory.mktemp("logind"),
                    f'enrolment = "logind"\nlogind_root = "{logind.root.relative_to(cgroup2())}"\n'
                    'linger = "2s"\n')
    try:
        yield d.start()
    finally:
        d.cleanup()
    assert not [e for e in d.log() if e.get("level") == "error"], d.log_path.read_text()


def wait_log(d: Daemon, event: str, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for e in d.events(event):
            if all(e.get(k) == v for k, v in match.items()):
                return e
        time.sleep(0.02)
    raise AssertionError(f"no {event} {match} in the daemon's log: {d.log_path.read_text()}")


def wait_gone(d: Daemon, session: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if session not in {s["session"] for s in d.request("list")["sessions"]}:
            return
        time.sleep(0.05)
    raise AssertionError(f"session {session} did not end")


def files_of(d: Daemon, session: str) -> list[Path]:
    return sorted(d.out.glob(f"*-{session}.srec"))


def test_a_scope_is_adopted_recorded_and_ended(daemon: Daemon, logind: Logind) -> None:
    shell = subprocess.Popen(["/bin/sh", "-c", LOGIN], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    assert shell.stdout is not None
    audit_session = int(shell.stdout.readline())
    scope = logind.scope(NOBODY, audit_session)
    scope_id = os.stat(scope).st_ino
    (scope / "cgroup.procs").write_text(str(shell.pid))         # systemd's move
    adopted = wait_log(daemon, "scope-adopted", scope=str(scope))
    sid = adopted["session"]
    assert adopted["processes"] == 1
    # A process moved into the scope after the adoption joins the session.
    late = gated(["/bin/echo", "moved-in-later"], stdout=subprocess.DEVNULL)
    (scope / "cgroup.procs").write_text(str(late.pid))
    release(late)
    assert late.wait() == 0
    release(shell)
    assert shell.wait() == 0
    wait_gone(daemon, sid)
    # The scope is systemd's: the daemon neither removed it nor moved from it.
    assert scope.is_dir()
    rmdir(scope)

    [path] = files_of(daemon, sid)
    h = header(path)
    assert h["kind"] == "logind" and h["user"] == "nobody" and h["uid"] == NOBODY
    assert h["audit_session_id"] == audit_session and h["login_uid"] == NOBODY
    assert h["login"] == {"user": "nobody", "uid": NOBODY,
                          "logind_session": str(audit_session)}
    assert h["leader_pid"] == shell.pid and h["cgroup"] == str(scope)
    assert h["cgroup_id"] == scope_id                            # the session's key
    events, _ = export(path)
    execs = [e["argv"] for e in events if e["type"] == "exec" and e["return_code"] == 0]
    assert ["/bin/true", "after-adoption"] in execs
    assert ["/bin/sleep", "0.2"] in execs                        # forked after adoption
    assert ["/bin/cat", "/etc/hostname"] in execs
    assert ["/bin/echo", "moved-in-later"] in execs              # moved in after adoption
    sleeper = next(e["pid"] for e in events if e["type"] == "exec"
                   and e["argv"] == ["/bin/sleep", "0.2"])
    assert any(e["type"] == "fork" and e["pid"] == shell.pid and e["child_pid"] == sleeper
               for e in events)
    assert any(e["type"] == "open" and e["path"] == "/etc/hostname" for e in events)
    summary = info(path)
    assert summary["complete"] and summary["end_reason"] == "cgroup-empty"
    assert not any(summary["lost"].values()) and summary["tampered"] == 0
    end = wait_log(daemon, "session-end", session=sid)
    assert end["left_running"] == []


def _new_audit_session() -> None:
    """In the child before its exec, as pam_loginuid does for a login: a
    root process that sets its login uid gets a new audit session."""
    with open("/proc/self/loginuid", "w") as f:
        f.write(str(NOBODY))


def test_a_pam_login_is_followed_into_its_scope(daemon: Daemon, logind: Logind) -> None:
    """The PAM hook put the login in its session cgroup; then pam_systemd
    has systemd move it into its scope. The PAM session lives on in the
    scope (linked, not a second session) and ends when the scope empties.
    That move is not flagged tampered; a move into another scope is."""
    # As under sshd: the leader's child runs the user's programs (a PAM
    # login whose user side ran nothing is discarded: docs/NODE.md).
    login = gated(["/bin/sh", "-c", "(/bin/true in-scope; /bin/sleep 0.3; :); :"],
                  preexec_fn=_new_audit_session)
    audit_session = int(Path(f"/proc/{login.pid}/sessionid").read_text())
    r = daemon.request("start", pid=login.pid, kind="pam",
                       login={"user": "nobody", "uid": NOBODY, "service": "sshd"})
    assert r["recorded"]
    scope = logind.scope(NOBODY, audit_session)
    (scope / "cgroup.procs").write_text(str(login.pid))         # systemd's move
    linked = wait_log(daemon, "scope-linked", scope=str(scope))
    assert linked["session"] == r["session"] and linked["kind"] == "pam"
    other = logind.scope(NOBODY, f"c{secrets.randbelow(10**6)}")
    (other / "cgroup.procs").write_text(str(login.pid))         # root's, by hand
    wait_log(daemon, "scope-linked", scope=str(other))
    release(login)
    # Its own cgroup is empty now; the session is not over.
    time.sleep(0.1)
    assert r["session"] in {s["session"] for s in daemon.request("list")["sessions"]}
    assert login.wait() == 0
    wait_gone(daemon, r["session"])
    rmdir(other)
    rmdir(scope)

    assert not [e for e in daemon.events("scope-adopted") if e["scope"] in (str(scope),
                                                                           str(other))]
    [path] = files_of(daemon, r["session"])
    events, _ = export(path)
    execs = [e["argv"] for e in events if e["type"] == "exec"]
    assert ["/bin/true", "in-scope"] in execs and ["/bin/sleep", "0.3"] in execs
    # Both moves are in the file; only the one to a scope that is not the
    # login's own is flagged.
    moves = [e for e in events if e["type"] == "cgroup"]
    assert [m["moved_pid"] for m in moves] == [login.pid, login.pid]
    assert [m["dst_path"] for m in moves] == [
        "/" + str(c.relative_to(cgroup2())) for c in (scope, other)]
    assert [m["tampered"] for m in moves] == [False, True]
    summary = info(path)
    assert summary["complete"] and summary["end_reason"] == "cgroup-empty"


def test_a_login_lasts_while_what_root_moved_out_of_it_runs(daemon: Daemon) -> None:
    """A login's root shell moves a child out of the session's cgroup and
    logs out: the session follows the child until it exits, and ends then,
    with nothing left running."""
    inner = f"echo $$ > {cgroup2() / 'cgroup.procs'}; /bin/sleep 0.5; /bin/true moved-out"
    # The user's side as under sshd: a child of the leader that does not exec.
    login = gated(["/bin/sh", "-c", f"(/bin/sh -c '{inner}' &); exit 0"])
    r = daemon.request("start", pid=login.pid, kind="pam", login={"user": "nobody"})
    release(login)
    assert login.wait() == 0
    time.sleep(0.2)   # the login's cgroup is empty; the child still runs
    assert r["session"] in {s["session"] for s in daemon.request("list")["sessions"]}
    end = wait_log(daemon, "session-end", session=r["session"])
    assert end["end_reason"] == "cgroup-empty" and end["left_running"] == []
    events, _ = export(files_of(daemon, r["session"])[0])
    [move] = [e for e in events if e["type"] == "cgroup"]
    assert move["tampered"]
    assert ["/bin/true", "moved-out"] in [e["argv"] for e in events if e["type"] == "exec"]
    assert any(e["type"] == "exit" and e["pid"] == move["moved_pid"] for e in events)


def test_after_its_leader_exits_linger_bounds_the_scope(daemon: Daemon,
                                                        logind: Logind) -> None:
    """The leader (sshd's [priv], login) exits when the login closes; what
    it left running in the scope is recorded for `linger` (2 s here), then
    named in the trailer and left where it is, in systemd's scope."""
    leader = gated(["/bin/sh", "-c", "/bin/sleep 30 >/dev/null & echo $!"], stdout=subprocess.PIPE)
    scope = logind.scope(NOBODY, f"c{secrets.randbelow(10**6)}")
    (scope / "cgroup.procs").write_text(str(leader.pid))
    sid = wait_log(daemon, "scope-adopted", scope=str(scope))["session"]
    release(leader)
    assert leader.stdout is not None
    left = int(leader.stdout.readline())
    assert leader.wait() == 0
    end = wait_log(daemon, "session-end", session=sid)
    try:
        assert end["end_reason"] == "leader-exited" and end["left_running"] == [left]
        assert (scope / "cgroup.procs").read_text().split() == [str(left)]
        [path] = files_of(daemon, sid)
        summary = info(path)
        assert summary["complete"] and summary["end_reason"] == "leader-exited"
        assert (read_trailer_fast(path) or {})["left_running"] == [left]
    finally:
        os.kill(left, 9)


@pytest.fixture(scope="module")
def pam_daemon(tmp_path_factory: pytest.TempPathFactory, logind: Logind) -> Iterator[Daemon]:
    d = make_daemon(tmp_path_factory.mktemp("logind-pam"),
                    f'logind_root = "{logind.root.relative_to(cgroup2())}"\n', name="p")
    try:
        yield d.start()
    finally:
        d.cleanup()
    assert not [e for e in d.log() if e.get("level") == "error"], d.log_path.read_text()


def test_with_pam_enrolment_scopes_are_followed_not_adopted(pam_daemon: Daemon,
                                                            logind: Logind) -> None:
    """enrolment = "pam" where logind runs: a PAM login moved into its scope
    goes on being recorded; a scope of a login without the hook is not."""
    other = gated(["/bin/true"])
    unhooked = logind.scope(NOBODY, f"c{secrets.randbelow(10**6)}")
    (unhooked / "cgroup.procs").write_text(str(other.pid))
    login = gated(["/bin/sh", "-c", "(/bin/true pam-in-scope; :); :"])
    r = pam_daemon.request("start", pid=login.pid, kind="pam", login={"user": "nobody"})
    scope = logind.scope(NOBODY, f"c{secrets.randbelow(10**6)}")
    (scope / "cgroup.procs").write_text(str(login.pid))
    assert wait_log(pam_daemon, "scope-linked", scope=str(scope))["session"] == r["session"]
    release(login)
    release(other)
    assert login.wait() == 0 and other.wait() == 0
    wait_gone(pam_daemon, r["session"])
    events, _ = export(files_of(pam_daemon, r["session"])[0])
    assert ["/bin/true", "pam-in-scope"] in [e["argv"] for e in events if e["type"] == "exec"]
    assert pam_daemon.events("scope-adopted") == []
    assert list(pam_daemon.out.iterdir()) == files_of(pam_daemon, r["session"])


def test_a_restarted_daemon_continues_scopes_and_adopts_new_ones(
        tmp_path: Path, logind: Logind) -> None:
    """SIGKILL mid-login: the next daemon continues the scope's session (the
    gap stated) without taking the scope for its own, and adopts a scope
    made while no daemon ran."""
    d = make_daemon(tmp_path, f'enrolment = "logind"\nlogind_root = '
                    f'"{logind.root.relative_to(cgroup2())}"\n', name="r")
    try:
        d.start()
        first = subprocess.Popen(["/bin/sh", "-c", "read _; /bin/true before; read _; "
                                  "/bin/true after"], stdin=subprocess.PIPE)
        assert first.stdin is not None
        a = logind.scope(NOBODY, f"c{secrets.randbelow(10**6)}")
        (a / "cgroup.procs").write_text(str(first.pid))
        sid = wait_log(d, "scope-adopted", scope=str(a))["session"]
        first.stdin.write(b"go\n")
        first.stdin.flush()
        time.sleep(2.0)     # the file is written every second
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        second = gated(["/bin/true", "while-down"])
        b = logind.scope(NOBODY, f"c{secrets.randbelow(10**6)}")
        (b / "cgroup.procs").write_text(str(second.pid))
        d.start()
        assert [e["session"] for e in d.events("session-resumed")] == [sid]
        sid_b = wait_log(d, "scope-adopted", scope=str(b))["session"]
        assert [e["scope"] for e in d.events("scope-adopted")] == [str(a), str(b)]
        release(second)
        first.stdin.write(b"go\n")
        first.stdin.close()
        assert first.wait(30) == 0 and second.wait(30) == 0
        wait_gone(d, sid)
        wait_gone(d, sid_b)
        assert a.is_dir() and b.is_dir()       # systemd's, left alone
        [path] = files_of(d, sid)
        summary = info(path)
        assert summary["complete"] and summary["end_reason"] == "cgroup-empty"
        assert [g["reason"] for g in summary["gaps"]] == ["restart"]
        events, _ = export(path)
        execs = [e["argv"] for e in events if e["type"] == "exec"]
        assert ["/bin/true", "before"] in execs and ["/bin/true", "after"] in execs
        events, _ = export(files_of(d, sid_b)[0])
        assert ["/bin/true", "while-down"] in [e["argv"] for e in events if e["type"] == "exec"]
    finally:
        d.cleanup()
