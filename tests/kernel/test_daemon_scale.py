"""1,000 concurrent sessions on one daemon: started, listed, ended by their
processes' exits, and every file checked. (Timings are bench/daemon_bench.py's
job, not this test's.)"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonctl import Daemon, make_daemon

from replay.reader import open_session
from sessrec import format as fmt
from sessrec.event import EventType, Exit

pytestmark = pytest.mark.kernel
N = 1000


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = make_daemon(tmp_path)
    try:
        yield d.start()
    finally:
        d.cleanup()


def test_a_thousand_sessions(daemon: Daemon) -> None:
    procs = [subprocess.Popen(["/bin/sleep", "600"]) for _ in range(N)]
    try:
        started = {}
        for p in procs:
            r = daemon.request("start", pid=p.pid, kind="pam", login={"user": f"u{p.pid}"})
            assert r["recorded"]
            started[p.pid] = r
        status = daemon.request("status")
        assert status["sessions_active"] == N and status["sessions_total"] == N
        listed = daemon.request("list")["sessions"]
        assert {s["pid"] for s in listed} == set(started)
        assert len({s["file"] for s in listed}) == N
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(60) == -signal.SIGTERM
        deadline = time.monotonic() + 300
        while daemon.request("status")["sessions_active"]:
            assert time.monotonic() < deadline, "sessions did not end"
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    ends = {e["session"]: e for e in daemon.events("session-end")}
    assert len(ends) == N
    for pid, r in started.items():
        assert ends[r["session"]]["end_reason"] == "cgroup-empty"
        with open_session(r["file"]) as s:
            evs = list(s.records())
            assert s.trailer is not None and s.damage is None
            assert s.header["leader_pid"] == pid and s.header["login"] == {"user": f"u{pid}"}
            assert s.trailer["end_reason"] == "cgroup-empty"
            assert s.trailer["lost"] == {}
        # The one event each: sleep killed by SIGTERM.
        assert [(e.type, e.pid) for e in evs] == [(EventType.EXIT, pid)]
        assert isinstance(evs[0], Exit)
        assert fmt.decode_exit(evs[0].exit_code_raw).signal == signal.SIGTERM
        assert not Path(r["cgroup"]).exists()
