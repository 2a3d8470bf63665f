"""The daemon's faults and bad input: killed with SIGKILL mid-session and
started again (the session continues in the same file, the gap stated
exactly), a full disk, a second daemon, a stale socket, no root, a bad
config, `status` without a daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonctl import Daemon, gated, make_daemon, release
from krec import NOBODY, TIMEOUT_FACTOR, export, info, run_cli

from replay.reader import open_session

pytestmark = pytest.mark.kernel

# Works until STOP exists: each step notes its monotonic time, execs a
# program with the step number and opens a file, then notes the time again.
WORKLOAD = """
import os, subprocess, sys, time
log, stop = sys.argv[1], sys.argv[2]
with open(log, "w") as f:
    i = 0
    while not os.path.exists(stop):
        t0 = time.monotonic_ns()
        subprocess.run(["/bin/true", f"step-{i}"])
        open(f"/etc/hostname").close()
        t1 = time.monotonic_ns()
        f.write(f"{i} {t0} {t1}\\n")
        f.flush()
        i += 1
        time.sleep(0.02)
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = make_daemon(tmp_path)
    try:
        yield d
    finally:
        d.cleanup()


def test_sigkill_mid_session_continues_the_file_with_the_gap_stated(
        daemon: Daemon, tmp_path: Path) -> None:
    daemon.start()
    script = tmp_path / "work.py"
    script.write_text(WORKLOAD)
    log, stop = tmp_path / "steps", tmp_path / "stop"
    p = gated([sys.executable, str(script), str(log), str(stop)])
    r = daemon.request("start", pid=p.pid, kind="logind", login={"user": "alice"})
    release(p)
    time.sleep(2.0)
    first_pid = daemon.proc.pid  # type: ignore[union-attr]
    assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    assert os.path.exists(daemon.socket)  # stale, taken over below
    time.sleep(1.0)
    daemon.start()  # compiles again while the workload goes on, unrecorded
    assert daemon.events("stale-socket-removed")
    resumed = daemon.events("session-resumed")
    assert [e["session"] for e in resumed] == [r["session"]]
    assert [s["session"] for s in daemon.request("list")["sessions"]] == [r["session"]]
    time.sleep(1.5)
    stop.touch()
    assert p.wait(30) == 0
    done = daemon.wait_ended(r["session"])
    assert done["end_reason"] == "cgroup-empty"

    # One file, one session, read to its end.
    path = Path(r["file"])
    summary = info(path)
    assert summary["complete"] and summary["damage"] is None
    assert summary["end_reason"] == "cgroup-empty"
    with open_session(path) as s:
        evs = list(s.records())
        h, gaps = s.header, s.gaps
    assert h["recorder"]["pid"] == first_pid and h["session_id"] == r["session"]
    assert len(gaps) == 1 and gaps[0]["reason"] == "restart"
    assert summary["gaps"] == [{k: v for k, v in gaps[0].items() if k != "k"}]
    gap_from, gap_to = gaps[0]["ts"], gaps[0]["end"]
    assert gap_to - gap_from > 1e9  # the kill, a second, the compile

    # Every step done outside the gap is in the file; the steps inside it are
    # the only ones that may be missing, and some are.
    origin = h["clock"]["mono_ns"]
    steps = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    events, _ = export(path)
    seen = {e["argv"][1] for e in events if e["type"] == "exec" and e["argv"][0] == "/bin/true"}
    missing_inside = 0
    for i, t0, t1 in steps:
        inside = t1 - origin >= gap_from and t0 - origin <= gap_to
        if not inside:
            assert f"step-{i}" in seen, f"step {i} outside the gap is missing"
        elif f"step-{i}" not in seen:
            missing_inside += 1
    assert missing_inside > 0
    # The gap ends once the new daemon's registration of the session has
    # returned; the kernel makes it visible during that call (a map-of-maps
    # update waits for an RCU grace period), so its last moments may hold
    # events. Nothing before that.
    in_gap = [e for e in evs if gap_from < e.ts < gap_to]
    assert all(gap_to - e.ts < 1e9 for e in in_gap), "events recorded early in the gap"
    # The session's end is its own: the workload's exit, last.
    exits = [e for e in events if e["type"] == "exit" and e["pid"] == p.pid]
    assert len(exits) == 1 and exits[0]["exit_code"] == 0
    # The trailer counts the whole session, both segments.
    by_type: dict[str, int] = {}
    for e in events:
        by_type[e["type"]] = by_type.get(e["type"], 0) + 1
    assert {k: v for k, v in summary["counts"].items() if v} == by_type

    # info, replay and the HTML report state the gap.
    status, out, _ = run_cli("info", path)
    assert status == 0 and "gap " in out and "no daemon was recording" in out
    status, out, err = run_cli("replay", path)
    gap_lines = [line for line in out.splitlines() if "!!! gap from +" in line]
    assert status == 0 and len(gap_lines) == 1 and "no daemon was recording" in gap_lines[0]
    html = tmp_path / "r.html"
    status, _, err = run_cli("html", path, "-o", html)
    assert status == 0, err
    assert "no daemon was recording" in html.read_text()


