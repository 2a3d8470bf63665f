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
from daemonctl import Daemon, gated, make_daemon, release

from replay.reader import open_session
from sessrec import linux
from sessrec.event import EventType, Exit

pytestmark = pytest.mark.kernel
N = 1000


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = make_daemon(tmp_path, ring="256KiB")
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
        assert linux.decode_exit(evs[0].exit_code_raw).signal == signal.SIGTERM
        assert not Path(r["cgroup"]).exists()


def test_a_flooding_session_costs_the_others_nothing(tmp_path: Path,
                                                    progs: dict[str, Path]) -> None:
    """Each session has its own ring: one opening as fast as it can fills
    its own, and 19 others at a steady pace lose nothing (each exactly its
    opens). The flooder's own losses, if any, are counted in its file."""
    d = make_daemon(tmp_path, ring="256KiB")
    try:
        d.start()
        target = "/etc/hostname"
        flood = gated([str(progs["open_many"]), "3000000", target])
        paced = [gated([str(progs["open_paced"]), "4000", "1000", target]) for _ in range(19)]
        started = [d.request("start", pid=p.pid, kind="pam") for p in [flood, *paced]]
        for p in [flood, *paced]:
            release(p)
        for p in [flood, *paced]:
            assert p.wait(300) == 0
        files = [d.wait_ended(r["session"])["file"] for r in started]
    finally:
        d.cleanup()
    for i, path in enumerate(files):
        with open_session(path) as s:
            opens = sum(1 for e in s.records()
                        if e.type == EventType.OPEN and e.requested_path == target.encode())
            trailer = s.trailer
        assert trailer is not None
        lost = sum(trailer["lost"].values())
        if i == 0:
            assert opens + trailer["lost"].get("open", 0) == 3000000
        else:
            assert (opens, lost) == (4000, 0), f"paced session {i} lost events"
