"""The programs' fallbacks for older kernels, proved on this one: with
SESSREC_HIDE_KERNEL_FEATURES the loader builds them as it would on a kernel
without bpf_get_current_task_btf (before 5.11: every task field probe-read)
or without bpf_task_pt_regs (before 5.15: syscall arguments saved at
sys_enter), and the same command must give the same events as with
everything there; the header and `sessrec info` say what was done
differently (recorder/kfeatures.py)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from krec import Recorder, Recording, run_cli

from recorder import kfeatures
from recorder.cgroup import find_cgroup2

pytestmark = pytest.mark.kernel

VOLATILE = ("time", "session_id")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP listener outside the session, for the command's connect."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s


def normalized(rec: Recording, work: Path) -> list[dict[str, Any]]:
    """The events without what differs from run to run: times, the session
    id, pids (numbered in order of appearance) and the work directory."""
    pids: dict[int, int] = {}

    def pid(p: Any) -> Any:
        return pids.setdefault(p, len(pids)) if isinstance(p, int) and p > 0 else p

    text = json.dumps(rec.events).replace(str(work), "WORK")
    out = []
    for e in json.loads(text):
        for k in VOLATILE:
            e.pop(k, None)
        for k in ("pid", "tid", "ppid", "child_pid", "old_pid"):
            if k in e:
                e[k] = pid(e[k])
        out.append(e)
    return out


def run(record: Recorder, progs: dict[str, Path], work: Path, port: int,
        name: str) -> Recording:
    (work / "sub").mkdir(parents=True)
    return record([str(progs["lifecycle"]), str(progs["opens"]), str(work), str(port)],
                  "--no-daemon", name=name)


@pytest.mark.parametrize("hidden, notices", [
    ("get_current_task_btf", ["bpf_probe_read_kernel", "saved at sys_enter"]),
    ("task_pt_regs", ["saved at sys_enter"]),
    ("ancestor_cgroup_id", ["walking its cgroup's parents"]),
])
def test_a_fallback_records_the_same_events(
        record: Recorder, progs: dict[str, Path], tmp_path: Path, listener: socket.socket,
        monkeypatch: pytest.MonkeyPatch, hidden: str, notices: list[str]) -> None:
    port = listener.getsockname()[1]
    base = run(record, progs, tmp_path.resolve() / "base", port, "base")
    monkeypatch.setenv(kfeatures.HIDE_ENV, hidden)
    fell_back = run(record, progs, tmp_path.resolve() / "fallback", port, "fallback")

    assert base.status == fell_back.status == 0, fell_back.stderr
    expected = normalized(base, tmp_path.resolve() / "base")
    got = normalized(fell_back, tmp_path.resolve() / "fallback")
    assert got == expected
    # What the command did is all there: a thread is no fork.
    types = [e["type"] for e in expected]
    assert types.count("fork") == 3 and types.count("connect") == 1
    assert types.count("open") == 14 and types.count("chdir") == 3
    assert [e["return_code"] for e in expected if e["type"] == "exec"] == [0, -2, 0]
    failed = next(e for e in expected if e["type"] == "exec" and e["return_code"] == -2)
    assert failed["argv"] == ["nope", "an argument"]
    assert sum(fell_back.info["lost"].values()) == 0

    kf = fell_back.header["kernel_features"]
    assert kf[hidden] is False and base.header["kernel_features"][hidden] is True
    said = " | ".join(kf["notices"])
    assert f"hidden on purpose ({kfeatures.HIDE_ENV}" in said
    for words in notices:
        assert words in said, said
    status, out, err = run_cli("info", fell_back.path)
    assert status == 0, err
    shown = [ln.split(None, 1)[1] for ln in out.splitlines() if ln.startswith("notice ")]
    assert shown == kf["notices"]
    assert re.search(rf"without [^;]*\b{hidden}\b", out), out


@pytest.mark.parametrize("hidden", ["", "ancestor_cgroup_id"])
def test_a_move_below_the_session_is_not_leaving_it(
        record: Recorder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hidden: str) -> None:
    """A process moving itself into a cgroup under its session's stays in
    the session; one moving to the root leaves it (flagged tampered). The
    programs ask bpf_get_current_ancestor_cgroup_id, or walk the cgroup's
    parents where tracepoint programs may not call it (5.10)."""
    mount = find_cgroup2()
    assert mount is not None
    monkeypatch.setenv(kfeatures.HIDE_ENV, hidden)
    script = (f"cg={mount.path}$(sed -n 's/^0:://p' /proc/self/cgroup); "
              "mkdir $cg/inner && echo $$ > $cg/inner/cgroup.procs && "
              "mkdir $cg/inner/deeper && echo $$ > $cg/inner/deeper/cgroup.procs && "
              f"echo $$ > {mount.path}/cgroup.procs")
    rec = record(["/bin/sh", "-c", script], "--no-daemon")
    assert rec.status == 0, rec.stderr
    session = "/" + str(Path(rec.header["cgroup"]).relative_to(mount.path))
    moves = [(e["dst_path"], e["tampered"]) for e in rec.of_type("cgroup")]
    assert moves == [(f"{session}/inner", False), (f"{session}/inner/deeper", False),
                     ("/", True)]
    assert rec.header["kernel_features"]["ancestor_cgroup_id"] is not (hidden != "")


def test_the_race_check_is_off_without_task_storage(
        record: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    """race_check keeps each open's path in task storage (5.11): asked for
    on a kernel without it, the recording goes on without it and says so."""
    monkeypatch.setenv(kfeatures.HIDE_ENV, "task_storage")
    rec = record(["/bin/true"], "--race-check", "--no-daemon")
    assert rec.status == 0, rec.stderr
    assert rec.header["race_check"] is False
    assert kfeatures.RACE_CHECK_NOTICE in rec.header["kernel_features"]["notices"]


def test_without_the_ring_buffer_recording_is_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(kfeatures.HIDE_ENV, "ringbuf")
    status, _, err = run_cli("record", "--no-daemon", "-o", tmp_path / "x.srec", "--",
                             "/bin/true")
    assert status != 0
    assert "lacks ringbuf (Linux 5.8" in err and "Traceback" not in err
    assert not (tmp_path / "x.srec").exists()
