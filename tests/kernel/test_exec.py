"""exec: argv exactly as the program got it (up to the 32 KiB limit, with
argc the original count), byte-exact whatever the bytes; failed execs with
their errno and argv; commands that do not exist."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from krec import PYTHON, Recorder, Recording, record_into, write_script

pytestmark = pytest.mark.kernel

ARGV_MAX = 32768


def block(argv: list[bytes]) -> bytes:
    """argv as it lies in the new process's memory: NUL-terminated strings."""
    return b"".join(a + b"\0" for a in argv)


def argv_of_size(name: bytes, size: int) -> list[bytes]:
    """An argv whose block is exactly size bytes: name, then numbered
    arguments of 100 bytes (with the NUL), then one to make up the rest."""
    argv = [name]
    left = size - len(name) - 1
    i = 0
    while left >= 200:
        argv.append(b"%05d-" % i + b"a" * 93)
        left -= 100
        i += 1
    argv.append(b"z" * (left - 1))
    assert len(block(argv)) == size
    return argv


def recorded_prefix(argv: list[bytes]) -> list[bytes]:
    """What the first ARGV_MAX bytes of argv's block split into."""
    parts = block(argv)[:ARGV_MAX].split(b"\0")
    if parts[-1] == b"":
        parts.pop()
    return parts


def text(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


ESCAPES = [
    b"escapes",
    b"line1\nline2\n",
    b"\x1b]0;pwned\x07",
    b"\x1b[2J",
    b"tab\there\t",
    "ünïcødé ✓ 日本語 🎉".encode(),
    b"",
    b"back\\slash \"quoted\" 'single'",
    b"\r\x7f\x01",
    b"not utf-8: \xff\xfe",
    b"",
]

SUCCESS_CASES = [
    # name, argv, truncated. Since BPF ABI 2 argv over ARGV_MAX is complete
    # (continuation records): nothing the kernel accepted is cut.
    ("over", [b"over"] + [b"%04d-" % i + b"x" * 250 for i in range(200)], False),
    ("exact", argv_of_size(b"exact", ARGV_MAX), False),
    ("under", argv_of_size(b"under", ARGV_MAX - 1), False),
    ("one over", argv_of_size(b"one-over", ARGV_MAX + 1), False),
    ("escapes", ESCAPES, False),
]


def test_exec_argv_exact(record: Recorder, progs: dict[str, Path], tmp_path: Path) -> None:
    nop = str(progs["nop"])
    script = write_script(tmp_path / "execs.py", f"""
import subprocess
for argv in {[argv for _, argv, _ in SUCCESS_CASES]!r}:
    subprocess.run(argv, executable={nop!r}, check=True)
""")
    rec = record([PYTHON, str(script)])

    assert rec.status == 0
    execs = [e for e in rec.of_type("exec") if e["path"] == nop]
    assert len(execs) == len(SUCCESS_CASES)
    for (name, argv, truncated), e in zip(SUCCESS_CASES, execs, strict=True):
        assert (name, e["return_code"], e["requested_path"], e["comm"]) == (name, 0, nop, "nop")
        assert (name, e["argc"], e["argv_truncated"]) == (name, len(argv), truncated)
        if truncated:
            assert len(block(argv)) > ARGV_MAX
            assert e["argv"] == [text(a) for a in recorded_prefix(argv)], name
            assert len(block([a.encode() for a in e["argv"]])) in (ARGV_MAX, ARGV_MAX + 1)
        else:
            assert e["argv"] == [text(a) for a in argv], name
    assert execs[-1]["argv"][2] == "\x1b]0;pwned\x07"
    assert execs[-1]["argv"][9] == "not utf-8: \\xff\\xfe"
    assert rec.info["truncated"]["argv"] == 0


def test_failed_exec_of_a_non_executable(
    record: Recorder, progs: dict[str, Path], tmp_path: Path
) -> None:
    target = tmp_path.resolve() / "not-executable.sh"
    target.write_text("#!/bin/sh\necho never\n")
    target.chmod(0o644)
    exec_as = str(progs["exec_as"])
    args = ["runme", "--flag", "two words", "\x1b[2J"]

    status, events, _ = record([exec_as, str(target), *args])

    assert status == 13  # exec_as exits with the errno
    pid = events[0]["pid"]
    summary = [(e["type"], e["pid"], e.get("return_code"), e.get("requested_path"),
                e.get("argv"), e.get("argc"), e.get("argv_truncated")) for e in events]
    assert summary == [
        ("exec", pid, 0, exec_as, [exec_as, str(target), *args], 6, False),
        ("exec", pid, -13, str(target), args, 4, False),
        ("exit", pid, None, None, None, None, None),
    ]
    assert events[1]["path"] == str(target)
    assert events[1]["comm"] == "exec_as"
    assert events[2]["exit_code"] == 13


FAILED_CASES = [
    # name, argv of an exec that fails (EACCES)
    ("100 arguments", ["many"] + [f"arg{i}" for i in range(99)]),
    ("40 KiB", ["big"] + [f"{i:02d}" + "b" * 1998 for i in range(20)]),
    ("an argument of 5000 bytes", ["long-arg", "c" * 5000, "after"]),
]


@pytest.fixture(scope="module")
def failed_execs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, object]]:
    """One recording of a script whose execs of a non-executable file fail:
    the failed exec events, in FAILED_CASES order."""
    d = tmp_path_factory.mktemp("failed_execs")
    target = d.resolve() / "not-executable"
    target.write_bytes(b"")
    script = write_script(d / "fail.py", f"""
import subprocess
for argv in {[argv for _, argv in FAILED_CASES]!r}:
    try:
        subprocess.run(argv, executable={str(target)!r})
    except PermissionError:
        pass
    else:
        raise SystemExit("the exec did not fail")
""")
    rec = record_into(d, [PYTHON, str(script)])
    assert rec.status == 0
    failed = [e for e in rec.of_type("exec") if e["path"] == str(target)]
    assert [e["return_code"] for e in failed] == [-13] * len(FAILED_CASES)
    return failed


