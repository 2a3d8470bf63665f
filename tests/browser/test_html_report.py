"""The HTML report in real headless Chromium (/usr/bin/chromium), driven over
the DevTools protocol (tests/browser/cdp.py). Marked `browser`: skipped with
the reason when Chromium is missing, a failure under CI=true.

The page must render, show the right process count, log no console error,
make no network request, filter by type and by the search box, show details
on click, resist hostile argv, and stay interactive with 100,000 events. A
screenshot is kept in artifacts/report.png and the timings in
artifacts/html_timing.json."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cdp import Chromium
from synth import HEADER, generate

from replay.reader import open_session
from sessrec.cli import main
from sessrec.event import Event, EventType, Open

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    with Chromium(width=1600, height=1000) as c:
        yield c


def _html(srec: Path, out: Path) -> Path:
    err = io.StringIO()
    assert main(["html", str(srec), "-o", str(out)], stdout=io.StringIO(), stderr=err) == 0, (
        err.getvalue())
    return out


def _load(c: Chromium, page: Path, timeout: float = 60) -> int:
    mark = c.navigate(page.as_uri(), timeout=timeout)
    c.wait_for(lambda: c.evaluate("document.documentElement.dataset.ready") == "1", timeout)
    return mark


def _state(c: Chromium) -> dict[str, Any]:
    s: dict[str, Any] = c.evaluate("window.__sessrec.state()")
    return s


def _text(c: Chromium, selector: str) -> str:
    t: str = c.evaluate(f"document.querySelector({json.dumps(selector)}).textContent")
    return t


def _clean(c: Chromium, mark: int, page: Path) -> None:
    assert c.problems(mark) == []
    assert c.requests(mark) == [page.as_uri()]


def _events(srec: Path) -> list[Event]:
    with open_session(srec) as s:
        return list(s.records())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, int]]:
    d = tmp_path_factory.mktemp("small")
    srec = d / "small.srec"
    info = generate(srec, 3000)
    return srec, _html(srec, d / "small.html"), info


def test_renders(browser: Chromium, small: tuple[Path, Path, dict[str, int]]) -> None:
    _srec, page, info = small
    mark = _load(browser, page)
    _clean(browser, mark, page)
    assert _text(browser, "#procCount") == f"{info['processes']} processes"
    assert _text(browser, "#matchCount") == f"{info['events']:,} events"
    assert _text(browser, "#title") == "/bin/bash -l"
    assert browser.evaluate("document.getElementById('banner').hidden") is True
    st = _state(browser)
    assert st["rows"] == info["processes"] and st["listed"] == info["events"]
    assert st["markers"] > 0
    # Virtual: only the rows in view are in the DOM.
    assert 0 < browser.evaluate("document.querySelectorAll('#tree .trow').length") < 60
    assert 0 < browser.evaluate("document.querySelectorAll('#events .row').length") < 60
    assert browser.evaluate("document.title") == "sessrec: alice@web-03 /bin/bash -l"


def test_filters(browser: Chromium, small: tuple[Path, Path, dict[str, int]]) -> None:
    srec, page, info = small
    mark = _load(browser, page)
    events = _events(srec)
    n = len(events)
    before = _state(browser)

    # A type filter hides that type in the list and on the timeline.
    opens = sum(1 for e in events if type(e) is Open)
    browser.click_selector("#types .chip[data-type=open]")
    browser.wait_for(lambda: _state(browser)["listed"] == n - opens, 5)
    assert browser.evaluate(
        "document.querySelector('#types .chip[data-type=open]').getAttribute('aria-pressed')"
    ) == "false"
    assert _text(browser, "#matchCount") == f"{n - opens:,} of {n:,} events"
    # The timeline redraws on the next animation frame, after the list.
    browser.wait_for(lambda: _state(browser)["markers"] != before["markers"], 5)
    shown = browser.evaluate(
        "[...document.querySelectorAll('#events .row')].filter(r => r.style.display !== 'none')"
        ".map(r => r.querySelector('.tag').textContent)")
    assert shown and "open" not in shown
    browser.click_selector("#types .chip[data-type=open]")
    browser.wait_for(lambda: _state(browser)["listed"] == n, 5)

    # The search box: matching events, and the processes that have them.
    shadow = [e for e in events
              if isinstance(e, Open) and e.requested_path == b"/etc/shadow"]
    assert shadow
    browser.type_text("#search", "/etc/SHADOW")  # case-insensitive
    browser.wait_for(lambda: _state(browser)["listed"] == len(shadow), 5)
    procs = len({e.pid for e in shadow}) + 1  # and the shell above them
    assert _state(browser)["rows"] == procs
    assert _text(browser, "#procCount") == f"{procs} of {info['processes']} processes"
    details = browser.evaluate(
        "[...document.querySelectorAll('#events .row')].filter(r => r.style.display !== 'none')"
        ".map(r => r.querySelector('.c-detail').textContent)")
    assert details and all(d.startswith("/etc/shadow ") for d in details)
    # Failures only, on top of the search: the refused opens of /etc/shadow.
    browser.click_selector("#failedOnly")
    refused = sum(1 for e in shadow if e.ret < 0)
    browser.wait_for(lambda: _state(browser)["listed"] == refused, 5)
    browser.click_selector("#failedOnly")
    browser.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Escape"})
    browser.wait_for(lambda: _state(browser)["listed"] == n, 5)
    assert _state(browser)["rows"] == info["processes"]
    _clean(browser, mark, page)


def test_click_shows_details(browser: Chromium,
                             small: tuple[Path, Path, dict[str, int]]) -> None:
    _srec, page, _info = small
    mark = _load(browser, page)
    browser.click_selector("#tree .trow")
    browser.wait_for(lambda: _text(browser, "#detailsTitle") == "Process", 5)
    assert _text(browser, "#detailsBody h2") == "-bash"
    assert "Children" in _text(browser, "#detailsBody")
    # A row of the event list, then the same event's marker on the canvas.
    browser.click_selector("#events .row:nth-child(4)")
    browser.wait_for(lambda: _text(browser, "#detailsTitle") == "Event", 5)
    ev = _state(browser)["selected_event"]
    assert ev >= 0
    browser.click_selector("#tree .trow")  # select something else
    browser.wait_for(lambda: _state(browser)["selected_event"] == -1, 5)
    x, y = browser.evaluate(f"window.__sessrec.point({ev})")
    browser.click(x, y)
    browser.wait_for(lambda: _state(browser)["selected_event"] == ev, 5)
    assert _text(browser, "#detailsTitle") == "Event"
    _clean(browser, mark, page)


HOSTILE = [
    b"sh", b"-c", b"</script><script>window.__pwned=1</script>", "\u2028x\u2029".encode(),
    b"<img src=x onerror=window.__pwned=2>", b"\x1b]0;pwned\x07\x1b[2J", b"<!--<script>",
    "\u202egnp.exe".encode(),
]


def test_hostile_argv(browser: Chromium, tmp_path: Path) -> None:
    srec = tmp_path / "hostile.srec"
    generate(srec, 200, extra=[
        (EventType.EXEC, [0, b"/bin/sh", HOSTILE, len(HOSTILE), 1000, 0]),
        (EventType.OPEN, [3, 1, -100, b"/tmp/</script><b>\xe2\x80\xa8\xff", 0, 0]),
    ])
    page = _html(srec, tmp_path / "hostile.html")
    mark = _load(browser, page)
    _clean(browser, mark, page)
    assert browser.evaluate("window.__pwned === undefined") is True
    assert browser.evaluate("document.scripts.length") == 2
    assert browser.evaluate("document.images.length") == 0
    assert browser.evaluate("document.querySelectorAll('b').length") == 0
    assert not any(e.get("method") == "Page.javascriptDialogOpening"
                   for e in browser.events[mark:])
    browser.type_text("#search", "pwned")
    browser.wait_for(lambda: " of " in _text(browser, "#matchCount"), 5)
    browser.wait_for(lambda: "window.__pwned=1" in _text(browser, "#events"), 5)
    shown = _text(browser, "#events")
    # Shown as text, with control, separator and bidi characters escaped.
    assert "</script><script>window.__pwned=1</script>" in shown
    assert "\\x1b]0;pwned\\x07\\x1b[2J" in shown and "\\u202egnp.exe" in shown
    assert "\\u2028x\\u2029" in shown
    assert "\x1b" not in shown and "\u2028" not in shown and "\u202e" not in shown


def test_no_request_even_without_csp(browser: Chromium,
                                     small: tuple[Path, Path, dict[str, int]],
                                     tmp_path: Path) -> None:
    """The CSP would block requests; the page must not even try."""
    _srec, page, _info = small
    text = page.read_text(encoding="utf-8")
    start = text.index('<meta http-equiv="Content-Security-Policy"')
    bare = tmp_path / "bare.html"
    bare.write_text(text[:start] + text[text.index(">", start) + 1:], encoding="utf-8")
    mark = _load(browser, bare)
    browser.click_selector("#tree .trow")
    browser.type_text("#search", "curl")
    browser.wait_for(lambda: _state(browser)["listed"] < 3000, 5)
    _clean(browser, mark, bare)


def test_warning_banner(browser: Chromium, tmp_path: Path) -> None:
    srec = tmp_path / "cut.srec"
    generate(srec, 500, lost=7)
    data = srec.read_bytes()
    srec.write_bytes(data[: len(data) - 300])  # the trailer and the last chunk's end
    page = _html(srec, tmp_path / "cut.html")
    mark = _load(browser, page)
    _clean(browser, mark, page)
    assert browser.evaluate("document.getElementById('banner').hidden") is False
    banner = _text(browser, "#banner")
    assert "cut.srec: truncated at byte" in banner
    assert "showing the" in banner
    assert "ms (truncated)" in _text(browser, "#summary")  # the summary's status


def test_100k_events_interactive(browser: Chromium, tmp_path: Path) -> None:
    """Time to interactive and filter latency for 100,000 events; recorded,
    not held to a tight limit (bench/html_bench.py measures 1,000,000)."""
    srec = tmp_path / "big.srec"
    info = generate(srec, 100_000)
    t0 = time.monotonic()
    page = _html(srec, tmp_path / "big.html")
    build_s = time.monotonic() - t0
    t0 = time.monotonic()
    mark = browser.navigate(page.as_uri(), timeout=120)
    browser.wait_for(lambda: browser.evaluate("document.documentElement.dataset.ready") == "1",
                     120)
    # Interactive: the first frame after the page's start-up has been drawn.
    browser.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
                     await_promise=True)
    ready_s = time.monotonic() - t0
    ready_ms = browser.evaluate("window.__sessrec.ready_ms")
    filter_ms = browser.evaluate(
        "new Promise(r => { const t = performance.now();"
        " document.querySelector('#types .chip[data-type=open]').click();"
        " requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - t))); })",
        await_promise=True)
    browser.click_selector("#types .chip[data-type=open]")
    browser.wait_for(lambda: _state(browser)["listed"] == info["events"], 10)
    t0 = time.monotonic()
    browser.type_text("#search", "/etc/shadow")
    browser.wait_for(lambda: " of " in _text(browser, "#procCount"), 30)
    search_s = time.monotonic() - t0  # includes the 120 ms typing pause
    _clean(browser, mark, page)
    assert _text(browser, "#procCount").endswith(f"of {info['processes']} processes")

    # The screenshot: the search cleared, one process selected, the
    # timeline zoomed out a little from it (a double-click fits it).
    browser.call("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Escape"})
    browser.wait_for(lambda: _state(browser)["listed"] == info["events"], 10)
    browser.evaluate("document.getElementById('lanesScroll').scrollTop = 0")
    browser.click_selector("#tree .trow:nth-child(9)", count=2)  # zoom to it
    browser.wait_for(lambda: _text(browser, "#detailsTitle") == "Process", 5)
    browser.click_selector("#zoomOut")
    time.sleep(0.2)
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report.png")
    timing = {
        "events": info["events"], "processes": info["processes"],
        "page_bytes": page.stat().st_size, "sessrec_html_s": round(build_s, 3),
        "ready_ms_from_navigation": round(ready_ms, 1), "interactive_s_wall": round(ready_s, 3),
        "type_filter_ms": round(filter_ms, 1), "search_s_including_debounce": round(search_s, 3),
    }
    (ARTIFACTS / "html_timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    print(f"\nHTML report, {info['events']:,} events: {json.dumps(timing)}")
    assert ready_s < 30  # a guard against a hang, not a performance target
    assert HEADER["user"] == "alice"


def test_empty_and_absurd_sessions(browser: Chromium, tmp_path: Path) -> None:
    """No events at all; and integers far out of range in a hostile file."""
    from recorder.writer import SessionWriter

    header = {**HEADER, "clock": {"wall_ns": 2**64 - 5, "mono_ns": 0}}
    for name, hdr, events in (
        ("empty", HEADER, []),
        ("absurd", header, [
            [4, 2**62, 2**63, 1, 1, 0, b"x", 0, 2**63, 1, -100, b"/x", 2**40, 0],
            [3, 5, 5, 5, 1, 0, b"y", 0, 2**31 + 5],
        ]),
    ):
        srec = tmp_path / f"{name}.srec"
        w = SessionWriter(srec, hdr)
        for e in events:
            w.add(e)
        w.close(None)
        page = _html(srec, tmp_path / f"{name}.html")
        mark = _load(browser, page)
        _clean(browser, mark, page)
        assert _state(browser)["listed"] == len(events)
        assert _text(browser, "#procCount") == f"{len(events)} processes"
        if events:
            browser.click_selector("#events .row")
            browser.wait_for(lambda: _text(browser, "#detailsTitle") == "Event", 5)
        assert browser.evaluate("document.querySelectorAll('#axis').length") == 1
        _clean(browser, mark, page)
