"""The CLI on hostile files and hostile surroundings (issue 11): forged
JSON, terminal escapes, odd file names and streams, full disks. Each case is
built by the test from the same kind of input the review used."""

from __future__ import annotations

import io
import json
from pathlib import Path

from hostile import header_map, pack, session, trailer_map
from srec_util import TRAILER

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