def test_failed_exec_argv_limits(failed_execs: list[dict[str, object]]) -> None:
    """A failed exec's argv is read from the caller, pointer by pointer: at
    most 64 arguments (SR_FAILED_EXEC_MAX_ARGS) and 32 KiB, then truncated."""
    many, big, _ = failed_execs
    assert many["argv"] == FAILED_CASES[0][1][:64]
    assert many["argv_truncated"] is True
    big_argv = [a.encode() for a in FAILED_CASES[1][1]]
    assert big["argv"] == [text(a) for a in recorded_prefix(big_argv)]
    assert big["argv_truncated"] is True


def test_failed_exec_argc(failed_execs: list[dict[str, object]]) -> None:
    """Documented in sessrec.h: past SR_FAILED_EXEC_MAX_ARGS a failed exec's
    argc counts the arguments read (and argv_truncated says there were more);
    within the count limit but past 32 KiB, argc is the original count."""
    many, big, _ = failed_execs
    assert many["argc"] == 64
    assert big["argc"] == len(FAILED_CASES[1][1])


def test_failed_exec_long_argument_is_whole(failed_execs: list[dict[str, object]]) -> None:
    long_arg = failed_execs[2]
    assert long_arg["argv"] == FAILED_CASES[2][1]
    assert long_arg["argv_truncated"] is False


def test_leader_that_does_not_exist(record: Recorder) -> None:
    status, events, info = record(["/nonexistent/cmd", "arg1"])

    assert status == 127
    assert info["exit_status"] == 127
    execs = [e for e in events if e["type"] == "exec"]
    assert [(e["return_code"], e["path"], e["requested_path"], e["argv"], e["argc"])
            for e in execs] == [(-2, "/nonexistent/cmd", "/nonexistent/cmd",
                                 ["/nonexistent/cmd", "arg1"], 2)]
    # The process that tried is in the session, and it is gone.
    assert [e["pid"] for e in events if e["type"] == "exit"] == [execs[0]["pid"]]


def test_command_not_on_path(record: Recorder) -> None:
    name = "no-such-command-xyz"
    status, events, _ = record([name, "--help"])

    assert status == 127
    tried = [os.path.join(d, name) for d in os.get_exec_path()]
    execs = [e for e in events if e["type"] == "exec"]
    assert [e["requested_path"] for e in execs] == tried
    assert {e["return_code"] for e in execs} == {-2}
    assert all(e["argv"] == [name, "--help"] for e in execs)


@pytest.fixture(scope="module")
def longest_paths(tmp_path_factory: pytest.TempPathFactory, progs: dict[str, Path]) -> Recording:
    """A recording of a successful exec, a failed exec and a failed chdir,
    each with a path of 4095 bytes: the longest the kernel takes."""
    d = tmp_path_factory.mktemp("longest").resolve()
    shutil.copy(progs["nop"], d / "zzz")
    script = write_script(d / "longest.py", """
import os, subprocess
dots = "./" * 2046
subprocess.run([dots + "zzz"], check=True)
for call in (lambda: subprocess.run([dots + "zzy"]), lambda: os.chdir(dots + "zzx")):
    try:
        call()
    except FileNotFoundError:
        pass
    else:
        raise SystemExit("expected ENOENT")
""")
    return record_into(d, [PYTHON, str(script)], "-C", str(d))


def test_longest_paths_in_exec_and_chdir(longest_paths: Recording) -> None:
    dots = "./" * 2046
    rec = longest_paths
    assert rec.status == 0
    d = rec.info["cwd"]
    long_execs = [(e["requested_path"], e["path"], e["return_code"])
                  for e in rec.of_type("exec") if e["requested_path"].startswith(dots)]
    assert long_execs == [(dots + "zzz", f"{d}/zzz", 0), (dots + "zzy", f"{d}/zzy", -2)]
    chdirs = [(e["requested_path"], e["return_code"]) for e in rec.of_type("chdir")]
    assert chdirs == [(dots + "zzx", -2)]


def test_longest_paths_in_exec_and_chdir_are_not_truncated(longest_paths: Recording) -> None:
    assert longest_paths.info["truncated"]["path"] == 0


def test_fexecve_is_resolved_through_the_descriptor(
    record: Recorder, progs: dict[str, Path]
) -> None:
    """fexecve (execveat with AT_EMPTY_PATH) shows as /dev/fd/N; the path is
    the file that descriptor N was opened on."""
    nop = str(progs["nop"])
    code = f"import os; os.execve(os.open({nop!r}, os.O_RDONLY), ['fexec', 'x'], {{}})"
    status, events, _ = record([PYTHON, "-c", code])

    assert status == 0
    python = events[0]["pid"]
    opened = [e for e in events if e["type"] == "open" and e["requested_path"] == nop]
    assert [(e["pid"], e["return_code"]) for e in opened] == [(python, 3)]
    execs = [(e["pid"], e["requested_path"], e["path"], e["argv"], e["return_code"])
             for e in events if e["type"] == "exec"]
    assert execs[1:] == [(python, "/dev/fd/3", nop, ["fexec", "x"], 0)]
