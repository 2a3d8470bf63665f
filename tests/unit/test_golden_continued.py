"""The golden continued session (v2.1-continued.srec): one readable session
in one file, its gap stated by every read command (docs/FORMAT.md)."""

from __future__ import annotations

import io
import json

from srec_util import GOLDEN_DIR

from replay.reader import open_session
from sessrec.cli import main

PATH = GOLDEN_DIR / "v2.1-continued.srec"


def test_one_session_two_segments_one_gap() -> None:
    with open_session(PATH) as s:
        events = list(s.records())
        assert s.damage is None and s.trailer is not None
        gaps = s.gaps
    assert len(events) == 106 - 20  # the records of the cut chunk are in the gap
    assert [g["reason"] for g in gaps] == ["restart"]
    before = [e for e in events if e.ts <= gaps[0]["ts"]]
    after = [e for e in events if e.ts >= gaps[0]["end"]]
    assert len(before) == 53 and len(after) == 33
    assert s.trailer["gaps"] == [{k: v for k, v in gaps[0].items() if k != "k"}]
    assert sum(s.trailer["counts"].values()) == len(events)


def test_read_commands_state_the_gap() -> None:
    out = io.StringIO()
    assert main(["info", "--json", str(PATH)], stdout=out, stderr=io.StringIO()) == 0
    info = json.loads(out.getvalue())
    assert info["complete"] and len(info["gaps"]) == 1
    replay = (GOLDEN_DIR / "v2.1-continued.replay.txt").read_text(encoding="utf-8").splitlines()
    marks = [i for i, line in enumerate(replay) if "!!! gap from +0.027 s to +0.031 s" in line]
    assert marks == [53]  # between the two segments' events
    assert "gap          from +0.027 s" in (GOLDEN_DIR / "v2.1-continued.info.txt").read_text(
        encoding="utf-8")
