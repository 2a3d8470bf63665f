"""The golden file of format 1.1 (tests/golden/v1.1-audit.srec): read
forever, with the audit keys 1.1 added; its events are v1.0-synthetic's."""

from __future__ import annotations

import io
import json

from srec_util import GOLDEN_DIR

from replay.info import format_info, session_info
from replay.jsonl import write_jsonl
from replay.reader import open_session

GOLDEN_1_1 = GOLDEN_DIR / "v1.1-audit.srec"


def test_golden_v1_1_info() -> None:
    expected = json.loads((GOLDEN_DIR / "v1.1-audit.info.json").read_text(encoding="utf-8"))
    info = session_info(GOLDEN_1_1)
    assert info == expected
    assert list(info) == list(expected)
    assert info["format_version"] == "1.1"
    text = format_info(info)
    assert "audit        auditing enabled; auditd pid 612; start record written (TRUSTED_APP); "\
        "no answer from audit netlink" in text


def test_golden_v1_1_events_are_the_v1_0_ones() -> None:
    out = io.StringIO()
    with open_session(GOLDEN_1_1) as session:
        write_jsonl(session, out)
        assert session.header["audit"]["sender_session_id"] == 42
        assert session.trailer is not None and session.trailer["audit"]["end_record"] is False
    assert out.getvalue() == (GOLDEN_DIR / "v1.0-synthetic.jsonl").read_text(encoding="utf-8")
