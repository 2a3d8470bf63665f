"""fork, exec and exit: the process tree, exit codes and signals, and the
exit status of `sessrec record` itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from krec import PYTHON, Event, Recorder

pytestmark = pytest.mark.kernel

SH = "/bin/sh"
REAL_SH = os.path.realpath(SH)  # an exec's path is the file the kernel ran


def lifecycle(events: list[Event], pid: int) -> list[tuple[object, ...]]:
    """The fork/exec/exit events of one process, in order, in short."""
    out: list[tuple[object, ...]] = []
    for e in events:
        if e["pid"] != pid:
            continue
        if e["type"] == "fork":
            out.append(("fork", e["ppid"], e["child_pid"]))
        elif e["type"] == "exec":
            out.append(("exec", e["ppid"], e["comm"], e["path"], e["argv"], e["return_code"]))
        elif e["type"] == "exit":
            out.append(("exit", e["ppid"], e["exit_code"], e["signal"], e["core_dumped"]))
    return out


def test_three_level_tree(record: Recorder) -> None:
    inner = "/bin/sleep 0.1; /bin/true; exit 0"
    outer = f"{SH} -c '{inner}'; exit 0"
    status, events, _ = record([SH, "-c", outer])

    assert status == 0
    procs = [e for e in events if e["type"] in ("fork", "exec", "exit")]
    leader = procs[0]["pid"]
    forks = {e["pid"]: [] for e in procs}  # parent -> children, in order
    for e in procs:
        if e["type"] == "fork":
            forks[e["pid"]].append(e["child_pid"])
    (mid,) = forks[leader]
    sleep, true = forks[mid]
    assert sorted(forks) == sorted([leader, mid, sleep, true])

    assert lifecycle(events, leader) == [
        ("exec", os.getpid(), "sh", REAL_SH, [SH, "-c", outer], 0),
        ("fork", os.getpid(), mid),
        ("exit", os.getpid(), 0, None, False),
    ]
    assert lifecycle(events, mid) == [
        ("exec", leader, "sh", REAL_SH, [SH, "-c", inner], 0),
        ("fork", leader, sleep),
        ("fork", leader, true),
        ("exit", leader, 0, None, False),
    ]
    assert lifecycle(events, sleep) == [
        ("exec", mid, "sleep", os.path.realpath("/bin/sleep"), ["/bin/sleep", "0.1"], 0),
        ("exit", mid, 0, None, False),
    ]
    assert lifecycle(events, true) == [
        ("exec", mid, "true", os.path.realpath("/bin/true"), ["/bin/true"], 0),
        ("exit", mid, 0, None, False),
    ]
    # A child's first event comes after its parent's fork event.
    position = {id(e): i for i, e in enumerate(events)}
    for e in procs:
        if e["type"] == "fork":
            first = next(x for x in events if x["pid"] == e["child_pid"])
            assert position[id(e)] < position[id(first)]
    # Single-threaded processes: every event is the thread-group leader's.
    assert all(e["tid"] == e["pid"] for e in procs)


def test_exit_codes_and_signals(record: Recorder) -> None:
    children = ["exit 3", "kill -TERM $$", "kill -KILL $$"]
    script = "; ".join(f"{SH} -c '{c}'" for c in children) + "; exit 3"
    status, events, info = record([SH, "-c", script])

    assert status == 3
    assert info["exit_status"] == 3
    assert info["end_reason"] == "cgroup-empty"
    argv_of = {e["pid"]: e["argv"] for e in events if e["type"] == "exec"}
    exits = {tuple(argv_of[e["pid"]]): (e["exit_code"], e["signal"], e["core_dumped"])
             for e in events if e["type"] == "exit"}
    assert exits == {
        (SH, "-c", script): (3, None, False),
        (SH, "-c", "exit 3"): (3, None, False),
        (SH, "-c", "kill -TERM $$"): (None, 15, False),
        (SH, "-c", "kill -KILL $$"): (None, 9, False),
    }


def test_leader_killed_by_a_signal(record: Recorder) -> None:
    status, events, info = record([SH, "-c", "kill -KILL $$"])

    assert status == 128 + 9
    assert info["exit_status"] == 128 + 9
    assert [(e["type"], e.get("signal"), e.get("exit_code")) for e in events
            if e["type"] in ("exec", "exit")] == [("exec", None, None), ("exit", 9, None)]


THREADS = """
import os, subprocess, sys, threading
d = sys.argv[1]
def work(i):
    with open(os.path.join(d, f"thread-{i}"), "w"):
        pass
threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
subprocess.run(["/bin/true"], check=True)
last = threading.Thread(target=os._exit, args=(7,))  # exit_group from a thread
last.start()
last.join()
"""


def test_threads_are_not_processes(record: Recorder, tmp_path: Path) -> None:
    script = tmp_path / "threads.py"
    script.write_text(THREADS)
    d = tmp_path.resolve()
    status, events, _ = record([PYTHON, str(script), str(d)])

    assert status == 7
    python = events[0]["pid"]
    forks = [e for e in events if e["type"] == "fork"]
    (true,) = [e["pid"] for e in events if e["type"] == "exec"
               and e["path"] == os.path.realpath("/bin/true")]
    assert [(e["pid"], e["child_pid"]) for e in forks] == [(python, true)]
    opens = [e for e in events if e["type"] == "open" and e["path"].startswith(f"{d}/thread-")]
    assert sorted(e["path"] for e in opens) == [f"{d}/thread-{i}" for i in range(3)]
    assert all(e["pid"] == python for e in opens)
    assert len({e["tid"] for e in opens} | {python}) == 4  # three threads, none the main one
    exits = [(e["pid"], e["exit_code"], e["signal"]) for e in events if e["type"] == "exit"]
    assert exits == [(true, 0, None), (python, 7, None)]


IDENTITY = """
import ctypes, os, sys, threading
d = sys.argv[1]
def probe(tag):
    # It fails (ENOENT, or EACCES as nobody): recorded all the same, named
    # with what the process knows of itself.
    try:
        open(f"{d}/{tag}-{os.getpid()}-{threading.get_native_id()}-{os.getppid()}-{os.getuid()}")
    except OSError:
        pass
probe("start")
ctypes.CDLL(None).prctl(15, b"renamed-by-prctl", 0, 0, 0)  # PR_SET_NAME: 15 bytes kept
probe("renamed")
t = threading.Thread(target=probe, args=("thread",))
t.start()
t.join()
os.setresuid(65534, 65534, 65534)
probe("nobody")
"""


def test_every_header_field_is_what_the_process_knows(record: Recorder, tmp_path: Path) -> None:
    """pid, tid, ppid, uid and comm of each event against the values the
    process itself reports, after a prctl rename, in a thread and after
    setuid: the programs read them from the task, not through helpers."""
    script = tmp_path / "identity.py"
    script.write_text(IDENTITY)
    d = tmp_path / "missing"
    status, events, _ = record([PYTHON, str(script), str(d)])

    assert status == 0
    probes = {}
    for e in events:
        if e["type"] == "open" and e["path"].startswith(f"{d}/"):
            tag, pid, tid, ppid, uid = e["path"][len(f"{d}/"):].split("-")
            probes[tag] = (e["pid"], e["tid"], e["ppid"], e["uid"], e["comm"],
                           int(pid), int(tid), int(ppid), int(uid))
    assert sorted(probes) == ["nobody", "renamed", "start", "thread"]
    for tag, (pid, tid, ppid, uid, _comm, *known) in probes.items():
        assert [pid, tid, ppid, uid] == known, tag
    python = probes["start"][0]
    assert probes["start"][4].startswith("python")
    assert probes["start"][1] == python and probes["thread"][1] != python
    assert probes["renamed"][4] == "renamed-by-prct"  # TASK_COMM_LEN is 16 with the NUL
    assert probes["thread"][4] == "renamed-by-prct"  # a new thread inherits the name
    assert probes["nobody"][3] == 65534
