"""HTML report benchmark: `sessrec html` and the page's time to interactive in
headless Chromium, for synthetic sessions of 100,000 and 1,000,000 events.
Prints a Markdown table; never fails on timings.

    .venv/bin/python bench/html_bench.py [--events 100000,1000000] [--runs 3]

The sessions come from tests/browser/synth.py (a shell running parallel jobs
that exec, open, connect and exit; about one process per ten events), written
with SessionWriter. Chromium is /usr/bin/chromium (or $SESSREC_CHROMIUM),
driven over the DevTools pipe by tests/browser/cdp.py; each page load uses a
fresh browser, so no cache helps.

Measures, median of --runs:
- html: wall time of `sessrec html FILE -o OUT` (a separate process);
- ready: from Page.navigate to the page's first frame drawn after its
  start-up (the JSON parsed, lanes indexed, tree, timeline and list drawn),
  as the test driver sees it, so it includes the driver's round trips;
- ready (page): performance.now() when the page's start-up ends, counted by
  the browser from the start of navigation;
- filter, search, scroll: a type filter toggled, a search applied
  (without the 120 ms typing pause), the lanes scrolled by a page: each until
  the second animation frame after it, that is, until it is on screen.
Target (issue 4): interactive within 3 s for 1,000,000 events.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "browser")]

from cdp import CHROMIUM, Chromium  # noqa: E402
from synth import generate  # noqa: E402

NEXT_FRAME = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def _timed_js(action: str) -> str:
    """JS that runs action and resolves with the ms until it is on screen."""
    return ("new Promise(r => { const t = performance.now(); " + action +
            "; requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - t)));"
            " })")


SEARCH = ("const s = document.getElementById('search'); s.value = '/etc/shadow';"
          " s.dispatchEvent(new Event('input')); const t0 = performance.now();"
          " return new Promise(r => { const poll = () => {"
          " if (window.__sessrec.state().listed < window.__sessrec.events / 2)"
          " requestAnimationFrame(() => requestAnimationFrame(() => r(performance.now() - t0)));"
          " else setTimeout(poll, 5); }; poll(); })")


def load_once(page: Path) -> dict[str, float]:
    with Chromium(width=1600, height=1000) as c:
        t0 = time.monotonic()
        mark = c.navigate(page.as_uri(), timeout=300)
        c.wait_for(lambda: c.evaluate("document.documentElement.dataset.ready") == "1", 300,
                   interval=0.005)
        c.evaluate(NEXT_FRAME, await_promise=True)
        ready_s = time.monotonic() - t0
        out = {
            "ready_s": ready_s,
            "ready_page_ms": c.evaluate("window.__sessrec.ready_ms"),
            "filter_ms": c.evaluate(_timed_js(
                "document.querySelector('#types .chip[data-type=open]').click()"),
                await_promise=True),
            "unfilter_ms": c.evaluate(_timed_js(
                "document.querySelector('#types .chip[data-type=open]').click()"),
                await_promise=True),
            "scroll_ms": c.evaluate(_timed_js(
                "document.getElementById('lanesScroll').scrollTop += 800"), await_promise=True),
            # The search without its typing pause: from the input event to the
            # result on screen, less the page's 120 ms debounce.
            "search_ms": c.evaluate(f"(() => {{ {SEARCH} }})()", await_promise=True) - 120,
        }
        problems = c.problems(mark)
        if problems:
            print(f"warning: the page logged: {problems[:3]}", file=sys.stderr)
        requests = c.requests(mark)
        if requests != [page.as_uri()]:
            print(f"warning: the page made requests: {requests[:3]}", file=sys.stderr)
        return out


def bench(events: int, runs: int, tmp: Path) -> dict[str, Any]:
    srec = tmp / f"s{events}.srec"
    info = generate(srec, events)
    page = tmp / f"s{events}.html"
    html_s = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "sessrec", "html", str(srec), "-o", str(page)],
                       check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
        html_s.append(time.monotonic() - t0)
    loads = [load_once(page) for _ in range(runs)]
    row: dict[str, Any] = {
        "events": info["events"], "processes": info["processes"],
        "srec_mb": srec.stat().st_size / 1e6, "page_mb": page.stat().st_size / 1e6,
        "html_s": statistics.median(html_s),
    }
    for key in loads[0]:
        row[key] = statistics.median(x[key] for x in loads)
        row[key + "_max"] = max(x[key] for x in loads)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="100000,1000000",
                    help="comma-separated session sizes (default 100000,1000000)")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    if not os.access(CHROMIUM, os.X_OK):
        print(f"html_bench: needs Chromium at {CHROMIUM} (./setup.sh installs it)",
              file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="sessrec-html-bench-") as tmp:
        for n in (int(x) for x in a.events.split(",")):
            print(f"html_bench: {n:,} events ...", file=sys.stderr)
            rows.append(bench(n, a.runs, Path(tmp)))
    version = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    print(f"\nHTML report ({platform.machine()}, {os.cpu_count()} CPUs, "
          f"{version.strip() or 'chromium'}; median of {a.runs}, max in brackets)\n")
    print("| events | processes | .srec MB | page MB | sessrec html, s | ready, s "
          "| ready (page), ms | type filter, ms | search, ms | scroll, ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['events']:,} | {r['processes']:,} | {r['srec_mb']:.1f} | {r['page_mb']:.1f} "
              f"| {r['html_s']:.2f} | {r['ready_s']:.2f} ({r['ready_s_max']:.2f}) "
              f"| {r['ready_page_ms']:.0f} | {r['filter_ms']:.0f} ({r['filter_ms_max']:.0f}) "
              f"| {r['search_ms']:.0f} | {r['scroll_ms']:.0f} |")
    big = [r for r in rows if r["events"] >= 1_000_000]
    for r in big:
        verdict = "meets" if r["ready_s_max"] < 3 else "misses"
        print(f"\n{r['events']:,} events: interactive in {r['ready_s']:.2f} s "
              f"(worst {r['ready_s_max']:.2f} s): {verdict} the 3 s target.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
