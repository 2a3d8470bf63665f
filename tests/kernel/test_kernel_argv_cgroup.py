"""Complete argv (up to what the kernel accepts, in continuation records
joined when read) and no escape by cgroup move (a session process stays in
its session wherever it moves; the move is recorded and flagged)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from krec import Recorder, run_cli

from recorder.cgroup import cgroup2_mount

pytestmark = pytest.mark.kernel

ARG_MAX_LEN = 128 * 1024 - 1  # MAX_ARG_STRLEN - 1: the longest argument
E2BIG = 7


def expected_argv(prog: str, total: int) -> list[str]:
    """The argv progs/exec_big.c builds for `total` bytes (NULs included)."""
    argv = [prog]
    left = total - len(prog) - 1
    i = 0
    while left > 0:
        n = min(left - 1, ARG_MAX_LEN)
        blocks = [chr(97 + (i * 7 + j) % 26) * 4096 for j in range(n // 4096 + 1)]
        argv.append("".join(blocks)[:n])
        left -= n + 1
        i += 1
    return argv


def largest_argv(exec_big: Path, prog: Path) -> int:
    """The most argv bytes the kernel accepts here (with an empty
    environment), found by trying, unrecorded."""
    lo, hi = 1 << 20, 8 << 20  # accepted, refused
    while hi - lo > 1:
        mid = (lo + hi) // 2
        rc = subprocess.run([exec_big, prog, str(mid)], check=False).returncode
        assert rc in (0, 100 + E2BIG), rc
        lo, hi = (mid, hi) if rc == 0 else (lo, mid)
    return lo


def test_argv_is_complete_up_to_what_the_kernel_accepts(
        record: Recorder, progs: dict[str, Path]) -> None:
    nop = str(progs["nop"])
    big = largest_argv(progs["exec_big"], progs["nop"])
    sizes = [100 * 1024, 1 << 20, big]
    script = "; ".join(f'"$0" {nop} {n}' for n in sizes)
    status, events, info = record(["/bin/sh", "-c", script, progs["exec_big"]])
    assert status == 0
    execs = [e for e in events if e["type"] == "exec" and e["path"] == nop]
    assert len(execs) == 3
    for e, n in zip(execs, sizes, strict=True):
        want = expected_argv(nop, n)
        assert sum(len(a) + 1 for a in want) == n
        assert not e["argv_truncated"], n
        assert e["argc"] == len(want)
        assert e["argv"] == want, f"argv of {n} bytes differs"
    print(f"argv: {sizes} bytes recorded exactly (the kernel takes {big} here)")
    assert info["truncated"]["argv"] == 0 and sum(info["lost"].values()) == 0


def test_a_process_that_leaves_the_session_cgroup_stays_recorded(
        record: Recorder, tmp_path: Path) -> None:
    root = cgroup2_mount().path / "cgroup.procs"
    marker = tmp_path / "after-move.txt"
    marker.write_text("x")
    # A root shell moves itself to the root cgroup, then keeps working: a
    # command, a subshell that forks one more.
    script = (f"echo $$ > {root}; cat {marker} > /dev/null; "
              f"(cat {marker} > /dev/null; exit 0); echo done")
    rec = record(["/bin/sh", "-c", script])
    status, events, info = rec
    assert status == 0
    shell = events[0]["pid"]
    moves = [e for e in events if e["type"] == "cgroup"]
    assert [(m["pid"], m["moved_pid"], m["dst_path"], m["dst_level"], m["tampered"])
            for m in moves] == [(shell, shell, "/", 0, True)]
    after = [e for e in events if e["time"] > moves[0]["time"]]
    cats = [e for e in after if e["type"] == "exec" and e["path"] == "/usr/bin/cat"]
    assert len(cats) == 2
    opened = [e for e in after if e["type"] == "open" and e["path"] == str(marker)]
    assert len(opened) == 2
    assert {e["pid"] for e in opened} == {e["pid"] for e in cats}
    assert any(e["type"] == "exit" and e["pid"] == shell for e in after)
    assert info["tampered"] == 1 and info["counts"]["cgroup"] == 1
    status, out, _ = run_cli("info", rec.path)
    assert status == 0
    assert re.search(r"^tampering +1 events flagged tampered \(1 cgroup moves", out, re.M)
    # Every output shows the flag.
    status, out, _ = run_cli("replay", rec.path, "--color=never")
    assert status == 0
    (line,) = [x for x in out.splitlines() if " cgroup " in x]
    assert line.endswith(f"pid {shell} to / (cgroup2) [TAMPERED]"), line
    status, out, _ = run_cli("export", rec.path, "--format", "ecs")
    assert status == 0
    tagged = [json.loads(x) for x in out.splitlines() if "sessrec-tampered" in x]
    assert [d["event"]["action"] for d in tagged] == ["cgroup-move"]
    page = rec.path.with_suffix(".html")
    assert run_cli("html", rec.path, "-o", page)[0] == 0
    assert "events are flagged TAMPERED" in page.read_text()
    status, out, err = run_cli("search", rec.path.parent, "--tampered", "--json")
    assert status == 0, err
    found = json.loads(out)["sessions"]
    assert [[(e["type"], e["path"], e["tampered"]) for e in m["events"]] for m in found] == [
        [("cgroup", "/", True)]]


def test_a_session_lasts_while_a_process_moved_out_of_it_runs(
        record: Recorder, tmp_path: Path) -> None:
    """The leader exits at once; a child that root moved out of the session's
    cgroup goes on working, and the session goes on with it (it follows its
    processes), to the child's last command and its exit."""
    root = cgroup2_mount().path / "cgroup.procs"
    marker = tmp_path / "late.txt"
    marker.write_text("x")
    inner = f"echo $$ > {root}; /bin/sleep 0.5; /bin/cat {marker} > /dev/null"
    status, events, info = record(["/bin/sh", "-c", f"/bin/sh -c '{inner}' & exit 0"])
    assert status == 0
    [move] = [e for e in events if e["type"] == "cgroup"]
    assert move["tampered"] and move["pid"] == move["moved_pid"]
    child = move["pid"]
    assert [e["argv"] for e in events if e["type"] == "exec" and e["pid"] != events[0]["pid"]
            and e["time"] > move["time"]][-1] == ["/bin/cat", str(marker)]
    assert any(e["type"] == "open" and e["path"] == str(marker) for e in events)
    assert any(e["type"] == "exit" and e["pid"] == child for e in events)
    assert info["complete"] and info["end_reason"] == "cgroup-empty"
