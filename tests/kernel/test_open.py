"""open, openat, openat2 and creat: the path as passed, resolved against the
cwd or the dirfd, flags, mode, the result."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from krec import PYTHON, Recorder

pytestmark = pytest.mark.kernel

O_WRONLY, O_CREAT, O_EXCL, O_TRUNC, O_APPEND = 0o1, 0o100, 0o200, 0o1000, 0o2000
O_DIRECTORY, O_CLOEXEC = 0o200000, 0o2000000


def test_every_kind_of_open(record: Recorder, progs: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path.resolve() / "work"
    (work / "sub").mkdir(parents=True)
    exe = str(progs["opens"])
    d = str(work)

    status, events, info = record([exe, d])

    assert status == 0
    pid = events[0]["pid"]
    assert all(e["pid"] == pid and e["tid"] == pid for e in events)
    assert [e["type"] for e in events] == (
        ["exec", "chdir"] + ["open"] * 9 + ["chdir"] + ["open"] * 2 + ["chdir"]
        + ["open"] * 3 + ["exit"])

    ex = events[0]
    assert (ex["path"], ex["requested_path"], ex["argv"], ex["argc"], ex["return_code"]) == (
        exe, exe, [exe, d], 2, 0)
    assert events[1]["path"] == d and events[1]["requested_path"] == d
    assert events[1]["return_code"] == 0

    def opened(e: dict[str, object]) -> tuple[object, ...]:
        return (e["syscall"], e["requested_path"], e["path"], e["flags"], e["flag_names"],
                e["mode"], e["return_code"], e["path_truncated"], e["comm"])

    c = "opens"
    assert [opened(e) for e in events[2:11]] == [
        ("open", "rel.txt", f"{d}/rel.txt", O_WRONLY | O_CREAT | O_TRUNC,
         ["O_WRONLY", "O_CREAT", "O_TRUNC"], 0o640, 3, False, c),
        ("openat", "sub", f"{d}/sub", O_DIRECTORY, ["O_RDONLY", "O_DIRECTORY"], 0, 4, False, c),
        # relative to the directory fd 4
        ("openat", "in_sub.txt", f"{d}/sub/in_sub.txt", O_WRONLY | O_CREAT | O_EXCL,
         ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o600, 5, False, c),
        ("openat", "../rel.txt", f"{d}/rel.txt", 0, ["O_RDONLY"], 0, 6, False, c),
        ("openat", "sub/../sub/./in_sub.txt", f"{d}/sub/in_sub.txt", O_CLOEXEC,
         ["O_RDONLY", "O_CLOEXEC"], 0, 7, False, c),
        ("openat2", "sub/o2.txt", f"{d}/sub/o2.txt", O_WRONLY | O_CREAT | O_APPEND,
         ["O_WRONLY", "O_CREAT", "O_APPEND"], 0o644, 8, False, c),
        ("creat", "created.txt", f"{d}/created.txt", O_WRONLY | O_CREAT | O_TRUNC,
         ["O_WRONLY", "O_CREAT", "O_TRUNC"], 0o600, 9, False, c),
        ("openat", "missing/nope.txt", f"{d}/missing/nope.txt", 0, ["O_RDONLY"], 0, -2, False,
         c),
        ("openat", "sub", f"{d}/sub", O_WRONLY, ["O_WRONLY"], 0, -21, False, c),
    ]
    # A relative chdir, then fchdir to a directory opened as "..".
    chdir, fchdir = events[11], events[14]
    assert (chdir["requested_path"], chdir["path"], chdir["fd"], chdir["return_code"]) == (
        "sub", f"{d}/sub", -1, 0)
    assert (fchdir["requested_path"], fchdir["path"], fchdir["fd"], fchdir["return_code"]) == (
        None, d, 11, 0)
    assert [opened(e) for e in events[12:14] + events[15:16]] == [
        ("open", "../rel.txt", f"{d}/rel.txt", 0, ["O_RDONLY"], 0, 10, False, c),
        ("openat", "..", d, O_DIRECTORY, ["O_RDONLY", "O_DIRECTORY"], 0, 11, False, c),
        ("openat", "created.txt", f"{d}/created.txt", 0, ["O_RDONLY"], 0, 12, False, c),
    ]
    ext = events[-1]
    assert (ext["exit_code"], ext["signal"], ext["core_dumped"]) == (0, None, False)
    # The program really did what the events say.
    assert sorted(os.listdir(work)) == ["created.txt", "rel.txt", "sub"]
    assert sorted(os.listdir(work / "sub")) == ["in_sub.txt", "o2.txt"]
    assert info["counts"]["open"] == 14 and info["lost"]["open"] == 0


def test_longest_paths(record: Recorder, progs: dict[str, Path], tmp_path: Path) -> None:
    """The kernel takes paths of up to 4095 bytes: one of 4095 is whole, one
    of 4096 (refused, ENAMETOOLONG) is recorded cut to 4095 and flagged."""
    work = tmp_path.resolve()
    (work / "sub").mkdir()
    _, events, info = record([str(progs["opens"]), str(work)])

    longest, too_long = [e for e in events if e["type"] == "open"][-2:]
    dots = "./" * 2046
    assert (longest["requested_path"], longest["path"], longest["return_code"]) == (
        dots + "zzz", f"{work}/zzz", -2)
    assert (too_long["requested_path"], too_long["return_code"], too_long["path_truncated"]) == (
        dots + "zzz", -36, True)
    assert longest["path_truncated"] is False
    assert info["truncated"]["path"] == 1


def test_paths_relative_to_a_relative_cwd_option(record: Recorder, tmp_path: Path) -> None:
    """-C DIR with a relative DIR: the session's paths are still absolute."""
    work = tmp_path.resolve() / "work"
    work.mkdir()
    (work / "f").write_text("x")
    rel = os.path.relpath(work)
    assert not rel.startswith("/")

    rec = record(["/bin/cat", "f"], "-C", rel)

    assert rec.status == 0
    assert rec.info["cwd"] == str(work)
    opens = [(e["requested_path"], e["path"]) for e in rec.of_type("open")
             if e["requested_path"] == "f"]
    assert opens == [("f", f"{work}/f")]


