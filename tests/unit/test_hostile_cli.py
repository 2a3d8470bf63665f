"""The CLI on hostile files and hostile surroundings (issue 11): forged
JSON, terminal escapes, odd file names and streams, full disks. Each case is
built by the test from the same kind of input the review used."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hostile import ROOT, ev, events, exec_, header_map, pack, session, trailer_map
from srec_util import TRAILER

from replay import reader
from sessrec.cli import main


def run(argv: list[str], stdout: io.StringIO | None = None) -> tuple[int, str, str]:
    out, err = stdout or io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


FORGED = 'x","event":"session.command","login":"root","argv":["rm","-rf","/"],"y":"'


def test_teleport_times_cannot_forge_events(tmp_path: Path) -> None:
    p = tmp_path / "forged.srec"
    header = pack(header_map(started_at=FORGED))
    p.write_bytes(session(header=header, trailer=pack(trailer_map(ended_at=FORGED))))
    status, out, _err = run(["export", str(p), "--format", "teleport"])
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["event"] for d in lines] == ["session.start", "session.end"]
    assert lines[0]["time"] == FORGED and lines[1]["time"] == FORGED
    assert all(d["login"] == lines[0]["user"] for d in lines)
    assert lines[1]["session_start"] == FORGED and TRAILER["ended_at"] != FORGED



def test_file_names_are_escaped_in_errors_and_warnings(tmp_path: Path) -> None:
    evil = tmp_path / "a\x1b]0;pwned\x07\nb\u202e.srec"
    evil.write_bytes(b"not a session file")
    status, _out, err = run(["info", str(evil)])
    assert status == 1 and err.count("\n") == 1
    assert "\x1b" not in err and "\u202e" not in err and "\\x1b]0;pwned\\x07\\nb\\u202e" in err
    evil.write_bytes(session(complete=False))
    status, _out, err = run(["replay", str(evil)])
    assert status == 0 and err.startswith("sessrec: warning: ") and err.count("\n") == 1
    assert "\x1b" not in err and "\x07" not in err
    status, out, _err = run(["verify", str(evil)])
    assert status == 7 and "\x1b" not in out and "\\x1b]0;pwned" in out


def test_json_outputs_pass_no_terminal_controls(tmp_path: Path) -> None:
    controls = "\x9b\x7f\u202e\u00ad\U000e0041"
    host = f"h{controls}31m"
    p = tmp_path / "c1.srec"
    p.write_bytes(session(header=pack(header_map(hostname=host))))
    status, out, _err = run(["info", "--json", str(p)])
    assert status == 0 and json.loads(out)["hostname"] == host
    assert all(c not in out for c in controls)
    status, out, _err = run(["ls", "--json", str(tmp_path)])
    assert status == 0 and json.loads(out)["sessions"][0]["hostname"] == host
    assert all(c not in out for c in controls)


def test_exports_pass_no_terminal_controls(tmp_path: Path) -> None:
    # JSON allows them raw; the exports write them as \\u escapes, so that
    # `cat export.jsonl` is safe and a JSON reader gets the same strings.
    controls = "\x9b\x7f\u202e\u00ad\U000e0041"
    name = f"/tmp/a{controls}".encode()
    p = tmp_path / "c1.srec"
    body = events([exec_(1000, [b"sh", name]), ev(4, 1000, [3, 1, -100, name, 0, 0])])
    p.write_bytes(session(body, header=pack(header_map(hostname=f"h{controls}"))))
    for fmt_ in ("jsonl", "teleport", "ecs"):
        status, out, _err = run(["export", "--format", fmt_, str(p)])
        assert status == 0 and out.count("\n") >= 2, fmt_
        assert all(c not in out for c in controls), fmt_
        texts = json.dumps([json.loads(line) for line in out.splitlines()], ensure_ascii=False)
        assert name.decode() in texts, fmt_


def test_an_ascii_stdout_gets_escapes_not_a_traceback(tmp_path: Path) -> None:
    p = tmp_path / "cafe.srec"
    p.write_bytes(session(header=pack(header_map(hostname="café", user="josé"))))
    for argv in (["info"], ["info", "--json"], ["replay"], ["tree"], ["export"]):
        raw = io.BytesIO()
        out = io.TextIOWrapper(raw, encoding="ascii")
        status = main([argv[0], str(p), *argv[1:]], stdout=out, stderr=io.StringIO())
        out.flush()
        assert status == 0, argv
        text = raw.getvalue().decode("ascii")
        if argv[0] == "info":
            assert "caf" in text
            if "--json" in argv:
                assert json.loads(text)["hostname"] == "café"


def test_ls_and_search_skip_a_file_name_that_is_not_utf8(tmp_path: Path) -> None:
    good = session()
    (tmp_path / "good.srec").write_bytes(good)
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9\x1b.srec"), "wb") as f:
        f.write(good)
    for argv in (["ls"], ["ls", "--json"], ["search", "--user", "alice"]):
        status, out, err = run([argv[0], str(tmp_path), *argv[1:]])
        assert status == 0, (argv, err)
        assert err == ("sessrec: warning: caf\\xe9\\x1b.srec: the file name is not UTF-8; "
                       "rename it to index it; skipped\n")
        assert "good.srec" in out or "6f1c2a9e" in out
        if "--json" in argv:
            assert json.loads(out)["unreadable"][0]["file"] == "caf\\xe9\x1b.srec"


GOLDEN_V2 = Path(__file__).resolve().parent.parent / "golden" / "v2.0-records.srec"


def test_replay_reads_a_pipe(tmp_path: Path) -> None:
    """/dev/stdin as a pipe: not seekable, so read to its end first."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    want = run(["replay", str(GOLDEN_V2)])[1]
    for cmd in ("replay", "info", "tree"):
        r = subprocess.run([sys.executable, "-m", "sessrec", cmd, "/dev/stdin"],
                           input=GOLDEN_V2.read_bytes(), capture_output=True, env=env,
                           timeout=60, check=False)
        assert r.returncode == 0 and r.stderr == b"", (cmd, r.stderr)
        if cmd == "replay":
            assert r.stdout.decode() == want
        if cmd == "info":
            assert b"complete" in r.stdout
    r = subprocess.run([sys.executable, "-m", "sessrec", "replay", "/dev/stdin"],
                       input=b"garbage" * 1000, capture_output=True, env=env, timeout=60,
                       check=False)
    assert r.returncode == 1 and r.stderr == b"sessrec: error: /dev/stdin: at byte 0: not a " \
        b"sessrec session file\n"


