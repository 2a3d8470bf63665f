"""One summary (replay/summary.py): info, the ls/search index and the HTML
page say the same about the same file, complete or not, damaged or not."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from srec_util import GOLDEN, GOLDEN_DIR

from replay.html import report_data
from replay.info import session_info
from replay.reader import open_session
from sessrec.cli import main


def _ls(directory: Path) -> dict[str, dict[str, Any]]:
    out = io.StringIO()
    assert main(["ls", "--json", str(directory)], stdout=out, stderr=io.StringIO()) == 0
    return {r["file"]: r for r in json.loads(out.getvalue())["sessions"]}


def _page(path: Path) -> dict[str, Any]:
    with open_session(path, strict=False) as s:
        summary: dict[str, Any] = report_data(s, path.name)["summary"]
    return summary


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """The golden files, one cut short (no trailer), one with its footer
    damaged (the trailer found by reading), and one with the last event's
    chunk flipped (corrupt)."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("v1.0-synthetic", "v1.1-audit", "v2.0-records"):
        shutil.copy(GOLDEN_DIR / f"{name}.srec", d / f"{name}.srec")
    data = GOLDEN.read_bytes()
    (d / "cut.srec").write_bytes(data[: len(data) - 200])
    footer = bytearray(data)
    footer[-1] ^= 0x40
    (d / "footer.srec").write_bytes(bytes(footer))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (d / "flipped.srec").write_bytes(bytes(flipped))
    return d


def test_info_index_and_page_agree(files: Path) -> None:
    rows = _ls(files)
    assert len(rows) == 6
    statuses = set()
    for name, row in rows.items():
        path = files / name
        info = session_info(path, check=True)  # reads the events, as the index does
        page = _page(path)
        statuses.add(info["status"])
        assert info["status"] == row["status"] == page["status"], name
        assert info["complete"] == row["complete"] == page["complete"], name
        assert info["exit_status"] == row["exit_status"] == page["exit_status"], name
        assert info["duration_ns"] == page["duration_ns"], name
        assert round(info["duration_ns"] / 1e9, 6) == row["duration_s"], name
        assert info["lost"] == row["lost"], name
        assert {k: v for k, v in info["lost"].items() if v} == page["lost"], name
        assert info["counts"] == row["counts"] == page["counts"], name
    assert statuses == {"complete", "truncated", "damaged"}


def test_the_duration_runs_to_the_trailer_or_the_last_event(files: Path) -> None:
    """From the header's clock to the later of the trailer's end and the last
    event: a cut file, without its trailer, ends at its last event."""
    complete = session_info(files / "v1.0-synthetic.srec")
    cut = session_info(files / "cut.srec")
    assert complete["ended_at"] is not None and cut["ended_at"] is None
    assert 0 < cut["duration_ns"] <= complete["duration_ns"]
