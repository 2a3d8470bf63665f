"""What a session is: every process of the command's tree and nothing else,
until the last of them has exited (or only the leader, with --no-wait);
bursts without loss; losses counted and shown when the ring is too small."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from krec import TIMEOUT_FACTOR, Recorder

from recorder.cgroup import find_cgroup2

pytestmark = pytest.mark.kernel

SH = "/bin/sh"


def test_burst_of_300_parallel_processes(record: Recorder, progs: dict[str, Path]) -> None:
    nop = str(progs["nop"])
    status, events, info = record([str(progs["burst"]), "300", nop])

    assert status == 0
    burst = events[0]["pid"]
    forks = [e for e in events if e["type"] == "fork"]
    children = {e["child_pid"] for e in forks}
    assert len(children) == 300
    assert {e["pid"] for e in forks} == {burst}
    execs = [e for e in events if e["type"] == "exec"]
    assert len(execs) == 301
    assert {e["pid"] for e in execs[1:]} == children
    assert all(e["path"] == nop and e["argv"] == [nop] and e["return_code"] == 0
               and e["ppid"] == burst for e in execs[1:])
    exits = [e for e in events if e["type"] == "exit"]
    assert {e["pid"] for e in exits} == children | {burst}
    assert len(exits) == 301
    assert all(e["exit_code"] == 0 for e in exits)
    assert {k: v for k, v in info["counts"].items() if v} == {"fork": 300, "exec": 301,
                                                               "exit": 301}
    assert set(info["lost"].values()) == {0}


def test_lost_events_are_counted_and_shown(
    record: Recorder, progs: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "opened"
    target.write_text("x")
    n = 20_000
    rec = record([str(progs["open_many"]), str(n), str(target)], "--ring-pages", "1")

    assert rec.status == 0
    lost, counts = rec.info["lost"], rec.info["counts"]
    assert lost["open"] > 0
    assert "events lost" in rec.stderr
    assert f"open {lost['open']}" in rec.stderr
    # Each open is either in the file or counted as lost: the program (static)
    # opens nothing else.
    assert counts["open"] + lost["open"] == n
    assert counts["exec"] + lost["exec"] == 1
    assert counts["exit"] + lost["exit"] == 1
    opens = rec.of_type("open")
    assert len(opens) == counts["open"]
    assert {(e["requested_path"], e["return_code"]) for e in opens} == {(str(target), 3)}


# The orphan of the no-wait test sleeps longer: under TCG in the kernel matrix,
# record can take over a second to finish its file after the leader exits.
ORPHAN = "(/bin/sleep {secs}; echo done > {marker}) & exit 0"


def test_orphan_is_waited_for(record: Recorder, tmp_path: Path) -> None:
    marker = tmp_path.resolve() / "orphan-was-here"
    started = time.monotonic()
    rec = record([SH, "-c", ORPHAN.format(secs=1, marker=marker)])
    status, events, info = rec

    assert time.monotonic() - started >= 1.0
    assert status == 0
    assert info["end_reason"] == "cgroup-empty"
    assert marker.read_text() == "done\n"
    leader = events[0]["pid"]
    (orphan,) = [e["child_pid"] for e in events if e["type"] == "fork" and e["pid"] == leader]
    leader_exit = next(i for i, e in enumerate(events)
                       if e["type"] == "exit" and e["pid"] == leader)
    opens = [(i, e) for i, e in enumerate(events)
             if e["type"] == "open" and e["path"] == str(marker)]
    assert len(opens) == 1
    i, opened = opens[0]
    assert i > leader_exit
    # The shell opens the file as fd 3, then moves it onto stdout.
    assert (opened["pid"], opened["return_code"]) == (orphan, 3)
    assert opened["flag_names"] == ["O_WRONLY", "O_CREAT", "O_TRUNC"]
    assert opened["ppid"] != leader  # reparented when the leader exited
    assert [e["pid"] for e in events if e["type"] == "exit"][-1] == orphan
    # It said once what it waits for, and how to stop: the subshell, and its sleep.
    (notice,) = [line for line in rec.stderr.splitlines() if "the command exited" in line]
    assert notice.startswith("sessrec: the command exited; recording goes on while what it "
                             f"left runs: {orphan} {SH} -c (/bin/sleep 1;")
    assert " /bin/sleep 1" in notice and notice.endswith(". Ctrl-C stops the wait.")


def test_no_wait_stops_at_the_leader(record: Recorder, tmp_path: Path) -> None:
    marker = tmp_path.resolve() / "orphan-was-here"
    # The orphan must outlive the recorder's wind-down: over 4 s under TCG
    # on a loaded machine (the marker was there before record returned).
    secs = 4 * TIMEOUT_FACTOR
    rec = record([SH, "-c", ORPHAN.format(secs=secs, marker=marker)], "--no-wait")
    returned = time.monotonic()

    assert not marker.exists()  # the orphan is still sleeping
    assert rec.status == 0
    assert rec.info["end_reason"] == "leader-exited"
    assert "still running" in rec.stderr and "the command exited" not in rec.stderr
    assert not [e for e in rec.events if e["type"] == "open" and e["path"] == str(marker)]
    leader = rec.events[0]["pid"]
    assert [e["pid"] for e in rec.events if e["type"] == "exit"] == [leader]
    # It goes on, unrecorded, out of the removed session cgroup.
    while not marker.exists():
        assert time.monotonic() - returned < 2 * secs, "the orphan never finished"
        time.sleep(0.05)


def test_processes_outside_the_session_are_not_recorded(
    record: Recorder, tmp_path: Path
) -> None:
    outside = tmp_path.resolve() / "outside"
    inside = tmp_path.resolve() / "inside"
    # Started by the test, not by the session, and running during it.
    other = subprocess.Popen([SH, "-c", f"/bin/sleep 0.3; echo > {outside}"])
    try:
        status, events, _ = record([SH, "-c", f"/bin/sleep 1; echo > {inside}"])
    finally:
        other.wait(timeout=10)

    assert status == 0
    assert outside.exists() and inside.exists()
    assert [e["path"] for e in events if e["type"] == "open" and "side" in e["path"]] == [
        str(inside)]
    assert other.pid not in {e["pid"] for e in events}
    assert not [e for e in events if e["type"] == "exec" and e["argv"][1:] == ["0.3"]]
    assert os.getpid() not in {e["pid"] for e in events}


def test_sub_cgroups_of_the_session_are_recorded_and_removed(
    record: Recorder, tmp_path: Path
) -> None:
    """A command may make cgroups under its session cgroup and move into
    them: it is still recorded, and record removes the whole subtree."""
    mount = find_cgroup2()
    assert mount is not None
    marker = tmp_path.resolve() / "from-inner"
    script = (f"cg={mount.path}$(sed -n 's/^0:://p' /proc/self/cgroup); "
              "mkdir $cg/inner && echo $$ > $cg/inner/cgroup.procs && "
              f"echo > {marker}")
    rec = record([SH, "-c", script])

    assert rec.status == 0
    assert marker.exists()
    opens = [e for e in rec.of_type("open") if e["path"] == str(marker)]
    assert [e["pid"] for e in opens] == [rec.events[0]["pid"]]
    # (record_into has checked that the session cgroup, inner included, is gone.)
