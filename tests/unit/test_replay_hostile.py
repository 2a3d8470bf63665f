"""replay, tree, info and export on truncated, corrupt and hostile files,
through sessrec.cli.main in-process: never a traceback. Either a one-line
error and exit status 1, or what could be read and a one-line warning."""

from __future__ import annotations

import io
import random
import struct
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from srec_util import GOLDEN, HEADER, header_bytes, write_session

from sessrec.cli import main

COMMANDS = (
    ["replay"],
    ["replay", "--pid", "1000", "--children", "--failed", "--color=always"],
    ["tree"],
    ["info"],
    ["export", "--format", "jsonl"],
    ["export", "--format", "teleport"],
    ["export", "--format", "ecs"],
)
GOLDEN_BYTES = GOLDEN.read_bytes()


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def check_all(path: Path) -> list[tuple[int, str]]:
    """Every command on path: exit 0 (at most one warning line) or 1 (one
    error line). Returns (status, stderr) of each."""
    results = []
    for cmd in COMMANDS:
        argv = [cmd[0], str(path), *cmd[1:]]
        status, _out, err = run(argv)
        assert "Traceback" not in err, argv
        assert err.count("\n") <= 1, (argv, err)
        if status == 0:
            assert err == "" or err.startswith(f"sessrec: warning: {path}: "), (argv, err)
        else:
            assert status == 1 and err.startswith("sessrec: error: "), (argv, status, err)
        results.append((status, err))
    return results


