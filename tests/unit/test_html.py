"""replay.html: the data of the HTML report, its escaping, and `sessrec html`.
The page itself runs in tests/browser."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from srec_util import GOLDEN, HEADER, ev, write_session

from replay import html
from replay.reader import open_session
from sessrec.cli import main

HOSTILE_ARGV = [
    b"sh", b"-c", b"</script><script>window.__pwned=1</script>", "\u2028\u2029".encode(),
    b"<img src=x onerror=window.__pwned=2>", b"\x1b]0;pwned\x07\x1b[2J", b"<!--<script>",
    "\u202etxt.exe".encode(), b"\xff&amp;",
]


def _data(path: Path) -> dict[str, object]:
    with open_session(path, strict=False) as s:
        return html.report_data(s, path.name)


def _embedded(page: str) -> object:
    m = re.search(r'<script type="application/json" id="sessrec-data">(.*?)</script>', page,
                  re.DOTALL)
    assert m is not None
    return json.loads(m.group(1))


def test_golden_data() -> None:
    d = _data(GOLDEN)
    s = d["summary"]
    assert isinstance(s, dict)
    assert (s["processes"], s["events"], s["user"], s["complete"]) == (4, 24, "alice", True)
    procs = d["procs"]
    assert isinstance(procs, dict)
    assert procs["pid"] == [1000, 1001, 1002, 2000]  # tree order
    assert procs["parent"] == [-1, 0, 0, -1]
    assert procs["exit"] == [3 << 8, 9, 0x80 | 11, None]
    ev_ = d["ev"]
    assert isinstance(ev_, dict)
    assert len(ev_["t"]) == 24 and sum(ev_["dt"]) == 25_000  # microseconds
    assert d["warnings"] == [
        "2 events were lost during the recording (2 open): the process tree and timeline "
        "may miss processes and events."]
    strings = d["strings"]
    assert isinstance(strings, list)
    assert "env 'A=1\\nB=2' 'quote\"back\\slash\\ttab' '\\xff\\xfe café'" in strings


def test_script_json_cannot_break_out() -> None:
    data = {"a": "</script><!--<script>\u2028\u2029&", "b": ["</SCRIPT >"]}
    text = html.script_json(data)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text and text.isascii()
    assert json.loads(text) == data


def test_hostile_page(tmp_path: Path) -> None:
    p = tmp_path / "h.srec"
    header = {**HEADER, "user": "</script><b>", "command": ["x\u2028</script>"]}
    write_session(p, [
        ev(2, 1000, [0, b"/bin/sh", HOSTILE_ARGV, len(HOSTILE_ARGV), 1000, 0]),
        ev(4, 1000, [3, 1, -100, b"/tmp/</script>\xe2\x80\xa8", 0, 0]),
    ], header=header)
    with open_session(p) as s:
        page, shown = html.report(s)
    assert shown.processes == 1
    lower = page.lower()
    assert lower.count("<script") == 2 and lower.count("</script") == 2
    assert "\u2028" not in page and "\u2029" not in page
    assert f'<meta http-equiv="Content-Security-Policy" content="{html.CSP}">' in page
    data = _embedded(page)
    assert isinstance(data, dict)
    # Kept as text; control and bidi characters escaped for display.
    argv = next(s for s in data["strings"] if s.startswith("sh -c"))
    assert "</script><script>window.__pwned=1</script>" in argv
    assert "\\x1b]0;pwned\\x07" in argv and "\\u202e" in argv and "\\u2028" in argv
    assert data["summary"]["user"] == "</script><b>"


def test_past_its_text_budget_the_page_leaves_new_texts_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's distinct texts are bounded: 70,000 distinct 4 KiB paths
    made a page of 600 MB, past the 512 MiB every read command keeps to.
    Past MAX_PAGE_TEXT, a new text is one placeholder, counted and said."""
    monkeypatch.setattr(html, "MAX_PAGE_TEXT", 20_000)
    p = tmp_path / "t.srec"
    write_session(p, [ev(4, 1000, [3, 1, -100, b"/" + b"x" * 1000 + b"%d" % i, 0, 0], ts=i)
                      for i in range(40)])
    data = _data(p)
    strings = data["strings"]
    assert isinstance(strings, list) and sum(map(len, strings)) <= 20_000
    assert html.TEXT_LEFT_OUT in strings
    assert data["summary"]["events"] == 40  # type: ignore[index]
    kept = sum(1 for t in strings if t.startswith("/xxx"))
    assert 0 < kept < 20
    warnings = data["warnings"]
    assert isinstance(warnings, list)
    assert f"{40 - kept} texts (paths, argv) are left out of the page" in " ".join(warnings)


def test_assets_are_static_and_safe() -> None:
    js = (Path(html.__file__).parent / html.ASSETS / "report.js").read_text()
    for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                "Function(", "fetch(", "XMLHttpRequest", "WebSocket", "import(", "http:",
                "https:", "sendBeacon", "localStorage"):
        assert bad not in js, bad
    page = (Path(html.__file__).parent / html.ASSETS / "report.html").read_text()
    assert "http:" not in page and "https:" not in page and "src=" not in page


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return main(list(argv), stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.html"
    code, _, err = _cli("html", str(GOLDEN), "-o", str(out))
    assert code == 0 and err == f"sessrec: wrote {out}: 4 processes, 24 events\n"
    assert _embedded(out.read_text())["summary"]["events"] == 24  # type: ignore[index]
    monkeypatch.chdir(tmp_path)
    assert _cli("html", str(GOLDEN))[0] == 0
    assert (tmp_path / "v1.0-synthetic.html").is_file()
    code, _, err = _cli("html", str(GOLDEN), "-o", str(tmp_path / "nope" / "r.html"))
    assert code == 1 and err.startswith("sessrec: error: cannot write") and "Traceback" not in err
    assert list(tmp_path.glob("nope*")) == []


def test_cli_damaged(tmp_path: Path) -> None:
    data = GOLDEN.read_bytes()
    short = tmp_path / "short.srec"
    short.write_bytes(data[:-200])
    code, _, err = _cli("html", str(short), "-o", str(tmp_path / "s.html"))
    assert code == 0 and "truncated at byte" in err
    page = _embedded((tmp_path / "s.html").read_text())
    assert isinstance(page, dict)
    assert page["summary"]["complete"] is False
    assert any("truncated at byte" in w for w in page["warnings"])
    (tmp_path / "junk.srec").write_bytes(b"junk")
    code, _, err = _cli("html", str(tmp_path / "junk.srec"), "-o", str(tmp_path / "j.html"))
    assert code == 1 and "not a sessrec session file" in err


def test_filters_choose_the_timeline_as_replays_do(tmp_path: Path) -> None:
    from sessrec.event import EventType, failed

    out = tmp_path / "r.html"
    code, _, err = _cli("html", str(GOLDEN), "-o", str(out), "--failed", "--type", "open,exec")
    assert code == 0, err
    data = _embedded(out.read_text())
    assert isinstance(data, dict)
    with open_session(GOLDEN, strict=False) as s:
        want = [e for e in s.records()
                if failed(e) and e.type in (EventType.OPEN, EventType.EXEC)]
    assert 0 < len(data["ev"]["t"]) == len(want) < 24
    assert data["ev"]["t"] == [e.type for e in want] and set(data["ev"]["f"]) == {1}
    assert data["summary"]["processes"] == 4  # the tree is the whole session's
    assert any("match the filters" in w for w in data["warnings"])
    code, _, err = _cli("html", str(GOLDEN), "-o", str(out), "--children")
    assert code == 2 and "--children needs --pid" in err
