"""replay.jsonl and replay.info against the committed expected outputs."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path
from typing import Any

from srec_util import GOLDEN, GOLDEN_DIR, HEADER, TRAILER, ev, write_session

from replay.info import session_info
from replay.jsonl import write_jsonl
from replay.reader import open_session
from sessrec import format as fmt

COMMON = ["type", "time", "pid", "tid", "ppid", "uid", "comm", "session_id"]
KEYS = {
    "exec": ["path", "requested_path", "argv", "argv_truncated", "argc", "return_code",
             "path_source", "path_deleted", "path_outside_root", "tampered"],
    "fork": ["child_pid"],
    "exit": ["exit_code", "signal", "core_dumped"],
    "open": [
        "path",
        "requested_path",
        "flags",
        "flag_names",
        "mode",
        "syscall",
        "return_code",
        "path_truncated",
        "path_source",
        "path_deleted",
        "path_outside_root",
        "tampered",
    ],
    "connect": ["family", "protocol", "dst_addr", "dst_port", "return_code", "dst_source",
                "kernel_dst_addr", "kernel_dst_port", "tampered"],
    "chdir": ["path", "requested_path", "fd", "return_code", "path_source", "path_deleted",
              "path_outside_root", "tampered"],
    "cgroup": ["moved_pid", "dst_cgroup_id", "dst_hierarchy", "dst_level", "dst_path",
               "tampered"],
}


def _jsonl(path: Path) -> str:
    out = io.StringIO()
    with open_session(path) as s:
        n = write_jsonl(s, out)
    text = out.getvalue()
    assert n == text.count("\n")
    return text


def test_golden_jsonl() -> None:
    expected = (GOLDEN_DIR / "v1.0-synthetic.jsonl").read_text(encoding="utf-8")
    assert _jsonl(GOLDEN) == expected


def test_golden_info() -> None:
    expected = json.loads((GOLDEN_DIR / "v1.0-synthetic.info.json").read_text(encoding="utf-8"))
    info = session_info(GOLDEN)
    assert info == expected
    assert list(info) == list(expected)


def test_keys_are_exactly_these() -> None:
    seen = set()
    for line in _jsonl(GOLDEN).splitlines():
        obj = json.loads(line)
        assert list(obj) == COMMON + KEYS[obj["type"]]
        seen.add(obj["type"])
    assert seen == set(KEYS) - {"cgroup"}  # a type of BPF ABI 2


def test_values(tmp_path: Path) -> None:
    p = tmp_path / "v.srec"
    sa6 = struct.pack("<H", 10) + struct.pack(">H", 8443) + bytes(4)
    sa6 += bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 1]) + bytes(4)
    write_session(
        p,
        [
            ev(2, body=[-2, b"./x\xff", [b"a\x00b", b"\x1b[31m"], 9, 1000, 0], ts=5),
            ev(4, body=[3, 1, -100, b"f", 0o2101, 0o640]),
            ev(5, body=[0, 4, 1, 6, sa6]),
            ev(5, body=[-111, 4, 0, 0, b"\x01\x00\x00x"]),
            ev(5, body=[0, 4, 3, 0, b"\x11\x00abc"]),
            ev(3, body=[0]),
            ev(6, body=[-20, 5, b""]),
        ],
    )
    lines = [json.loads(x) for x in _jsonl(p).splitlines()]
    exec_, open_, inet6, unix, packet, exit_, fchdir = lines
    wall = HEADER["clock"]["wall_ns"] + 5
    assert exec_["time"] == "2026-11-21T11:10:02.000000005Z" and wall % 10**9 == 5
    assert exec_["path"] == "/home/alice/x\\xff"
    assert exec_["requested_path"] == "./x\\xff"
    assert exec_["argv"] == ["a\x00b", "\x1b[31m"]
    assert exec_["argc"] == 9 and exec_["return_code"] == -2
    assert exec_["session_id"] == HEADER["session_id"] and exec_["comm"] == "comm"
    assert open_["flag_names"] == ["O_WRONLY", "O_CREAT", "O_APPEND"]
    assert open_["mode"] == 0o640 and open_["syscall"] == "openat" and open_["return_code"] == 3
    assert inet6 == {
        **inet6,
        "family": "inet6",
        "protocol": "tcp",
        "dst_addr": "::ffff:10.0.0.1",
        "dst_port": 8443,
    }
    assert (unix["family"], unix["protocol"], unix["dst_addr"], unix["dst_port"]) == (
        "unix",
        None,
        "@x",
        None,
    )
    assert unix["return_code"] == -111
    assert (packet["family"], packet["protocol"], packet["dst_addr"]) == ("af_17", None, None)
    assert (exit_["exit_code"], exit_["signal"], exit_["core_dumped"]) == (0, None, False)
    assert fchdir["path"] is None and fchdir["requested_path"] is None and fchdir["fd"] == 5


def test_output_is_utf8_and_one_line_per_event(tmp_path: Path) -> None:
    p = tmp_path / "v.srec"
    write_session(p, [ev(2, body=[0, b"/bin/x", [b"line1\nline2", b"\xe2\x80\xa8"], 2, 1, 0])])
    text = _jsonl(p)
    assert text.count("\n") == 1
    text.encode("utf-8")  # no lone surrogates
    assert json.loads(text)["argv"] == ["line1\nline2", "\u2028"]


def test_truncated_file_exports_what_is_there(tmp_path: Path) -> None:
    p = tmp_path / "t.srec"
    write_session(p, [ev(1), ev(6), "flush"], trailer=None)
    out = io.StringIO()
    with open_session(p) as s:
        assert write_jsonl(s, out) == 2
    assert s.damage is not None
    assert str(s.damage) == f"truncated at byte {p.stat().st_size}: " + s.damage.reason
    assert s.damage_warning() == (
        f"{p}: truncated at byte {p.stat().st_size}: "
        "the recording did not finish (no trailer); showing the 2 events before it"
    )


def test_info_of_an_unfinished_file(tmp_path: Path) -> None:
    p = tmp_path / "u.srec"
    leader = HEADER["leader_pid"]
    recs: list[Any] = [
        ev(2, pid=leader),
        {"ts": 3, "lost": {"open": 7}},
        ev(4, pid=leader, body=[3, 1, -100, b"x", 0, 0]),
        [*ev(4, pid=leader)[:7], 1, *ev(4)[8:]],  # path truncated
        [*ev(2, pid=leader)[:7], 2, *ev(2)[8:]],  # argv truncated
        [77, 1, 1, 1, 1, 1, b"c", 0],
        ev(3, pid=leader + 1, body=[0]),
        ev(3, pid=leader, body=[0x80 | 6]),
        "flush",
    ]
    write_session(p, recs, trailer=None)
    info = session_info(p)
    assert info["complete"] is False
    assert info["ended_at"] is None and info["end_reason"] is None
    assert info["counts"] == {"fork": 0, "exec": 2, "exit": 2, "open": 2, "connect": 0, "chdir": 0,
                              "cgroup": 0}
    assert info["lost"]["open"] == 7
    assert info["truncated"] == {"argv": 1, "path": 1}
    assert info["unknown_types"] == 1
    assert info["exit_status"] == 134  # the leader's SIGABRT, as a shell reports it
    assert info["damage"]["offset"] == p.stat().st_size
    assert info["cwd"] == "/home/alice"
    assert info["format_version"] == f"{fmt.FORMAT_MAJOR}.{fmt.FORMAT_MINOR}"
    json.dumps(info)


def test_info_of_a_complete_file_uses_the_trailer(tmp_path: Path) -> None:
    p = tmp_path / "c.srec"
    write_session(p, [ev(1)], trailer={**TRAILER, "lost": {"exec": 1, "future": 2}})
    info = session_info(p)
    assert info["complete"] is True and info["damage"] is None
    assert info["counts"] == {**TRAILER["counts"], "cgroup": 0}
    assert info["lost"] == {
        "fork": 0,
        "exec": 1,
        "exit": 0,
        "open": 0,
        "connect": 0,
        "chdir": 0,
        "cgroup": 0,
        "future": 2,
    }
    assert info["exit_status"] == 3 and info["end_reason"] == "cgroup-empty"
