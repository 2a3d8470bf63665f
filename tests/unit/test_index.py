"""sessrec ls and sessrec search, and the SQLite index behind them."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest
from srec_util import GOLDEN, HEADER, TRAILER, ev, write_session

from recorder.writer import SessionWriter
from replay.index import SessionIndex, open_index
from replay.index_location import INDEX_NAME, choose_index_path
from replay.index_query import Query, sql_glob_equivalent
from replay.terms import parse_dest, parse_time
from sessrec.cli import main
from sessrec.errors import UsageError

DAY_NS = 86400 * 1_000_000_000
BASE_NS = HEADER["clock"]["wall_ns"]  # 2026-11-21T11:10:02Z
NOW_NS = BASE_NS + 10 * DAY_NS


def _inet(addr: bytes, port: int) -> bytes:
    return struct.pack("<H", 2) + struct.pack(">H", port) + addr + bytes(8)


def _header(sid: str, user: str, day: int, **extra: Any) -> dict[str, Any]:
    wall = BASE_NS + day * DAY_NS
    return {**HEADER, "session_id": sid, "user": user,
            "clock": {"wall_ns": wall, "mono_ns": 1}, **extra}


def _exec(pid: int, argv: list[bytes], ts: int = 1, path: bytes | None = None) -> list[Any]:
    return ev(2, pid, [0, path or argv[0], argv, len(argv), pid, 0], ts=ts)


def _open(pid: int, path: bytes, ret: int = 3, ts: int = 2) -> list[Any]:
    return ev(4, pid, [ret, 1, -100, path, 0, 0], ts=ts)


def _connect(pid: int, addr: bytes, port: int, ts: int = 3) -> list[Any]:
    return ev(5, pid, [0, 3, 1, 6, _inet(addr, port)], ts=ts)


@pytest.fixture
def sessions(tmp_path: Path) -> Path:
    """Three sessions, in file names that do not sort by start time:
    a (day 5, bob): reads /etc/shadow, connects to 10.0.0.5:22;
    b (day 1, alice): runs curl, connects to 192.0.2.7:443;
    c (day 8, alice, in a subdirectory, unfinished): reads /etc/passwd."""
    d = tmp_path / "sessions"
    (d / "host2").mkdir(parents=True)
    write_session(d / "a.srec", [
        _exec(1000, [b"/bin/cat", b"/etc/shadow"]),
        _open(1000, b"/etc/shadow", ts=2_000_000_000),
        _connect(1000, bytes([10, 0, 0, 5]), 22, ts=3_000_000_000),
    ], header=_header("aaaa", "bob", 5))
    write_session(d / "b.srec", [
        _exec(1000, [b"curl", b"-s", b"https://example.com/x"], path=b"/usr/bin/curl"),
        _connect(1000, bytes([192, 0, 2, 7]), 443),
        _open(1000, b"/etc/ssl/certs/ca.pem"),
    ], header=_header("bbbb", "alice", 1))
    write_session(d / "host2" / "c.srec", [_open(1000, b"/etc/passwd"), "flush"],
                  trailer=None, header=_header("cccc", "alice", 8))
    return d


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _search(d: Path, q: Query, **kw: Any) -> list[str]:
    index, _ = open_index(str(d))
    with index:
        return [m.session.session_id for m in index.search(q, **kw)]


# --- ls ---------------------------------------------------------------------------


def test_ls_sorted_by_start(sessions: Path) -> None:
    code, out, err = _cli("ls", str(sessions))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["STARTED", "(UTC)", "DURATION", "USER"]
    assert [line.split()[-1] for line in lines[1:]] == ["b.srec", "a.srec", "host2/c.srec"]
    assert lines[1].split()[:5] == ["2026-11-22", "11:10:02", "0.000", "ms", "alice"]
    assert "complete" in lines[1] and "truncated" in lines[3]
    assert (sessions / INDEX_NAME).is_file()


def test_ls_json(sessions: Path) -> None:
    _, out, _ = _cli("ls", "--json", str(sessions))
    doc = json.loads(out)
    rows = doc["sessions"]
    assert [r["session_id"] for r in rows] == ["bbbb", "aaaa", "cccc"]
    a = rows[1]
    assert a["user"] == "bob" and a["audit_session_id"] == 42 and a["status"] == "complete"
    assert a["counts"]["exec"] == 1 and a["counts"]["open"] == 1 and a["total_events"] == 3
    assert a["duration_s"] == 3.0  # to the last event: the trailer's ended_at is earlier
    c = rows[2]
    assert c["status"] == "truncated" and not c["complete"]
    assert c["damage"]["reason"] == "the recording did not finish (no trailer)"
    assert c["ended_at"] is None and c["file"] == os.path.join("host2", "c.srec")


def test_ls_empty_and_missing_dir(tmp_path: Path) -> None:
    assert _cli("ls", str(tmp_path)) == (0, "", "")
    code, _, err = _cli("ls", str(tmp_path / "nope"))
    assert code == 2 and "is not a directory" in err


# --- search -------------------------------------------------------------------------


def test_search_path_since(sessions: Path) -> None:
    code, out, _ = _cli("search", str(sessions), "--path", "/etc/shadow")
    assert code == 0
    assert out.splitlines()[0].startswith("aaaa  bob@build-07  2026-11-26 11:10:02Z")
    # The exec's argv mentions /etc/shadow but --path matches paths only.
    assert "matched path: 1 event" in out
    assert "1000  comm  open  /etc/shadow O_RDONLY = 3" in out
    q = Query(paths=["/etc/shadow"], since_ns=parse_time("7d", NOW_NS))
    assert _search(sessions, q) == ["aaaa"]
    q = Query(paths=["/etc/shadow"], since_ns=parse_time("3d", NOW_NS))
    assert _search(sessions, q) == []


def test_search_and_across_or_within(sessions: Path) -> None:
    etc = "/etc/*"
    assert _search(sessions, Query(paths=[etc])) == ["bbbb", "aaaa", "cccc"]
    assert _search(sessions, Query(paths=[etc], users=["alice"])) == ["bbbb", "cccc"]
    assert _search(sessions, Query(paths=["/etc/shadow"], dests=[parse_dest("192.0.2.7")])) == []
    assert _search(sessions, Query(paths=["/etc/shadow", "/etc/passwd"])) == ["aaaa", "cccc"]
    dest = [parse_dest("10.0.0.5")]
    assert _search(sessions, Query(paths=["/etc/passwd"], dests=dest)) == []
    assert _search(sessions, Query(paths=["/etc/passwd"], dests=dest, any_kind=True)) == [
        "aaaa", "cccc"]
    # --any relaxes the event options only; --user still applies.
    assert _search(sessions, Query(paths=["/etc/passwd"], dests=dest, any_kind=True,
                                   users=["bob"])) == ["aaaa"]
    assert _search(sessions, Query(users=["1000"])) == ["bbbb", "aaaa", "cccc"]  # by uid


def test_search_cmd(sessions: Path) -> None:
    assert _search(sessions, Query(cmds=["curl"])) == ["bbbb"]  # the base name
    assert _search(sessions, Query(cmds=["curl -s *"])) == ["bbbb"]  # argv joined
    assert _search(sessions, Query(cmds=["/usr/bin/*"])) == ["bbbb"]  # the executable
    assert _search(sessions, Query(cmds=["*shadow*"])) == ["aaaa"]
    assert _search(sessions, Query(cmds=["wget"])) == []


def test_search_dest_forms(sessions: Path) -> None:
    def dest(text: str) -> list[str]:
        return _search(sessions, Query(dests=[parse_dest(text)]))

    assert dest("10.0.0.5") == ["aaaa"]
    assert dest("10.0.0.5:22") == ["aaaa"]
    assert dest("10.0.0.5:23") == []
    assert dest(":443") == ["bbbb"]
    assert dest("10.0.0.0/8") == ["aaaa"]
    assert dest("192.0.2.0/24:443") == ["bbbb"]
    assert dest("::ffff:10.0.0.5") == ["aaaa"]
    assert dest("[::ffff:10.0.0.5]:22") == ["aaaa"]


def test_search_time_window_sessions_only(sessions: Path) -> None:
    # Without event options, --since/--until select sessions that overlap.
    q = Query(since_ns=parse_time("2026-11-25", NOW_NS))
    assert _search(sessions, q) == ["aaaa", "cccc"]
    q = Query(until_ns=parse_time("2026-11-25T00:00:00Z", NOW_NS))
    assert _search(sessions, q) == ["bbbb"]
    _, out, _ = _cli("search", str(sessions), "--user", "alice", "--sessions-only",
                        "--json")
    doc = json.loads(out)
    assert [s["session_id"] for s in doc["sessions"]] == ["bbbb", "cccc"]
    assert "events" not in doc["sessions"][0]


def test_search_max_events_and_json(tmp_path: Path) -> None:
    write_session(tmp_path / "m.srec", [_open(1000, f"/tmp/f{i}".encode(), ts=i + 1)
                                        for i in range(30)])
    _, out, _ = _cli("search", str(tmp_path), "--path", "/tmp/*")
    assert "matched path: 30 events" in out and "... 10 more (--max-events 0 shows all)" in out
    assert out.count(" open ") == 20
    _, out, _ = _cli("search", str(tmp_path), "--path", "/tmp/*", "--max-events", "0",
                     "--json")
    s = json.loads(out)["sessions"][0]
    assert s["matched_events"] == 30 and len(s["events"]) == 30
    e = s["events"][0]
    assert e == {"type": "open", "time": "2026-11-21T11:10:02.000000001Z",
                 "time_ns": BASE_NS + 1, "pid": 1000, "ppid": 1, "comm": "comm",
                 "path": "/tmp/f0", "flags": 0, "flag_names": ["O_RDONLY"], "return_code": 3,
                 "tampered": False}


def test_glob_sql_and_fnmatch(sessions: Path) -> None:
    assert sql_glob_equivalent("/etc/*") and not sql_glob_equivalent("/etc/[ps]*")
    assert _search(sessions, Query(paths=["/etc/[ps]?ss*"])) == ["cccc"]
    assert _search(sessions, Query(paths=["/etc/[!p]hadow"])) == ["aaaa"]
    assert _search(sessions, Query(paths=["/etc/?hadow"])) == ["aaaa"]
    assert _search(sessions, Query(paths=["/ETC/*"])) == []  # case-sensitive


def test_bad_options(sessions: Path) -> None:
    for argv in (["--dest", "example.com"], ["--dest", "10.0.0.1:99999"],
                 ["--since", "last tuesday"], ["--path", ""], ["--max-events", "-1"],
                 ["--dest", "[::1"]):
        code, out, err = _cli("search", str(sessions), *argv)
        assert code == 2 and out == "" and err.startswith("sessrec: error: "), argv
        assert "Traceback" not in err


def test_parse_time() -> None:
    now = 1_000_000 * 1_000_000_000
    assert parse_time("90s", now) == now - 90 * 10**9
    assert parse_time("2w", now) == now - 14 * DAY_NS
    assert parse_time("2026-11-21", now) == BASE_NS - (11 * 3600 + 602) * 10**9
    assert parse_time("2026-11-21T12:10:02+01:00", now) == BASE_NS
    assert parse_time("2026-11-21 11:10:02.5", now) == BASE_NS + 500_000_000
    with pytest.raises(UsageError):
        parse_time("0001-01-01T00:00+01:00", now)


# --- the index: incremental, rebuilt, damaged and hostile files -----------------------------


def _sync(d: Path) -> Any:
    index, stats = open_index(str(d))
    index.close()
    return stats


def test_incremental_add_grow_delete(tmp_path: Path) -> None:
    write_session(tmp_path / "one.srec", [_open(1000, b"/etc/hosts")])
    s = _sync(tmp_path)
    assert s.added == ["one.srec"] and s.rebuilt == "missing"
    s = _sync(tmp_path)
    assert (s.added, s.grown, s.replaced, s.removed, s.unchanged) == ([], [], [], [], 1)
    assert s.rebuilt is None

    # A file being recorded: indexed, then re-indexed as it grows.
    w = SessionWriter(tmp_path / "live.srec", _header("live", "carol", 0))
    w.add(_open(1000, b"/first"))
    w.flush()
    s = _sync(tmp_path)
    assert s.added == ["live.srec"] and s.unchanged == 1
    assert _search(tmp_path, Query(paths=["/second"])) == []
    w.add(_open(1000, b"/second", ts=5))
    w.flush()
    s = _sync(tmp_path)
    assert s.grown == ["live.srec"]
    assert _search(tmp_path, Query(paths=["/second"])) == ["live"]
    w.close(TRAILER)
    s = _sync(tmp_path)
    assert s.grown == ["live.srec"]
    index, _ = open_index(str(tmp_path))
    with index:
        live = next(r for r in index.sessions() if r.session_id == "live")
    assert live.complete and live.total_events == 2

    # Replaced by another session; then deleted.
    os.unlink(tmp_path / "one.srec")
    write_session(tmp_path / "one.srec", [_open(1000, b"/etc/group")],
                  header=_header("other", "dan", 0))
    os.utime(tmp_path / "one.srec", ns=(1, 1))  # a different mtime even if fast
    s = _sync(tmp_path)
    assert s.replaced == ["one.srec"]
    assert _search(tmp_path, Query(paths=["/etc/hosts"])) == []
    assert _search(tmp_path, Query(paths=["/etc/group"])) == ["other"]
    os.unlink(tmp_path / "one.srec")
    s = _sync(tmp_path)
    assert s.removed == ["one.srec"]
    con = sqlite3.connect(tmp_path / INDEX_NAME)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] == 2  # live's
    assert con.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
    con.close()


def test_corrupt_index_rebuilt(sessions: Path) -> None:
    db = sessions / INDEX_NAME
    db.write_bytes(b"this is not an SQLite database" * 100)
    code, out, err = _cli("ls", str(sessions))
    assert code == 0 and len(out.splitlines()) == 4
    assert "was unreadable" in err and "rebuilt it from the files" in err
    assert _cli("ls", str(sessions))[2] == ""  # fixed for good


def test_index_damaged_midway_rebuilt(sessions: Path) -> None:
    _sync(sessions)
    db = sessions / INDEX_NAME
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 3 * page
    for i in range(page, len(data)):  # keep the first page (header, schema) intact
        data[i] = 0xA5
    db.write_bytes(bytes(data))
    code, out, err = _cli("search", str(sessions), "--path", "/etc/shadow")
    assert code == 0 and out.startswith("aaaa  bob@"), err
    assert "rebuilt it from the files" in err


def test_older_schema_rebuilt_quietly(sessions: Path) -> None:
    _sync(sessions)
    con = sqlite3.connect(sessions / INDEX_NAME)
    con.execute("PRAGMA user_version = 0")
    con.execute("DROP TABLE events")
    con.commit()
    con.close()
    s = _sync(sessions)
    assert s.rebuilt is not None and s.rebuilt.startswith("schema version 0")
    assert len(s.added) == 3
    assert _cli("search", str(sessions), "--path", "/etc/passwd")[2] == ""


def test_index_location(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert choose_index_path(str(d), env) == str(d / INDEX_NAME)
    # Someone planted a symlink where the index goes: not followed.
    (d / INDEX_NAME).symlink_to(tmp_path / "elsewhere")
    cached = choose_index_path(str(d), env)
    assert cached.startswith(str(tmp_path / "cache" / "sessrec" / "index-"))
    write_session(d / "x.srec", [_open(1000, b"/etc/hosts")])
    with SessionIndex(str(d), environ=env) as index:
        assert index.db_path == cached
        index.sync()
        assert [r.file for r in index.sessions()] == ["x.srec"]
    assert not (tmp_path / "elsewhere").exists()


def test_damaged_and_unreadable_files(tmp_path: Path) -> None:
    data = GOLDEN.read_bytes()
    (tmp_path / "short.srec").write_bytes(data[: len(data) - 200])
    bad = bytearray(data)
    bad[len(data) - 60] ^= 0xFF  # inside the trailer chunk: corrupt
    (tmp_path / "flipped.srec").write_bytes(bytes(bad))
    (tmp_path / "junk.srec").write_bytes(b"not a session")
    (tmp_path / "notes.txt").write_bytes(b"ignored")
    _, out, err = _cli("ls", "--json", str(tmp_path))
    doc = json.loads(out)
    by_file = {r["file"]: r for r in doc["sessions"]}
    assert set(by_file) == {"short.srec", "flipped.srec"}
    assert by_file["short.srec"]["status"] == "truncated"
    assert by_file["flipped.srec"]["status"] == "damaged"
    assert by_file["flipped.srec"]["total_events"] == 24  # everything before the damage
    assert by_file["flipped.srec"]["damage"]["offset"] > 0
    assert doc["unreadable"][0]["file"] == "junk.srec"
    assert "junk.srec: at byte 0: not a sessrec session file; skipped" in err
    # Remembered: not read again until it changes, but still reported.
    _, out, err = _cli("ls", str(tmp_path))
    assert "junk.srec" in err and "damaged" in out


def test_hostile_contents(tmp_path: Path) -> None:
    evil_argv = [b"sh", b"-c", b"\x1b]0;pwned\x07\x1b[2J'; DROP TABLE events; --", b"\xff\x00"]
    header = _header("evil\x1b[31m", "mallory\x1b]0;x\x07", 0,
                     hostname="h\u202eost", command=["a\nb"])
    write_session(tmp_path / "evil.srec", [
        _exec(1000, evil_argv),
        _open(1000, b"/tmp/[x]*?\x1b[2J\n", ts=2),
        # Integers beyond 64 bits where the format only says "int".
        ev(4, 2**64 - 1, [2**63, 1, -100, b"/huge", 0, 0], ts=2**64 - 1),
        _connect(1000, bytes([10, 0, 0, 5]), 22),
    ], header=header)
    code, out, err = _cli("ls", str(tmp_path))
    assert code == 0 and err == ""
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "mallory\\x1b]0;x\\x07" in out
    code, out, err = _cli("search", str(tmp_path), "--cmd", "*DROP TABLE*", "--path",
                          "/huge", "--any", "--max-events", "0")
    assert code == 0 and err == "", err
    assert "\x1b" not in out and "\x07" not in out and "\x00" not in out
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in out and "/huge" in out
    # The literal path with glob characters in it, found by an exact match.
    _, out, _ = _cli("search", str(tmp_path), "--path", "/tmp/[[]x]*")
    assert "/tmp/[x]*?\\x1b[2J\\" in out and len(out.splitlines()) == 3
    # The clamped row is there once.
    _, out, _ = _cli("search", str(tmp_path), "--path", "/huge")
    assert "matched path: 1 event\n" in out
    # The DROP TABLE in argv did nothing to the index.
    assert _search(tmp_path, Query(dests=[parse_dest("10.0.0.5")])) == ["evil\x1b[31m"]


def test_unwritable_dir_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    write_session(d / "x.srec", [_open(1000, b"/etc/hosts")])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.fspath(p) == str(d)
                        else real_access(p, mode))  # as if DIR were read-only (tests run as root)
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    with SessionIndex(str(d), environ=env) as index:
        assert index.db_path.startswith(str(tmp_path / "cache" / "sessrec" / "index-"))
        index.sync()
        assert [r.session_id for r in index.sessions()] == [HEADER["session_id"]]
    assert not (d / INDEX_NAME).exists()


def test_two_runs_share_an_index(sessions: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that read the list of indexed files just before another run
    indexed them all finds them indexed and does not index them again."""
    from replay import index as index_mod

    first = SessionIndex(str(sessions))
    second = SessionIndex(str(sessions))
    real = index_mod.find_session_files

    def racing(root: str) -> Any:
        monkeypatch.setattr(index_mod, "find_session_files", real)
        assert len(first.sync().added) == 3  # meanwhile, in another process
        yield from real(root)

    try:
        monkeypatch.setattr(index_mod, "find_session_files", racing)
        stats = second.sync()
        assert stats.added == [] and stats.unchanged == 3
        assert [r.session_id for r in second.sessions()] == ["bbbb", "aaaa", "cccc"]
    finally:
        first.close()
        second.close()


