"""`sessrec replay`: filters, escaping, colour, pacing and --follow."""

from __future__ import annotations

import io
import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from srec_util import GOLDEN, HEADER, TRAILER, write_session

from recorder.writer import SessionWriter
from replay.reader import open_session
from replay.terms import parse_dest, parse_when
from replay.text import printable, show, use_color
from replay.timeline import Pacer, parse_types, write_timeline
from sessrec import linux
from sessrec.cli import main
from sessrec.errors import UsageError

FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6
MS = 1_000_000


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def lines(*argv: str) -> list[str]:
    status, out, err = run("replay", str(GOLDEN), *argv)
    assert status == 0 and err == ""
    return out.splitlines()


def cols(line: str) -> tuple[str, str, str]:
    """(pid, comm, type) of a timeline line."""
    parts = line.split()
    return parts[1], parts[2], parts[3]


# --- filters on the golden file -------------------------------------------------


def test_all_events_in_order() -> None:
    out = lines()
    assert len(out) == 24
    assert [cols(x)[2] for x in out[:3]] == ["exec", "open", "open"]


def test_type_filter_repeatable_and_comma() -> None:
    assert {cols(x)[2] for x in lines("--type", "exit")} == {"exit"}
    got = lines("--type", "fork,exit", "--type", "connect")
    assert {cols(x)[2] for x in got} == {"fork", "exit", "connect"} and len(got) == 9
    status, _out, err = run("replay", str(GOLDEN), "--type", "opne")
    assert status == 2 and err.startswith("sessrec: error: unknown event type 'opne'")
    assert err.count("\n") == 1


def test_pid_and_children() -> None:
    assert {cols(x)[0] for x in lines("--pid", "1001")} == {"1001"}
    assert {cols(x)[0] for x in lines("--pid", "1000", "--children")} == {"1000", "1001", "1002"}
    assert {cols(x)[0] for x in lines("--pid", "1001", "--children")} == {"1001"}
    assert lines("--pid", "4242") == []
    status, _out, err = run("replay", str(GOLDEN), "--children")
    assert status == 2 and "--children needs --pid" in err


def test_path_glob_matches_resolved_and_requested() -> None:
    assert len(lines("--path", "/home/alice/*")) == 2  # todo.txt, projects/sessrec
    # the requested (relative) path matches too
    (hit,) = lines("--path", "notes/*")
    assert "/home/alice/todo.txt" in hit
    got = [cols(x)[2] for x in lines("--path", "/usr/bin/*")]
    assert got == ["chdir", "exec", "open", "exec"]  # nonexistent, env, python3, a.out
    assert lines("--path", "*.nothing") == []


def test_dest() -> None:
    assert len(lines("--dest", "192.0.2.53")) == 1
    assert len(lines("--dest", "192.0.2.53:53")) == 1
    assert lines("--dest", "192.0.2.53:54") == []
    assert len(lines("--dest", "[2001:db8::1]:443")) == 1
    assert len(lines("--dest", "2001:db8::1")) == 1
    assert len(lines("--dest", "2001:db8::/32")) == 1
    assert len(lines("--dest", "192.0.2.0/24")) == 1
    assert len(lines("--dest", ":443")) == 1
    assert len(lines("--dest", "@dbus-*")) == 1
    assert len(lines("--dest", "/run/systemd/journal/socket")) == 1
    assert len(lines("--dest", "192.0.2.53", "--dest", ":443")) == 2  # any of them


def test_dest_matcher() -> None:
    mapped = linux.SockAddr(linux.AF_INET6, "inet6", "::ffff:10.0.0.5", 443)
    assert parse_dest("10.0.0.5").matches(mapped)
    assert parse_dest("10.0.0.0/8:443").matches(mapped)
    assert not parse_dest("10.0.0.5:80").matches(mapped)
    scoped = linux.SockAddr(linux.AF_INET6, "inet6", "fe80::1%2", 22)
    assert parse_dest("[fe80::1]:22").matches(scoped)
    unix = linux.SockAddr(linux.AF_UNIX, "unix", "/run/x.sock", None)
    assert parse_dest("/run/*.sock").matches(unix) and not parse_dest("/run/*.sock").matches(
        linux.SockAddr(linux.AF_INET, "inet", "/run/x.sock", 1))
    for bad in ("10.0.0.5:http", "[::1", "[::1]x", "1.2.3.4:99999", "example.com"):
        with pytest.raises(UsageError):
            parse_dest(bad)