def test_sigterm_leaves_sessions_for_the_next_daemon(daemon: Daemon) -> None:
    daemon.start()
    p = subprocess.Popen(["/bin/sleep", "60"])
    try:
        r = daemon.request("start", pid=p.pid, kind="logind")
        assert daemon.stop() == 0
        assert daemon.events("stopped")[-1]["sessions_left"] == 1
        assert not os.path.exists(daemon.socket)
        daemon.start()
        assert [s["session"] for s in daemon.request("list")["sessions"]] == [r["session"]]
    finally:
        p.kill()
        p.wait()
    done = daemon.wait_ended(r["session"])
    assert done["end_reason"] == "cgroup-empty"
    assert info(r["file"])["complete"]


def test_second_daemon_is_refused_naming_the_first(daemon: Daemon) -> None:
    daemon.start()
    r = subprocess.run([sys.executable, "-m", "sessrec", "daemon", "--config",
                        str(daemon.config)], capture_output=True, text=True,
                       timeout=120 * TIMEOUT_FACTOR)
    assert r.returncode == 1
    assert r.stderr == (f"sessrec: error: another sessrec daemon is running "
                        f"(pid {daemon.proc.pid}) on {daemon.socket}\n")  # type: ignore[union-attr]
    assert daemon.request("status")["pid"] == daemon.proc.pid  # type: ignore[union-attr]


