"""`sessrec record -o FILE` through a daemon that cannot see FILE: the client
opens the file and passes it (SCM_RIGHTS) with its `start` request. The
daemon here runs in a mount namespace of its own, where an empty tmpfs
covers the client's output directory, as the unit's sandbox hides /home and
/tmp (systemd/sessrec.service). And what a client may not pass: a request
without the descriptor it announces, one that is not a writable, empty,
regular file, extra descriptors, too many of them; each gets an error reply,
and the daemon closes every one of them."""

from __future__ import annotations

import array
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonctl import Daemon, assert_same_session, make_daemon, read_reply
from krec import TIMEOUT_FACTOR, info, run_cli

from replay.reader import open_session
from sessrec import control
from sessrec.event import EventType

pytestmark = pytest.mark.kernel

SCRIPT = "/bin/cat /etc/hostname >/dev/null; /bin/ls / >/dev/null; exit 5"


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hidden")
    os.chmod(d, 0o700)
    return d


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, hidden: Path) -> Iterator[Daemon]:
    d = make_daemon(tmp_path_factory.mktemp("daemon"))
    try:
        yield d.start(hide=hidden)
    finally:
        d.cleanup()
    assert not [e for e in d.log() if e.get("level") == "error"], d.log_path.read_text()


def _record(daemon: Daemon, *args: str | os.PathLike[str]) -> tuple[int, str]:
    os.environ["SESSREC_CONTROL_SOCKET"] = daemon.socket
    try:
        status, _, err = run_cli("record", *args, "--", "/bin/sh", "-c", SCRIPT)
    finally:
        del os.environ["SESSREC_CONTROL_SOCKET"]
    return status, err


def test_record_into_a_directory_the_daemon_cannot_see(daemon: Daemon, hidden: Path,
                                                       tmp_path: Path) -> None:
    assert daemon.proc is not None
    via = hidden / "via.srec"
    status, err = _record(daemon, "-o", via)
    assert status == 5, err
    # The daemon wrote it, and saw none of it: its hidden is an empty tmpfs.
    assert os.listdir(f"/proc/{daemon.proc.pid}/root{hidden}") == []
    assert stat.S_IMODE(via.stat().st_mode) == 0o600
    starts = daemon.events("session-start")
    assert starts[-1]["file"] == str(via) and starts[-1]["kind"] == "record"
    alone = tmp_path / "alone.srec"
    status, _, err = run_cli("record", "--no-daemon", "-o", alone, "--", "/bin/sh", "-c",
                             SCRIPT)
    assert status == 5, err
    assert_same_session(via, alone, daemon.proc.pid)

    # --force as without the daemon: refused without it, overwritten with it.
    size = via.stat().st_size
    status, err = _record(daemon, "-o", via)
    assert status != 0 and "already exists; use --force" in err
    assert via.stat().st_size == size
    status, err = _record(daemon, "-f", "-o", via)
    assert status == 5, err
    again = info(via)
    assert again["complete"] and again["session_id"] == daemon.events("session-start")[-1][
        "session"]


def _send(s: socket.socket, data: bytes, fds: list[int]) -> dict[str, Any]:
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
    s.sendmsg([data], anc if fds else [])
    return read_reply(s)


def _settled(daemon: Daemon) -> list[tuple[int, int]]:
    """The daemon's descriptors once its spare sessions are made."""
    before = daemon.fds()
    for _ in range(100):
        time.sleep(0.1)
        now = daemon.fds()
        if now == before:
            return now
        before = now
    raise AssertionError("the daemon's descriptors did not settle")


def test_bad_descriptors_are_refused_and_closed(daemon: Daemon, tmp_path: Path) -> None:
    assert daemon.proc is not None
    sleeper = subprocess.Popen(["/bin/sleep", "60"])
    start = {"op": "start", "pid": sleeper.pid, "kind": "record", "command": ["x"],
             "output": str(tmp_path / "x.srec"), "output_fd": True}
    full = tmp_path / "full"
    full.write_bytes(b"something")
    r, w = os.pipe()
    mine = {
        "dir": os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY),
        "read-only": os.open(full, os.O_RDONLY),
        "append": os.open(tmp_path / "a", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
        "full": os.open(full, os.O_WRONLY),
        "empty": os.open(tmp_path / "e", os.O_WRONLY | os.O_CREAT, 0o600),
        "pipe": w,
    }
    cases: list[tuple[dict[str, object] | bytes, list[int], str]] = [
        (start, [], "carries 0 descriptor(s) (SCM_RIGHTS) and needs 1"),
        (start, [mine["pipe"]], "is not a regular file"),
        (start, [mine["dir"]], "is not a regular file"),
        (start, [mine["read-only"]], "is not open for writing"),
        (start, [mine["append"]], "is open for appending"),
        (start, [mine["full"]], "is not empty (9 bytes)"),
        (start, [mine["empty"], mine["empty"]], "carries 2 descriptor(s)"),
        (start, [mine["empty"]] * 12, "too much ancillary data"),
        ({**start, "output_fd": False}, [mine["empty"]], "carries 1 descriptor(s) (SCM_RIGHTS) "
         "and needs 0"),
        ({**start, "kind": "pam"}, [mine["empty"]], "output_fd is for a record session"),
        ({"op": "status"}, [mine["empty"]], "carries 1 descriptor(s)"),
        (b"garbage\n", [mine["empty"]], "not a JSON object"),
    ]
    ours = {(st.st_dev, st.st_ino) for st in map(os.fstat, [*mine.values(), r])}
    try:
        before = _settled(daemon)
        with daemon.connect() as s:
            for req, fds, words in cases:
                data = req if isinstance(req, bytes) else control.encode(req)
                reply = _send(s, data, fds)
                err = reply.get("error")
                assert reply["ok"] is False and isinstance(err, dict), (words, reply)
                assert words in err["message"], (words, reply)
                assert not ours & set(daemon.fds()), f"{words}: a descriptor was kept"
            # The connection still serves, and the process was never moved.
            assert _send(s, control.encode({"op": "status"}), [])["ok"] is True
        # Descriptors without the end of their line: a few, then the door.
        with daemon.connect() as s:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    array.array("i", [mine["empty"]] * 2).tobytes())]
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(3):
                    s.sendmsg([b"{"], anc)
            with s.makefile("rb") as f:
                reply = json.loads(f.readline())
            assert reply["error"]["code"] == "too-large", reply
            assert "descriptors came before a request line ended" in reply["error"]["message"]
            assert s.recv(1) == b""  # and the connection is closed
        assert "sessrec-test" not in Path(f"/proc/{sleeper.pid}/cgroup").read_text()
        assert daemon.request("list")["sessions"] == []
        # No descriptor leaked: the daemon holds what it held before.
        _wait_for(lambda: daemon.fds() == before, "the daemon's descriptors to be as before",
                  timeout=10)
        assert daemon.proc.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        for fd in [*mine.values(), r]:
            os.close(fd)