def test_a_fifo_without_a_writer_does_not_hang(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "PIPE_WAIT", 0.2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    status, _out, err = run(["replay", str(fifo)])
    assert status == 1 and err == (f"sessrec: error: cannot read {fifo}: nothing came in 0.2 s "
                                   "(a pipe or FIFO without a writer?)\n")

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(GOLDEN_V2.read_bytes())

    monkeypatch.setattr(reader, "PIPE_WAIT", 30)
    t = threading.Thread(target=writer)
    t.start()
    status, out, err = run(["replay", str(fifo)])
    t.join()
    assert status == 0 and err == "" and out == run(["replay", str(GOLDEN_V2)])[1]


class FullDisk(io.StringIO):
    """A stdout on a full disk."""

    def write(self, s: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_is_one_line(tmp_path: Path) -> None:
    g = str(GOLDEN_V2)
    for argv in (["export", g], ["export", g, "--format", "ecs"], ["replay", g], ["tree", g],
                 ["info", g], ["info", "--json", g]):
        err = io.StringIO()
        assert main(argv, stdout=FullDisk(), stderr=err) == 1, argv
        assert err.getvalue() == "sessrec: error: No space left on device\n", argv
    if os.path.exists("/dev/full"):
        status, _out, err = run(["export", g, "-o", "/dev/full"])
        assert status == 1
        assert err == "sessrec: error: cannot write /dev/full: No space left on device\n"


def test_html_replaces_only_a_regular_file_and_follows_no_planted_link(tmp_path: Path) -> None:
    g = str(GOLDEN_V2)
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "link.html"
    link.symlink_to(victim)
    for target, what in ((fifo, "not a regular file"), (link, "a symbolic link"),
                         (tmp_path, "a directory")):
        status, _out, err = run(["html", g, "-o", str(target)])
        assert status == 1 and err == (f"sessrec: error: cannot write {target}: it is {what}; "
                                       "give a new or regular file\n")
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and victim.read_text() == "keep"
    if os.geteuid() == 0 and os.path.exists("/dev/full"):
        assert run(["html", g, "-o", "/dev/full"])[0] == 1
        assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
    # The old temporary name was OUT.tmp<pid>: a link planted there is not followed.
    out = tmp_path / "report.html"
    (tmp_path / f"report.html.tmp{os.getpid()}").symlink_to(victim)
    status, _out, err = run(["html", g, "-o", str(out)])
    assert status == 0 and victim.read_text() == "keep" and "<html" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fifo.html", "link.html", "report.html", f"report.html.tmp{os.getpid()}", "victim"]
    out.write_text("old")
    assert run(["html", g, "-o", str(out)])[0] == 0 and "<html" in out.read_text()


def test_info_says_the_events_were_not_read_and_check_reads_them(tmp_path: Path) -> None:
    """A completed file damaged between its header and trailer: info reads
    only those two, and says so; --check finds the damage that replay does."""
    data = bytearray(GOLDEN_V2.read_bytes())
    data[len(data) // 2] ^= 0x10
    p = tmp_path / "mid.srec"
    p.write_bytes(bytes(data))
    status, out, _err = run(["info", str(p)])
    assert status == 0 and out.endswith(
        "file         complete (its events were not read: `sessrec info --check` reads them)\n")
    status, out, _err = run(["info", "--check", str(p)])
    # complete means a trailer and no damage (replay/summary.py): damaged
    assert status == 1 and "file         damaged: read up to byte 493: " in out
    status, out, _err = run(["info", "--check", "--json", str(p)])
    info = json.loads(out)
    assert status == 1 and info["checked"] and info["damage"]["offset"] == 493
    assert run(["replay", str(p)])[2].startswith(f"sessrec: warning: {p}: damaged at byte 493")
    status, out, _err = run(["info", "--check", str(GOLDEN_V2)])
    assert status == 0 and out.endswith("file         complete\n")


def test_html_page_holds_a_bounded_timeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    """The page keeps MAX_PAGE_EVENTS events (a million: about 190 MB while
    it is built); the rest are in the tree and counts, and it says so."""
    from replay import html

    monkeypatch.setattr(html, "MAX_PAGE_EVENTS", 5)
    out = tmp_path / "p.html"
    status, _out, err = run(["html", str(GOLDEN_V2), "-o", str(out)])
    assert status == 0 and err.endswith(
        "sessrec: warning: the page's timeline shows 5 of the 106 events read; "
        "its warnings say why\n")
    page = out.read_text()
    assert "The timeline shows the first 5 events; 101 later ones are in the tree" in page
    assert ": 5 processes, 5 events\n" in err