def test_failed_relative_leader_is_resolved(record: Recorder, tmp_path: Path) -> None:
    work = tmp_path.resolve()
    status, events, _ = record(["./no-such-program"], "-C", str(work))

    assert status == 127
    (ex,) = [e for e in events if e["type"] == "exec"]
    assert (ex["requested_path"], ex["return_code"]) == ("./no-such-program", -2)
    assert ex["path"] == f"{work}/no-such-program"


def test_escapes_in_paths_and_comm(record: Recorder, tmp_path: Path) -> None:
    """File names and comm are the program's bytes: exported exactly, with
    control characters escaped by JSON and other bytes as \\xNN."""
    d = os.fsencode(tmp_path.resolve())
    name = b"evil\n\x1b]0;pwned\x07\x1b[2J\ttab \xff\xfe \xe2\x9c\x93"
    code = f"""
import ctypes, os
ctypes.CDLL(None).prctl(15, b"\\x1b[2Jx\\ty\\xff")  # PR_SET_NAME
os.close(os.open({d + b"/" + name!r}, os.O_WRONLY | os.O_CREAT, 0o600))
"""
    status, events, _ = record([PYTHON, "-c", code])

    assert status == 0
    (opened,) = [e for e in events if e["type"] == "open" and e["flags"] & O_CREAT]
    expected = (d + b"/" + name).decode("utf-8", "backslashreplace")
    assert opened["requested_path"] == opened["path"] == expected
    assert "\x1b]0;pwned\x07" in expected and "\\xff\\xfe" in expected and "✓" in expected
    assert opened["comm"] == "\x1b[2Jx\ty\\xff"
    assert os.path.exists(d + b"/" + name)
