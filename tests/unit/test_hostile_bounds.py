"""The read commands on crafted hostile files (issue 11, "Files from an
attacker"), each in a child process under 512 MiB of address space and a
timeout that catches only hangs and quadratic blow-ups: a one-line error or
what could be read, never a traceback or MemoryError."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import (
    ISSUE_BOMB,
    READ_COMMANDS,
    VERIFY_STATUSES,
    big_execs,
    chunk,
    deep_chain,
    distinct_argv,
    ev,
    events,
    events_bomb,
    exec_,
    failed_execs,
    fork_records,
    forks_of_one_child,
    header_bomb,
    header_key_bomb,
    header_map,
    leaderless,
    long_command,
    long_cwds,
    long_paths,
    many_descriptors,
    nul_argv_execs,
    pack,
    record,
    run_bounded,
    session,
    trailer_bomb,
)

from replay import model
from replay.ecs import LEADER_ARGS_MAX, _cut
from replay.model import MAX_PROCESSES
from replay.reader import open_session
from sessrec import format as fmt
from sessrec import records
from sessrec.event import make


def check_bounded(path: Path, tmp: Path, commands: tuple[list[str], ...] = READ_COMMANDS,
                  timeout: float = 120) -> list[tuple[int, str]]:
    """Each command on path: exit 0 or 1, only sessrec's own lines on stderr.
    Returns (status, stderr) of each."""
    out = []
    for cmd in commands:
        argv = [cmd[0], str(path), *(a.format(tmp=tmp) for a in cmd[1:])]
        r = run_bounded(argv, timeout=timeout)
        assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr, (argv, r.stderr)
        assert r.status in ((0, 1) if cmd[0] != "verify" else VERIFY_STATUSES), (argv, r.status)
        assert all(line.startswith("sessrec: ") for line in r.stderr.splitlines()), r.stderr
        out.append((r.status, r.stderr))
    return out


BOMBS: dict[str, Callable[[], bytes]] = {
    "header": header_bomb,
    "header_key": header_key_bomb,
    "trailer": trailer_bomb,
    "events": events_bomb,
}


@pytest.mark.parametrize("name", list(BOMBS))
def test_largest_msgpack_bombs_are_bounded(tmp_path: Path, name: str) -> None:
    """Empty arrays and maps filling the largest chunk the reader accepts."""
    p = tmp_path / f"{name}.srec"
    p.write_bytes(BOMBS[name]())
    results = check_bounded(p, tmp_path)
    if name == "header":
        assert all(s == 1 and "the header chunk holds more than its one object" in e
                   for s, e in results[:-1])
    if name == "trailer":
        assert "the trailer chunk holds more than its one object" in results[2][1]


@pytest.mark.parametrize("bomb", [header_bomb, header_key_bomb, trailer_bomb])
def test_issue_64mib_bombs_are_refused_unread(tmp_path: Path, bomb: Callable[[int], bytes]
                                             ) -> None:
    p = tmp_path / "b.srec"
    p.write_bytes(bomb(ISSUE_BOMB))
    assert p.stat().st_size < 10_000
    for _status, err in check_bounded(p, tmp_path, (["info"], ["replay"])):
        assert err == "" or "more than the 2097152 allowed" in err


# The commands that resolve paths (replay.events.PathResolver).
RESOLVING_COMMANDS = tuple(c for c in READ_COMMANDS if c[0] not in ("info", "verify"))
MODEL_COMMANDS = (["tree"], ["export", "--format", "ecs"], ["html", "-o", "{tmp}/out.html"])


def test_forks_of_one_child_are_bounded(tmp_path: Path) -> None:
    """More forks than the model keeps processes (of the same child pid,
    which never exits): the tree is of the first MAX_PROCESSES, and says so."""
    p = tmp_path / "forks.srec"
    p.write_bytes(forks_of_one_child(MAX_PROCESSES * 3))
    for status, err in check_bounded(p, tmp_path, (["tree"], ["html", "-o", "{tmp}/o.html"])):
        assert status == 0
        assert f"more than {MAX_PROCESSES} processes" in err or "wrote" in err
    p.write_bytes(forks_of_one_child(MAX_PROCESSES + 10))
    (status, err), = check_bounded(p, tmp_path, (["export", "--format", "ecs"],))
    assert status == 0 and "(11 forks; 0 events" in err  # the leader is one


def test_big_execs_are_bounded(tmp_path: Path) -> None:
    """20,000 execs of 32 KiB argv each (640 MiB if the model kept them)."""
    p = tmp_path / "execs.srec"
    p.write_bytes(big_execs(20_000))
    assert p.stat().st_size < 200_000
    for status, _err in check_bounded(p, tmp_path, MODEL_COMMANDS):
        assert status == 0


def test_deep_chain_is_bounded(tmp_path: Path) -> None:
    """A chain 20,000 processes deep: the tree's output stays linear (it drew
    2.4 GB of indentation)."""
    p = tmp_path / "deep.srec"
    p.write_bytes(deep_chain(20_000))
    check_bounded(p, tmp_path, MODEL_COMMANDS)
    r = run_bounded(["tree", str(p)])
    assert r.status == 0 and r.stdout_bytes < 20_001 * 400


def test_failed_execs_are_linear(tmp_path: Path) -> None:
    """50,000 failed execs, then 50,000 forks, each asking what the parent
    runs: that was a rescan of every failed exec (49 s for tree)."""
    p = tmp_path / "failed.srec"
    p.write_bytes(failed_execs(50_000))
    check_bounded(p, tmp_path, MODEL_COMMANDS)


def test_a_session_without_its_leader_is_linear(tmp_path: Path) -> None:
    p = tmp_path / "leaderless.srec"
    p.write_bytes(leaderless(50_000))
    check_bounded(p, tmp_path, MODEL_COMMANDS, timeout=60)


@pytest.mark.parametrize("build", [long_paths, many_descriptors, long_cwds, distinct_argv])
def test_distinct_long_texts_are_bounded(tmp_path: Path, build: Callable[[], bytes]) -> None:
    """Small files whose paths or argv are all distinct and long: each broke
    512 MiB in export --format ecs and html, and the path resolver's state
    in every command that resolves paths. The caches are bounded by size
    now, and the resolver forgets past its budget, saying so."""
    p = tmp_path / "t.srec"
    p.write_bytes(build())
    assert p.stat().st_size < 200_000
    results = check_bounded(p, tmp_path, RESOLVING_COMMANDS, timeout=300)
    assert all(status == 0 for status, _err in results)
    if build in (many_descriptors, long_cwds):
        for _status, err in results:
            assert "the path resolver keeps: it forgot" in err


def test_a_long_recorded_command_is_cut_in_the_ecs_leaders(tmp_path: Path) -> None:
    """A 5 KB file whose header holds a 1 MB command: every ECS document
    carried it twice (2 MB each, gigabytes in all) and the live processes'
    cached texts a copy each, past 512 MiB. The leaders' args carry its
    first LEADER_ARGS_MAX characters, and the export says so."""
    p = tmp_path / "command.srec"
    p.write_bytes(long_command())
    assert p.stat().st_size < 10_000
    ((status, err),) = check_bounded(p, tmp_path, (["export", "--format", "ecs"],))
    assert status == 0 and "the recorded command is 1,000,001 characters" in err
    r = run_bounded(["export", str(p), "--format", "ecs"])
    # 1,801 documents, each with two leaders of at most LEADER_ARGS_MAX of
    # args and as much of name (2 MB each before)
    assert r.stdout_bytes < 1801 * (4 * LEADER_ARGS_MAX + 4096)
    check_bounded(p, tmp_path, RESOLVING_COMMANDS)


@pytest.mark.parametrize("key", ["session_id", "hostname", "kernel", "user", "started_at",
                                 "cwd", "cgroup"])
def test_a_header_text_every_event_repeats_is_bounded(tmp_path: Path, key: str) -> None:
    """A header text that every exported event repeats (the host in each
    ECS document, the user twice in each Teleport event), 1 MB long: 300
    opens made 300 MB to 1.5 GB of output from a small file. Past its bound
    (format.Header's MaxLen) the file is refused in one line."""
    value: str | bytes = "h" * 1_000_000 if key != "cwd" else b"/" + b"c" * 1_000_000
    p = tmp_path / "header.srec"
    p.write_bytes(session(events(ev(4, 1000, [3, 1, -100, b"f%d" % i, 0, 0o644])
                                 for i in range(300)),
                          header=pack(header_map(**{key: value}))))
    # (verify checks the chunks and seals, not what they say: this file is unsealed)
    for status, err in check_bounded(p, tmp_path, READ_COMMANDS[:-1]):
        assert status == 1 and f"header['{key}'] is 1,000,00" in err and "more than" in err


def test_the_leaders_args_are_whole_up_to_their_bound() -> None:
    assert _cut(["a" * 10, "b" * 10]) == ["a" * 10, "b" * 10]
    assert _cut(["a" * (LEADER_ARGS_MAX - 2), "bbbb", "c"]) == ["a" * (LEADER_ARGS_MAX - 2), "bb"]
    assert _cut(["a" * (LEADER_ARGS_MAX + 5)]) == ["a" * LEADER_ARGS_MAX]


def test_model_keeps_a_bounded_history(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "ARGV_BUDGET", 10_000)
    m = model.ProcessModel(1000, index=False)
    for i in range(200):  # 1,000 bytes of argv each; every other one fails
        m.feed(make(exec_(1000, [b"a" * 99] * 10, ret=-2 if i % 2 else 0, ts=i)))
    for i in range(10_000):
        m.feed(make(ev(4, 1000, [3, 1, -100, b"/x", 0, 0], ppid=i, tid=5000 + i, ts=300)))
    (p,) = m.processes
    assert len(p.execs) == model.MAX_EXECS and p.n_execs == 200 and p.n_failed == 100
    assert p.program is not None and p.program.ts == 198
    assert p.program.argv_truncated and len(b"".join(p.program.argv)) <= model.ARGV_KEPT
    assert not p.execs[0].argv_truncated and len(p.execs[0].argv) == 10
    assert model.running_program(p) is p.program
    assert model.running_program(p, at=5) is p.execs[4]  # an earlier time
    assert len(p.threads) == model.MAX_THREADS and len(p.ppids) == model.MAX_PPIDS
    assert p.ppid == 9999


@pytest.mark.parametrize("build", [nul_argv_execs, fork_records])
def test_largest_records_chunk_is_bounded(tmp_path: Path, build: Callable[..., bytes]) -> None:
    """A 64 MiB RECORDS chunk of records that grow most once decoded (32 KiB
    of NULs: 32,768 arguments each; or the smallest records): decoded in
    batches, not all at once (600 MB)."""
    p = tmp_path / "r.srec"
    p.write_bytes(build(complete=False))  # info reads every event
    (s1, _), (s2, err) = check_bounded(p, tmp_path, (["info"], ["tree"]))
    assert s1 == s2 == 0 and "the recording did not finish" in err


def test_damage_in_a_large_records_chunk_keeps_the_events_before_it(tmp_path: Path) -> None:
    body = struct.pack(records.BODIES[records.FORK].fmt, 1001, 0)
    recs = [record(records.FORK, body)] * 100_000  # 5.6 MB: more than one batch
    bad = fmt.RECORD_FRAME.pack(1 << 20, 0)  # a frame that overruns its chunk
    p = tmp_path / "d.srec"
    p.write_bytes(session([chunk(fmt.ChunkKind.RECORDS, b"".join(recs) + bad)]))
    with open_session(p, strict=False) as s:
        n = sum(1 for _ in s.records())
    assert n == 100_000 and s.damage is not None and "overruns" in s.damage.reason


def test_ls_and_search_index_hostile_files_within_bounds(tmp_path: Path) -> None:
    """The index reads every event of every file: the same bounds."""
    d = tmp_path / "sessions"
    d.mkdir()
    for name, build in (*BOMBS.items(), ("deep", lambda: deep_chain(20_000)),
                        ("failed", lambda: failed_execs(50_000)),
                        ("records", lambda: nul_argv_execs(complete=True))):
        (d / f"{name}.srec").write_bytes(build())
    for argv in (["ls", str(d)], ["ls", "--json", str(d)], ["search", str(d), "--path", "/x"]):
        r = run_bounded(argv)
        assert r.status in (0, 1) and "Traceback" not in r.stderr, (argv, r.stderr)
        assert all(line.startswith("sessrec: ") for line in r.stderr.splitlines())
