"""The read commands on crafted hostile files (issue 11, "Files from an
attacker"), each in a child process under 512 MiB of address space and a
timeout that catches only hangs and quadratic blow-ups: a one-line error or
what could be read, never a traceback or MemoryError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import (
    ISSUE_BOMB,
    events_bomb,
    header_bomb,
    header_key_bomb,
    run_bounded,
    trailer_bomb,
)

READ_COMMANDS = (
    ["info"],
    ["info", "--json"],
    ["replay"],
    ["tree"],
    ["export", "--format", "jsonl"],
    ["export", "--format", "teleport"],
    ["export", "--format", "ecs"],
    ["html", "-o", "{tmp}/out.html"],
)


def check_bounded(path: Path, tmp: Path, commands: tuple[list[str], ...] = READ_COMMANDS,
                  timeout: float = 120) -> list[tuple[int, str]]:
    """Each command on path: exit 0 or 1, only sessrec's own lines on stderr.
    Returns (status, stderr) of each."""
    out = []
    for cmd in commands:
        argv = [cmd[0], str(path), *(a.format(tmp=tmp) for a in cmd[1:])]
        r = run_bounded(argv, timeout=timeout)
        assert "Traceback" not in r.stderr and "MemoryError" not in r.stderr, (argv, r.stderr)
        assert r.status in (0, 1), (argv, r.status, r.stderr)
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
                   for s, e in results)
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
