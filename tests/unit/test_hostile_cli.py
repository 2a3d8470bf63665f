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