def test_ls_and_search_say_what_the_resolver_forgot_while_indexing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The index's resolver keeps PATH_BUDGET too: past it, a file's later
    relative paths are indexed unresolved, and ls and search say so for
    that file, from the index, on every run (not only the one that built it)."""
    from hostile import many_descriptors

    from replay import events

    monkeypatch.setattr(events, "PATH_BUDGET", 50_000)
    d = tmp_path / "sessions"
    d.mkdir()
    (d / "fds.srec").write_bytes(many_descriptors(100, 2000))
    for _ in range(2):  # built, then read back from the index
        code, _out, err = _cli("ls", str(d))
        assert code == 0 and "fds.srec: the session's paths passed" in err
        assert "the path resolver keeps: it forgot" in err
    code, out, err = _cli("ls", "--json", str(d))
    (row,) = json.loads(out)["sessions"]
    assert code == 0 and "it forgot" in row["warnings"][0]
    code, _out, err = _cli("search", str(d), "--path", "/b*")
    assert code == 0 and "fds.srec: the session's paths passed" in err
    monkeypatch.setattr(events, "PATH_BUDGET", 64 << 20)
    code, out, err = _cli("ls", "--json", "--reindex", str(d))
    assert code == 0 and json.loads(out)["sessions"][0]["warnings"] == [] and "forgot" not in err