def test_truncated_anywhere(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    cuts = sorted({*range(0, len(GOLDEN_BYTES), 61), len(GOLDEN_BYTES) - 1})
    for n in cuts:
        p.write_bytes(GOLDEN_BYTES[:n])
        for status, err in check_all(p):
            if status == 0 and err:
                assert "truncated at byte" in err or "damaged at byte" in err
                assert "; showing the " in err


def test_truncated_replay_prints_what_was_read(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    p.write_bytes(GOLDEN_BYTES[:800])  # inside the second events chunk, at byte 693
    status, out, err = run(["replay", str(p)])
    assert status == 0 and out.count("\n") == 8  # the first events chunk
    assert err == (f"sessrec: warning: {p}: truncated at byte 693: the file ends inside a "
                   "chunk; showing the 8 events before it\n")
    status, out, err = run(["tree", str(p)])
    assert status == 0 and out.splitlines()[0].startswith("1000 -bash (/bin/bash)  [no exit")


def test_bit_flips(tmp_path: Path) -> None:
    p = tmp_path / "f.srec"
    rng = random.Random(4)
    for _ in range(25):
        data = bytearray(GOLDEN_BYTES)
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        p.write_bytes(bytes(data))
        check_all(p)


def test_not_a_session_file(tmp_path: Path) -> None:
    cases = {
        "text.srec": b"hello, world\n" * 10,
        "empty.srec": b"",
        "zstd.srec": b"\x28\xb5\x2f\xfd" + bytes(40),
        "v9.srec": header_bytes(major=9),
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        for status, err in check_all(p):
            assert status == 1, name
            assert err.startswith(f"sessrec: error: {p}: at byte 0: "), err
    for status, err in check_all(tmp_path / "missing.srec"):
        assert status == 1 and "cannot read" in err and "No such file" in err
    for status, err in check_all(tmp_path):
        assert status == 1 and "cannot read" in err


def test_hostile_values(tmp_path: Path) -> None:
    """Well-typed but absurd: the tools show them, escaped, and go on."""
    big, low = 2**63 - 1, -(2**63)
    header = {**HEADER, "hostname": "h\x1b]0;x\x07", "started_at": "yesterday",
              "clock": {"wall_ns": big, "mono_ns": 0}, "command": [], "leader_pid": low,
              "cwd": b"relative/\x1b[2J"}
    comm = b"\x1b[2J\x00\xff"
    c = [0, 0, 0, 0, comm, 0]

    def e(t: int, ts: int, pid: int, body: list[Any], tid: int | None = None) -> list[Any]:
        return [t, ts, pid, pid if tid is None else tid, *c[:2], comm, 7, *body]

    p = tmp_path / "h.srec"
    write_session(p, [
        e(2, -5, big, [0, b"", [], 0, 0, 9]),  # empty exec, unknown syscall
        e(2, big, big, [-(2**31), b"/dev/fd/99999999999/x", [b""] * 3, big, 0, 1]),
        e(1, 0, big, [big]),  # forks itself
        e(1, 0, low, [low]),
        e(3, low, big, [2**32 - 1]),
        e(3, 1, 5, [0x7F]),  # "signal 127"
        e(4, 1, 5, [big, 99, low, b"\x1b[2J" * 1000, big, low]),
        e(5, 1, 5, [-9999, 3, 99, 2**16, b""]),
        e(5, 1, 5, [0, 3, 1, 6, b"\x02\x00"]),  # AF_INET, too short
        e(5, 1, 5, [0, 3, 1, 6, struct.pack("<H", 0xFFFF) + bytes(30)]),
        e(5, 1, 5, [0, 3, 1, 6, b"\x00\x0a" + bytes(26)]),  # big-endian inet6
        e(6, 1, 5, [0, 2**31, b""]),
        e(6, 1, 5, [0, -1, b"../../.."]),
        e(4, 1, 6, [3, 1, -100, b"x", 0, 0], tid=low),
    ], header=header)
    for status, err in check_all(p):
        assert status == 0 and err == ""
    status, out, _err = run(["replay", str(p), "--color=always"])
    plain = out.replace("\x1b[1;31m", "").replace("\x1b[0m", "").replace("\x1b[2m", "")
    plain = plain.replace("\x1b[1m", "")
    assert "\x1b" not in plain and "\x00" not in plain
    status, out, _err = run(["info", str(p)])
    assert "h\\x1b]0;x\\x07" in out and "duration     unknown\n" in out


EVENT = st.one_of(
    st.tuples(st.sampled_from([1, 3]), st.integers(-(2**63), 2**63 - 1)).map(list),
    st.tuples(st.just(2), st.integers(-(2**31), 2**31), st.binary(max_size=40),
              st.lists(st.binary(max_size=20), max_size=4), st.integers(0, 2**32),
              st.integers(0, 2**31), st.integers(0, 3)).map(list),
    st.tuples(st.just(4), st.integers(-200, 2**31), st.integers(0, 5), st.integers(-200, 50),
              st.binary(max_size=40), st.integers(0, 2**32 - 1), st.integers(0, 2**16)).map(list),
    st.tuples(st.just(5), st.integers(-200, 5), st.integers(-5, 50), st.integers(0, 6),
              st.integers(0, 300), st.binary(max_size=40)).map(list),
    st.tuples(st.just(6), st.integers(-5, 5), st.integers(-2, 10), st.binary(max_size=20)).map(
        list),
)
COMMON = st.tuples(st.integers(-(2**40), 2**40), st.integers(0, 6), st.integers(0, 6),
                   st.integers(0, 6), st.integers(0, 2**32), st.binary(max_size=16))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(COMMON, EVENT), max_size=30), st.booleans())
def test_random_sessions(tmp_path: Path, items: list[Any], complete: bool) -> None:
    p = tmp_path / "r.srec"
    p.unlink(missing_ok=True)
    records = [[body[0], *common[:5], common[5], 0, *body[1:]] for common, body in items]
    write_session(p, records, trailer=None if not complete else {**HEADER_TRAILER})
    for status, _err in check_all(p):
        assert status == 0


HEADER_TRAILER = {
    "ended_at": "2026-11-21T11:10:03.000000Z", "counts": {}, "lost": {},
    "truncated": {"argv": 0, "path": 0}, "unknown_types": 0, "exit_status": None,
    "end_reason": "cgroup-empty",
}