def test_failed() -> None:
    got = lines("--failed")
    assert [cols(x)[2] for x in got] == ["open", "chdir", "exec", "open", "exit", "exit", "exit"]
    assert all("EINPROGRESS" not in x for x in got)


def test_since_until() -> None:
    assert len(lines("--since", "0.020")) == 6
    assert len(lines("--until", "5ms")) == 4
    assert len(lines("--since", "10ms", "--until", "0.012")) == 2
    # absolute: the clock starts at 11:10:02 UTC
    assert len(lines("--since", "2026-11-21T11:10:02.020Z")) == 6
    assert len(lines("--since", "2026-11-21T12:10:02.020+01:00")) == 6
    assert lines("--since", "2030-01-01T00:00:00Z") == []
    status, _out, err = run("replay", str(GOLDEN), "--since", "yesterday")
    assert status == 2 and "cannot read time 'yesterday'" in err


def test_parse_helpers() -> None:
    assert parse_when("1.5", 0) == 1_500_000_000
    assert parse_when("2m", 0) == 120_000_000_000
    assert parse_when("1h", 0) == 3_600_000_000_000
    assert parse_when("250ms", 0) == 250_000_000
    assert parse_when("1970-01-01T00:00:01.000000001Z", 1) == 1_000_000_000
    # a time without a zone is UTC, as for search
    assert parse_when("1970-01-01T00:00:02", 1_000_000_000) == 1_000_000_000
    with pytest.raises(UsageError):
        parse_when("yesterday", 0)
    assert parse_types(["exec, open", "exit"]) == {2, 4, 3}


# --- escaping ----------------------------------------------------------------------

EVIL = [b"\x1b]0;pwned\x07", b"\x1b[2J", b"a\nb", b"\xe2\x80\xaeevil", b"\x9bc"]


