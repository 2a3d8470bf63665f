"""`sessrec tree`: collapsed runs, box drawing or ASCII, markers, subtrees,
and any depth."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from srec_util import GOLDEN, write_session

from sessrec.cli import main

FORK, EXEC, EXIT, OPEN = 1, 2, 3, 4
MS = 1_000_000


def ev(t: int, ms: float, pid: int, ppid: int, body: list[Any], comm: bytes = b"sh") -> list[Any]:
    return [t, int(ms * MS), pid, pid, ppid, 1000, comm, 0, *body]


def run_child(ms: float, parent: int, pid: int, prog: bytes, code: int = 0) -> list[Any]:
    name = prog.rsplit(b"/", 1)[-1]
    return [
        ev(FORK, ms, parent, 999, [pid]),
        ev(EXEC, ms + 0.1, pid, parent, [0, prog, [name], 1, pid, 0], name),
        ev(EXIT, ms + 0.4, pid, parent, [code << 8], name),
    ]


def tree(path: Path, *args: str, stdout: io.StringIO | None = None) -> list[str]:
    out = stdout if stdout is not None else io.StringIO()
    err = io.StringIO()
    assert main(["tree", str(path), *args], stdout=out, stderr=err) == 0
    return out.getvalue().splitlines()


def loop_session(tmp_path: Path) -> Path:
    """A shell loop: /bin/true x300, one failing grep, /bin/true x2."""
    p = tmp_path / "loop.srec"
    if p.exists():
        return p
    records: list[Any] = [ev(EXEC, 0, 1000, 999, [0, b"/bin/sh", [b"sh"], 1, 1000, 0])]
    ms = 1.0
    pid = 2000
    for _ in range(300):
        records += run_child(ms, 1000, pid, b"/bin/true")
        ms += 1
        pid += 1
    records += run_child(ms, 1000, pid, b"/bin/grep", code=1)
    for _ in range(2):
        ms += 1
        pid += 1
        records += run_child(ms, 1000, pid, b"/bin/true")
    records.append(ev(EXIT, ms + 5, 1000, 999, [0]))
    write_session(p, records)
    return p


def test_identical_sibling_leaves_collapse(tmp_path: Path) -> None:
    got = tree(loop_session(tmp_path))
    assert got[0].startswith("1000 sh (/bin/sh)  [exit 0, ")
    assert got[1] == (
        "├── 2000…2299 true (/bin/true) \u00d7300  [exit 0, 0.400 ms each, 0 files, 0 connections]"
    )
    assert got[2].startswith("├── 2300 grep (/bin/grep)  [exit 1, 0.400 ms, ")
    # a run of two stays two lines
    assert got[3].startswith("├── 2301 true (/bin/true)  [exit 0")
    assert got[4].startswith("└── 2302 true (/bin/true)  [exit 0")
    assert got[5] == "304 processes"
    assert len(tree(loop_session(tmp_path), "--no-collapse")) == 1 + 303 + 1


def test_ascii_when_asked_or_when_the_output_is_not_utf8(tmp_path: Path) -> None:
    p = loop_session(tmp_path)
    got = tree(p, "--ascii")
    assert got[1].startswith("|-- 2000...2299 true (/bin/true) x300  [")
    assert got[4].startswith("`-- 2302 true")

    class Latin1(io.StringIO):
        encoding = "latin-1"

    got = tree(GOLDEN, stdout=Latin1())
    assert got[1].startswith("|-- 1001 env 'A=1\\nB=2'")
    assert "caf\\xe9" in got[1]  # non-ASCII escaped, not mangled
    "\n".join(got).encode("ascii")


def test_markers_and_subtree(tmp_path: Path) -> None:
    p = tmp_path / "o.srec"
    write_session(p, [
        ev(EXEC, 0, 1000, 999, [0, b"/bin/sh", [b"sh"], 1, 1000, 0]),
        ev(FORK, 1, 1000, 999, [1001]),
        ev(FORK, 2, 1001, 1000, [1002]),
        ev(EXIT, 3, 1001, 1000, [0]),
        ev(OPEN, 4, 1002, 1, [3, 1, -100, b"/x", 0, 0]),  # reparented to init
        ev(OPEN, 5, 1002, 1, [3, 1, -100, b"/y", 0, 0], b"sh"),
        ev(EXIT, 6, 1000, 999, [9]),  # killed; 1002 never exits
    ])
    got = tree(p)
    assert got[0].startswith("1000 sh (/bin/sh)  [killed by SIGKILL, 6.0 ms,")
    assert got[2] == (
        "    └── 1002 sh (/bin/sh)  [no exit seen, 2 files, 0 connections, orphaned, "
        "reparented to 1]"
    )
    assert got[-1] == "3 processes, 1 orphaned, 1 without an exit"
    sub = tree(p, "--pid", "1001")
    assert sub[0].startswith("1001 sh (/bin/sh)  [exit 0, 2.0 ms") and len(sub) == 3
    err = io.StringIO()
    status = main(["tree", str(p), "--pid", "7"], stdout=io.StringIO(), stderr=err)
    assert status == 2 and err.getvalue() == f"sessrec: error: no process 7 in {p}\n"


def test_any_depth(tmp_path: Path) -> None:
    records: list[Any] = [ev(EXEC, 0, 1000, 999, [0, b"/bin/sh", [b"sh"], 1, 1000, 0])]
    for i in range(1500):  # deeper than Python's recursion limit
        records.append(ev(FORK, i + 1, 1000 + i, 999 + i, [1001 + i]))
    p = tmp_path / "deep.srec"
    write_session(p, records)
    got = tree(p)
    assert len(got) == 1502
    # indented 64 levels at most, then each line says its depth
    assert got[64].startswith(" " * 4 * 63 + "└── 1064 sh (/bin/sh)  [no exit seen")
    assert got[65].startswith(" " * 4 * 64 + "[depth 65] └── 1065 sh")
    assert got[-2].startswith(" " * 4 * 64 + "[depth 1500] └── 2500 sh (/bin/sh)  [no exit seen")
    assert max(map(len, got)) < 400


def test_long_argv_is_shortened_unless_full(tmp_path: Path) -> None:
    argv = [b"cc"] + [b"-Dx%d" % i for i in range(200)]
    p = tmp_path / "long.srec"
    write_session(p, [ev(EXEC, 0, 1000, 999, [0, b"/usr/bin/cc", argv, len(argv), 1000, 0])])
    short, full = tree(p)[0], tree(p, "--full")[0]
    assert "…" in short and len(short) < 300
    assert "-Dx199" in full and "…" not in full
