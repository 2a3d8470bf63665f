"""`sessrec daemon` on the real kernel: sessions started and ended over the
control socket, `sessrec record` through it, `sessrec status`, and a control
socket that garbage, a 100 MiB line, silent and non-root clients cannot
stop or block. One daemon serves the whole module (its programs compile once)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonctl import Daemon, assert_same_session, gated, make_daemon, read_reply, release
from krec import TIMEOUT_FACTOR, export, header, info, run_as_nobody, run_cli

from sessrec import control

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = make_daemon(tmp_path_factory.mktemp("daemon"),
                    '[users]\nexclude = ["excluded-user", 4000]\n')
    try:
        yield d.start()
    finally:
        d.cleanup()
    assert not [e for e in d.log() if e.get("level") == "error"], d.log_path.read_text()


def test_a_login_session_start_to_end(daemon: Daemon) -> None:
    p = gated(["/bin/sh", "-c", "/bin/cat /etc/hostname >/dev/null; exit 3"])
    login = {"user": "alice", "uid": 1000, "rhost": "203.0.113.9", "tty": "ssh",
             "service": "sshd", "remote_addr": "203.0.113.9", "remote_port": 51234}
    r = daemon.request("start", pid=p.pid, kind="logind", login=login)
    assert r["ok"] and r["recorded"] and r["v"] == 1
    # Moved before the reply: the process is in the session cgroup now.
    assert str(p.pid) in Path(r["cgroup"], "cgroup.procs").read_text().split()
    listed = daemon.request("list")["sessions"]
    assert [(s["session"], s["kind"], s["pid"], s["user"], s["state"]) for s in listed] == \
        [(r["session"], "logind", p.pid, "alice", "active")]
    release(p)
    assert p.wait() == 3
    done = daemon.request("end", session=r["session"], reason="pam-close", linger=30)
    assert done["end_reason"] == "cgroup-empty" and done["left_running"] == []
    again = daemon.request("end", session=r["session"])
    assert again["already_ended"] is True and again["file"] == r["file"]

    path = Path(r["file"])
    assert path.parent == daemon.out and "-alice-" in path.name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(daemon.out.stat().st_mode) == 0o700
    h = header(path)
    assert h["kind"] == "logind" and h["login"] == login
    assert h["leader_pid"] == p.pid and h["uid"] == 1000
    assert h["recorder"]["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    events, _ = export(path)
    execs = [e["argv"] for e in events if e["type"] == "exec"]
    assert execs == [["/bin/sh", "-c", "/bin/cat /etc/hostname >/dev/null; exit 3"],
                     ["/bin/cat", "/etc/hostname"]]
    assert any(e["type"] == "open" and e["path"] == "/etc/hostname" for e in events)
    exits = [e for e in events if e["type"] == "exit" and e["pid"] == p.pid]
    assert [e["exit_code"] for e in exits] == [3]
    summary = info(path)
    assert summary["complete"] and summary["end_reason"] == "cgroup-empty"
    assert {k: v for k, v in summary["counts"].items() if v} == done["counts"]
    assert not Path(r["cgroup"]).exists()
    starts = [e for e in daemon.events("session-start") if e["session"] == r["session"]]
    ends = [e for e in daemon.events("session-end") if e["session"] == r["session"]]
    assert starts[0]["user"] == "alice" and starts[0]["pid"] == p.pid
    assert starts[0]["file"] == r["file"] and "audit_session" in starts[0]
    assert ends[0]["events"] == sum(done["counts"].values()) and ends[0]["lost"] == 0


def test_end_lingers_then_names_who_is_left(daemon: Daemon) -> None:
    p = subprocess.Popen(["/bin/sleep", "60"])
    try:
        r = daemon.request("start", pid=p.pid, kind="logind")
        t = time.monotonic()
        done = daemon.request("end", session=r["session"], reason="pam-close", linger=0.5)
        assert time.monotonic() - t >= 0.5
        assert done["end_reason"] == "pam-close" and done["left_running"] == [p.pid]
        assert p.poll() is None  # never killed
        trailer = info(r["file"])
        assert trailer["complete"] and trailer["end_reason"] == "pam-close"
    finally:
        p.kill()
        p.wait()


def test_excluded_and_unknown(daemon: Daemon) -> None:
    p = subprocess.Popen(["/bin/sleep", "60"])
    try:
        for login in ({"user": "excluded-user"}, {"uid": 4000, "user": "x"}):
            r = daemon.request("start", pid=p.pid, kind="logind", login=login)
            assert r["recorded"] is False and "not recorded" in r["reason"]
        assert "sessrec-test" not in Path(f"/proc/{p.pid}/cgroup").read_text()
    finally:
        p.kill()
        p.wait()
    with pytest.raises(control.ControlError) as e:
        daemon.request("start", pid=p.pid, kind="logind")
    assert e.value.code == control.E_NOT_FOUND
    with pytest.raises(control.ControlError) as e:
        daemon.request("end", session="no-such-session")
    assert e.value.code == control.E_NOT_FOUND


@pytest.mark.parametrize(("fields", "words"), [
    ({"kind": "pam"}, "'pid' is missing"),
    ({"pid": "1234", "kind": "pam"}, "'pid' must be int"),
    ({"pid": 1, "kind": "pam"}, "other than init"),
    ({"pid": 1234, "kind": "ssh"}, "kind must be one of"),
    ({"pid": 1234, "kind": "pam", "login": {"user": "a\nb"}}, "without control characters"),
    ({"pid": 1234, "kind": "pam", "login": {"user": "a" * 257}}, "at most 256"),
    ({"pid": 1234, "kind": "pam", "login": {"shell": "/bin/sh"}}, "unknown key 'shell'"),
    ({"pid": 1234, "kind": "pam", "login": {"remote_port": 70000}}, "65535"),
    ({"pid": 1234, "kind": "pam", "login": "alice"}, "login must be an object"),
    ({"pid": 1234, "kind": "pam", "output": "rel.srec"}, "absolute"),
    ({"pid": 1234, "kind": "pam", "extra": 1}, "unknown field 'extra'"),
])
def test_start_validates_untrusted_fields(daemon: Daemon, fields: dict[str, object],
                                          words: str) -> None:
    with pytest.raises(control.ControlError) as e:
        daemon.request("start", **fields)
    assert e.value.code == control.E_BAD_REQUEST and words in str(e.value)


def test_record_through_the_daemon_writes_the_same_file(daemon: Daemon,
                                                        tmp_path: Path) -> None:
    script = "/bin/cat /etc/hostname >/dev/null; /bin/ls / >/dev/null; exit 5"
    os.environ["SESSREC_CONTROL_SOCKET"] = daemon.socket
    try:
        via = tmp_path / "via.srec"
        status, _, err = run_cli("record", "-o", via, "--", "/bin/sh", "-c", script)
        assert status == 5, err
    finally:
        del os.environ["SESSREC_CONTROL_SOCKET"]
    alone = tmp_path / "alone.srec"
    status, _, err = run_cli("record", "--no-daemon", "-o", alone, "--", "/bin/sh", "-c",
                             script)
    assert status == 5, err
    assert_same_session(via, alone, daemon.proc.pid)  # type: ignore[union-attr]


def test_status(daemon: Daemon) -> None:
    status, out, err = run_cli("status", "--json", "--socket", daemon.socket)
    assert status == 0, err
    s = json.loads(out)
    assert s["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    assert "syscalls:sys_exit_openat" in s["programs"] and "sched:sched_process_exec" in \
        s["programs"]
    assert s["events"] == ["command", "disk", "network"]
    assert s["ring_size"] == 1 << 20 and s["sessions_active"] == 0
    for k in ("events_per_second", "lost_total", "events_total", "uptime_s", "sessions"):
        assert k in s
    status, out, _ = run_cli("status", "--socket", daemon.socket)
    assert status == 0 and "sessions:   0 active" in out and "tracepoints" in out


def test_socket_is_roots_alone(daemon: Daemon) -> None:
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(os.stat(Path(daemon.socket).parent).st_mode) == 0o700
    code = ("from sessrec import control\n"
            "try:\n"
            f"    control.request('status', socket_path={daemon.socket!r})\n"
            "except control.SessrecError as e:\n"
            "    print(type(e).__name__, getattr(e, 'code', ''), e)\n")
    r = run_as_nobody(code, with_sessrec=True)
    assert r.stdout.startswith("ControlError permission"), r.stdout + r.stderr


def test_non_root_peer_refused_by_peercred(daemon: Daemon) -> None:
    """The socket's mode keeps others out; SO_PEERCRED is checked anyway
    (a mode changed by mistake, a socket passed on). Here the mode is opened
    up for a moment to let a non-root process connect."""
    sock_dir = Path(daemon.socket).parent
    code = ("import socket, json\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            f"s.connect({daemon.socket!r})\n"
            "try:\n"
            "    s.sendall(b'{\"v\": 1, \"op\": \"status\"}\\n')\n"
            "except OSError:\n"
            "    pass\n"
            "print(s.recv(4096).decode().strip())\n"
            "try:\n"
            "    print(repr(s.recv(4096)))\n"
            "except ConnectionResetError:\n"
            "    print(repr(b''))\n")
    os.chmod(sock_dir, 0o711)
    os.chmod(daemon.socket, 0o666)
    try:
        r = run_as_nobody(code)
    finally:
        os.chmod(daemon.socket, 0o600)
        os.chmod(sock_dir, 0o700)
    reply_line, closed = r.stdout.splitlines()
    reply = json.loads(reply_line)
    assert reply["ok"] is False and reply["error"]["code"] == "permission"
    assert "uid 65534" in reply["error"]["message"]
    assert closed == "b''"  # and the connection is closed
    assert daemon.events("client-refused")[-1]["uid"] == 65534


def test_control_socket_abuse(daemon: Daemon) -> None:
    silent = [daemon.connect() for _ in range(20)]  # connect and never write
    half = daemon.connect()
    half.sendall(b'{"v": 1, "op": "sta')
    half.shutdown(socket.SHUT_WR)  # half-closed mid-request

    s = daemon.connect()
    for line, code in ((b"garbage\n", "bad-json"), (b"\xff\xfe\n", "bad-json"),
                       (b"[1,2]\n", "bad-json"), (b'{"op": "status"}\n', "unsupported-version"),
                       (b'{"v": 2, "op": "status"}\n', "unsupported-version"),
                       (b'{"v": 1, "op": "reboot"}\n', "unknown-op"),
                       (b'{"v": 1}\n', "unknown-op"),
                       (b"[" * 200000 + b"\n", "too-large")):
        s.sendall(line)
        r = read_reply(s)
        assert r["v"] == 1 and r["ok"] is False, line[:40]
        assert r["error"]["code"] == code, (line[:40], r)  # type: ignore[index]
        if code == "too-large":
            break
        # After a bad line the connection still works.
        s.sendall(control.encode({"op": "status"}))
        assert read_reply(s)["ok"] is True

    # A 100 MiB line without a newline: refused after 64 KiB, connection dropped.
    big = daemon.connect()
    sent = 0
    chunk = b"x" * (1 << 20)
    try:
        while sent < 100 << 20:
            big.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert sent < 100 << 20, "the daemon read a 100 MiB line"
    # While all of that is open, the daemon serves a session as usual.
    t = time.monotonic()
    p = gated(["/bin/true"])
    r = daemon.request("start", pid=p.pid, kind="logind")
    release(p)
    p.wait()
    assert daemon.request("end", session=r["session"], linger=10)["end_reason"] == "cgroup-empty"
    assert time.monotonic() - t < 10 * TIMEOUT_FACTOR
    assert daemon.proc.poll() is None  # type: ignore[union-attr]
    for c in [*silent, half, s, big]:
        c.close()


def test_silent_client_is_dropped_after_the_idle_timeout(daemon: Daemon) -> None:
    s = daemon.connect()
    s.settimeout(control.IDLE_TIMEOUT + 10)
    t = time.monotonic()
    assert s.recv(1) == b""  # closed by the daemon
    assert control.IDLE_TIMEOUT - 0.5 <= time.monotonic() - t <= control.IDLE_TIMEOUT + 5
    s.close()