def test_no_root(daemon: Daemon) -> None:
    r = subprocess.run([*NOBODY, sys.executable, "-m", "sessrec", "daemon", "--config",
                        "/dev/null"],
                       capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 4
    assert r.stderr.startswith("sessrec: error: recording needs root") and \
        "sudo sessrec daemon" in r.stderr and r.stderr.count("\n") == 1


def test_config_error_names_file_line_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('enabled = true\n\nring_size = "3MiB"\n')
    status, out, err = run_cli("daemon", "--config", cfg)
    assert status == 2 and out == ""
    assert err == (f"sessrec: error: {cfg}:3: key 'ring_size': 3145728 bytes is not a power "
                   "of two of 4 KiB pages (e.g. \"32MiB\")\n")


def test_status_without_a_daemon(tmp_path: Path) -> None:
    sock = tmp_path / "control.sock"
    status, out, err = run_cli("status", "--socket", sock)
    assert status == 3 and out == ""
    assert err == f"sessrec: error: sessrec daemon is not running (no socket at {sock})\n"


FLOOD = """
import os, sys, time
d, phase1, freed = sys.argv[1], sys.argv[2], sys.argv[3]
for i in range(60000):
    try:
        os.open(f"{d}/{os.urandom(24).hex()}", os.O_RDONLY)
    except FileNotFoundError:
        pass
open(phase1, "w").close()
while not os.path.exists(freed):
    time.sleep(0.05)
for i in range(5):
    open("/etc/hostname").close()
"""


def test_full_disk_drops_counts_and_recovers(daemon: Daemon, tmp_path: Path) -> None:
    """Session A writes to a 2 MiB tmpfs that fills; B, writing elsewhere,
    goes on; space returns, and A's file states the gap and what it dropped."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(small)],
                   check=True)
    try:
        filler = small / "filler"
        filler.write_bytes(b"\0" * ((2 << 20) - 96 * 1024))
        daemon.start()
        script = tmp_path / "flood.py"
        script.write_text(FLOOD)
        phase1, freed = tmp_path / "phase1", tmp_path / "freed"
        a = gated([sys.executable, str(script), str(tmp_path / "none"), str(phase1), str(freed)])
        ra = daemon.request("start", pid=a.pid, kind="logind", output=str(small / "a.srec"))
        release(a)
        deadline = time.monotonic() + 120
        while not (phase1.exists() and daemon.events("output-error")):
            assert time.monotonic() < deadline, daemon.log_path.read_text()
            time.sleep(0.1)
        # The other session is served while A cannot write.
        b = gated(["/bin/cat", "/etc/hostname"], stdout=subprocess.DEVNULL)
        rb = daemon.request("start", pid=b.pid, kind="logind", output=str(tmp_path / "b.srec"))
        release(b)
        assert b.wait(30) == 0
        done_b = daemon.wait_ended(rb["session"])
        assert info(rb["file"])["complete"] and done_b["counts"]["exec"] == 1
        status = daemon.request("status")
        assert status["dropped_total"] > 0
        time.sleep(1.5)  # A's buffered records meet the full disk too
        filler.unlink()
        freed.touch()
        assert a.wait(60) == 0
        done_a = daemon.wait_ended(ra["session"])
        assert daemon.events("output-recovered")
        errors = daemon.events("output-error")
        assert errors[0]["session"] == ra["session"] and "No space left" in errors[0]["error"]

        summary = info(ra["file"])
        assert summary["complete"] and done_a["end_reason"] == "cgroup-empty"
        # One gap per stretch that could not be written (a small chunk may fit
        # between two that do not), each with what it dropped.
        gaps = summary["gaps"]
        assert gaps and all(g["reason"] == "output-error" for g in gaps)
        assert all("No space left on device" in g["detail"] for g in gaps)
        dropped: dict[str, int] = {}
        for g in gaps:
            for k, v in g["dropped"].items():
                dropped[k] = dropped.get(k, 0) + v
        assert dropped["open"] > 0
        with open_session(ra["file"]) as s:
            for _ in s.records():
                pass
            trailer = s.trailer
        assert trailer is not None and trailer["dropped"] == dropped
        events, _ = export(ra["file"])
        by_type: dict[str, int] = {}
        for e in events:
            by_type[e["type"]] = by_type.get(e["type"], 0) + 1
        # What was written is counted; what was dropped is counted apart.
        assert {k: v for k, v in summary["counts"].items() if v} == by_type
        # After the space came back, the session's last events are there.
        tail = [e for e in events if e["type"] == "open" and e["path"] == "/etc/hostname"]
        assert len(tail) == 5
        assert [e["pid"] for e in events if e["type"] == "exit"][-1] == a.pid
    finally:
        daemon.stop()
        if subprocess.run(["umount", str(small)], check=False).returncode:
            subprocess.run(["umount", "-l", str(small)], check=False)


def test_ready_is_sent_to_the_notify_socket(tmp_path: Path) -> None:
    """Type=notify without systemd here: the test is the notify socket."""
    import socket

    d = make_daemon(tmp_path)
    addr = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(addr)
        s.settimeout(180)
        os.environ["NOTIFY_SOCKET"] = addr
        try:
            d.start(wait=False)
        finally:
            del os.environ["NOTIFY_SOCKET"]
        try:
            msg = s.recv(4096).decode()
            assert d.proc is not None
            assert msg == f"READY=1\nMAINPID={d.proc.pid}\nSTATUS=serving"
            # Ready means serving.
            assert d.request("status")["pid"] == d.proc.pid
            d.stop()
            assert s.recv(4096) == b"STOPPING=1"
        finally:
            d.cleanup()


def test_the_unit_file_verifies() -> None:
    unit = Path(__file__).resolve().parents[2] / "systemd" / "sessrec.service"
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = unit.read_text()
    for directive in ("Type=notify", "Restart=on-failure", "RuntimeDirectoryPreserve=yes",
                      "ExecStart=/usr/local/bin/sessrec daemon"):
        assert f"\n{directive}" in text