def test_printable() -> None:
    assert printable("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("a\nb\tc\r") == "a\\nb\\tc\\r"
    assert printable("\u202eevil\u2066") == "\\u202eevil\\u2066"  # bidi overrides
    assert printable("\x9b\x7f") == "\\x9b\\x7f"  # C1 CSI, DEL
    assert printable("café ünïcode") == "café ünïcode"
    assert show(b"\xff\x1b") == "\\xff\\x1b"


def test_escape_sequences_never_reach_the_terminal(tmp_path: Path) -> None:
    p = tmp_path / "evil.srec"
    comm = b"\x1b[31mred"
    write_session(p, [
        [EXEC, MS, 1000, 1000, 999, 1000, comm, 0, 0, b"/bin/\x1b[2Jx", EVIL, 5, 1000, 0],
        [OPEN, 2 * MS, 1000, 1000, 999, 1000, comm, 0, -2, 1, -100, b"/tmp/\x1b]0;pwned\x07",
         0, 0],
        [CONNECT, 3 * MS, 1000, 1000, 999, 1000, comm, 0, 0, 3, 1, 0,
         struct.pack("<H", 1) + b"/run/\x1b[2J.sock\0"],
    ])
    for argv in (["replay", str(p), "--color=always"], ["tree", str(p), "--color=always"],
                 ["replay", str(p)], ["tree", str(p)]):
        status, out, _err = run(*argv)
        assert status == 0
        raw = out.replace("\x1b[1;31m", "").replace("\x1b[0m", "").replace("\x1b[2m", "")
        raw = raw.replace("\x1b[1m", "")
        assert "\x1b" not in raw and "\x07" not in raw and "\x9b" not in raw, argv
        assert "\u202e" not in raw
        assert "\\x1b]0;pwned\\x07" in out and "\\x1b[2J" in out
        if argv[0] == "replay":
            assert "\\x1b[31mred" in out  # comm


# --- colour ------------------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_use_color() -> None:
    assert use_color("always", io.StringIO(), {"NO_COLOR": "1"})
    assert not use_color("never", Tty(), {})
    assert use_color("auto", Tty(), {})
    assert not use_color("auto", Tty(), {"NO_COLOR": "1"})
    assert not use_color("auto", Tty(), {"TERM": "dumb"})
    assert not use_color("auto", io.StringIO(), {})


def test_failures_stand_out_in_colour() -> None:
    out = lines("--color=always", "--failed", "--type", "open")
    assert all("\x1b[1;31m" in x for x in out)
    plain = lines("--type", "open")
    assert all("\x1b" not in x for x in plain)


def test_auto_colour_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = Tty()
    assert main(["replay", str(GOLDEN), "--failed"], stdout=out, stderr=io.StringIO()) == 0
    assert "\x1b[1;31m" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = Tty()
    assert main(["replay", str(GOLDEN), "--failed"], stdout=out, stderr=io.StringIO()) == 0
    assert "\x1b" not in out.getvalue()


def test_ascii_output_stream() -> None:
    class Ascii(io.StringIO):
        encoding = "ascii"

    out = Ascii()
    assert main(["replay", str(GOLDEN)], stdout=out, stderr=io.StringIO()) == 0
    out.getvalue().encode("ascii")  # no UnicodeEncodeError: all escaped
    assert "caf\\xe9" in out.getvalue()


# --- pacing and follow -------------------------------------------------------------


def test_pacer() -> None:
    slept: list[float] = []
    pacer = Pacer(2.0, 0.5, slept.append)
    for ts in (0, 200 * MS, 200 * MS, 3000 * MS, 3100 * MS):
        pacer.wait(ts)
    assert slept == [0.1, 0.5, 0.05]  # halved, the 2.8 s gap capped, no wait for a tie


def test_speed_sleeps_between_events(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    status, out, _err = run("replay", str(GOLDEN), "--speed", "10", "--type", "exit")
    assert status == 0 and len(out.splitlines()) == 3
    assert slept == pytest.approx([0.0003, 0.0002])
    status, _out, err = run("replay", str(GOLDEN), "--speed", "0")
    assert status == 2 and "not a positive number" in err


def test_follow_a_growing_file(tmp_path: Path) -> None:
    p = tmp_path / "live.srec"
    w = SessionWriter(p, HEADER)
    w.add([EXEC, MS, 1000, 1000, 999, 1000, b"sh", 0, 0, b"/bin/sh", [b"sh"], 1, 1000, 0])
    w.flush()
    out = io.StringIO()
    result: dict[str, Any] = {}

    def reader() -> None:
        with open_session(p) as s:
            result["n"] = write_timeline(s, out, follow=True, poll_interval=0.01)
            result["damage"] = s.damage

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    w.add([EXIT, 2 * MS, 1000, 1000, 999, 1000, b"sh", 0, 0])
    w.flush()
    time.sleep(0.05)
    w.close(TRAILER)
    t.join(5)
    assert not t.is_alive()
    assert result == {"n": 2, "damage": None}
    assert [cols(x)[2] for x in out.getvalue().splitlines()] == ["exec", "exit"]


def test_an_unreadable_path_or_argv_is_said_so(tmp_path: Path) -> None:
    """SR_FLAG_READ_FAILED: the kernel could not read the path, argv or
    address; the empty value is not shown as if it were the data."""
    p = tmp_path / "rf.srec"
    write_session(p, [
        [EXEC, 1, 1000, 1000, 1, 0, b"sh", 4, 0, b"", [], 2, 1000, 0],
        [OPEN, 2, 1000, 1000, 1, 0, b"sh", 4, -14, 1, -100, b"", 0, 0],
        [OPEN, 3, 1000, 1000, 1, 0, b"sh", 0, 3, 1, -100, b"/etc/passwd", 0, 0],
    ])
    status, out, err = run("replay", str(p))
    shown = out.splitlines()
    assert status == 0 and err == "" and len(shown) == 3
    assert all("[not read: the kernel could not read it" in line for line in shown[:2])
    assert "not read" not in shown[2]
    status, out, err = run("export", str(p), "--format", "jsonl")
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d.get("read_failed") for d in docs] == [True, True, None]