# Runs until STOP exists, then exits 7.
WORK = 'while [ ! -e "$0" ]; do /bin/true step; sleep 0.05; done; exit 7'


def _record_in_background(d: Daemon, out: Path, stop: Path) -> subprocess.Popen[str]:
    client = subprocess.Popen(
        [sys.executable, "-m", "sessrec", "record", "-o", str(out), "--", "/bin/sh", "-c",
         WORK, str(stop)],
        env={**os.environ, "SESSREC_CONTROL_SOCKET": d.socket}, stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: bool(d.request("list")["sessions"]), "the session to start")
    return client


def _end(client: subprocess.Popen[str] | None) -> None:
    if client is not None and client.poll() is None:
        client.kill()
    if client is not None:
        client.wait()


def _wait_for(ok: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize("hide", [True, False], ids=["path-hidden", "path-seen"])
def test_after_a_sigkill_the_client_hands_its_file_to_the_next_daemon(
        tmp_path: Path, hide: bool) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    d = make_daemon(tmp_path)
    out, stop = hidden / "r.srec", tmp_path / "stop"
    client = None
    try:
        d.start(hide=hidden if hide else None)
        client = _record_in_background(d, out, stop)
        sid = d.request("list")["sessions"][0]["session"]
        time.sleep(2.5)  # the daemon writes a session's file once a second
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        d.start(hide=hidden if hide else None)
        # Hidden: the new daemon cannot open the file and waits for its
        # client; seen: it continues the file and its client comes back.
        waiting = [e["session"] for e in d.events("resume-waiting")]
        assert waiting == ([sid] if hide else [])
        _wait_for(lambda: bool(d.events("client-back")), "the client to come back")
        assert [e["session"] for e in d.events("session-resumed")] == [sid]
        time.sleep(0.5)
        stop.touch()
        assert client.wait(60 * TIMEOUT_FACTOR) == 7
        assert client.stderr is not None
        err = client.stderr.read()
        assert "the sessrec daemon went away" in err and "took the session back" in err
        summary = info(out)
        assert summary["complete"] and summary["exit_status"] == 7
        assert summary["end_reason"] == "cgroup-empty"
        assert [g["reason"] for g in summary["gaps"]] == ["restart"]
        gap = summary["gaps"][0]
        with open_session(out) as s:
            execs = [ev.ts for ev in s.records() if ev.type == EventType.EXEC]
        # Both sides of the gap are in the one file.
        assert [t for t in execs if t <= gap["ts"]] and [t for t in execs if t > gap["end"]]
        assert not [e for e in d.log() if e.get("level") == "error"]
    finally:
        stop.touch()
        _end(client)
        d.cleanup()


def test_a_passed_file_whose_client_is_gone_is_given_up_clearly(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    d = make_daemon(tmp_path)
    stop = tmp_path / "stop"
    client = None
    try:
        d.start(hide=hidden)
        out = hidden / "r.srec"
        client = _record_in_background(d, out, stop)
        sid = d.request("list")["sessions"][0]["session"]
        time.sleep(0.5)
        assert d.stop(signal.SIGKILL) == -signal.SIGKILL
        client.kill()
        client.wait()
        d.start(hide=hidden)
        failed = d.events("resume-failed")
        assert [e["session"] for e in failed] == [sid], d.log_path.read_text()
        assert "its client (`sessrec record`, pid" in failed[0]["error"]
        assert "is gone" in failed[0]["error"] and "cannot open" in failed[0]["error"]
        assert failed[0]["left_running"]  # the workload goes on, unrecorded
        assert d.request("list")["sessions"] == [] and d.proc is not None
        assert d.proc.poll() is None
        summary = info(out)
        assert not summary["complete"] and summary["session_id"] == sid
    finally:
        stop.touch()
        _end(client)
        d.cleanup()
