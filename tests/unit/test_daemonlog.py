"""The daemon's structured log lines."""

from __future__ import annotations

import io
import json
import re

from recorder.daemonlog import Log


def test_json_lines() -> None:
    out = io.StringIO()
    Log("json", out)("session-start", session="s1", pid=42, file="/x y.srec", left=[1, 2])
    rec = json.loads(out.getvalue())
    assert rec.pop("ts").endswith("Z")
    assert rec == {"level": "info", "event": "session-start", "session": "s1", "pid": 42,
                   "file": "/x y.srec", "left": [1, 2]}


def test_text_lines_quote_what_needs_it() -> None:
    out = io.StringIO()
    Log("text", out)("output-error", level="error", file="/a b", error='say "x"', n=3)
    line = out.getvalue()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z error output-error ", line)
    assert line.endswith(' file="/a b" error="say \\"x\\"" n=3\n')
    assert line.count("\n") == 1
