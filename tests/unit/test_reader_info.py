"""replay.info.format_info: the human-readable `sessrec info`."""

from __future__ import annotations

from pathlib import Path

from srec_util import GOLDEN, HEADER, ev, write_session

from replay.info import format_info, session_info


def test_golden_text() -> None:
    text = format_info(session_info(GOLDEN))
    assert text.splitlines() == [
        "session      6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b",
        "user         alice (uid 1000, login uid 1000, audit session 42)",
        "host         build-07, kernel 6.8.0-45-generic",
        "command      /bin/bash -l",
        "cwd          /home/alice",
        "started      2026-11-21T11:10:02.000000Z",
        "ended        2026-11-21T11:10:02.025123Z (cgroup-empty)",
        "duration     25.1 ms",
        "exit status  3",
        "events       2 fork, 4 exec, 3 exit, 8 open, 4 connect, 3 chdir",
        "lost         2 open",
        "truncated    argv 1, path 1",
        "format       1.0",
        "file         complete (its events were not read: `sessrec info --check` reads them)",
    ]


def test_unfinished_and_hostile(tmp_path: Path) -> None:
    p = tmp_path / "u.srec"
    header = {
        **HEADER,
        "login_uid": None,
        "audit_session_id": None,
        "hostname": "evil\x1b]0;pwned\x07",
        "command": ["sh", "-c", "echo 'a b'"],
        "cwd": b"/tmp/\x1b[2J\xff",
    }
    write_session(p, [ev(1), "flush"], trailer=None, header=header)
    lines = format_info(session_info(p)).splitlines()
    assert "\x1b" not in "".join(lines) and "\x07" not in "".join(lines)
    assert "user         alice (uid 1000)" in lines
    assert "host         evil\\x1b]0;pwned\\x07, kernel 6.8.0-45-generic" in lines
    assert "command      sh -c 'echo '\"'\"'a b'\"'\"''" in lines
    assert "cwd          /tmp/\\x1b[2J\\xff" in lines
    assert "ended        unknown: the recording did not finish" in lines
    assert "exit status  unknown" in lines
    assert "events       1 fork" in lines
    assert "lost         none" in lines
    # the event at ts 1: to the last event, as ls and the HTML page say
    assert "duration     0.000 ms, to the last event (unfinished)" in lines
    assert lines[-1].startswith("file         truncated: read up to byte ")
    assert lines[-1].endswith("the recording did not finish (no trailer)")
