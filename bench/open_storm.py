#!/usr/bin/env python3
"""Open-storm benchmark: the cost of recording 1,000,000 open+close calls.

Runs the workload (bench/workloads/open_storm.c) unrecorded, at the floor
(programs loaded by a running `sessrec record`, workload outside any session)
and recorded, interleaved round by round, and reports medians and ratios from
this one run (the machine is noisy: compare ratios, not absolute times across
runs). Also: events recorded against the true count, losses, bytes per event,
the recorder's own CPU time, and the start-up time of `sessrec record -- /bin/true`.

    sudo .venv/bin/python bench/open_storm.py [--quick] [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SESSREC = [sys.executable, "-m", "sessrec"]
# A previous run's tracepoints are detached in the background (~2 s of RCU
# waits); loading again meanwhile is slower, so the bench lets it finish.
SETTLE = 2.5


def build(name: str) -> Path:
    src = HERE / "workloads" / f"{name}.c"
    out = HERE / "workloads" / "bin" / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True)
    return out


@dataclass
class Run:
    wall_ns: int
    cpu_ns: int
    opens: int


def parse(out: str) -> Run:
    m = re.search(r"opens=(\d+) ok=\d+ ns=(\d+) cpu_ns=(\d+)", out)
    if not m:
        raise SystemExit(f"unexpected workload output: {out!r}")
    return Run(wall_ns=int(m[2]), cpu_ns=int(m[3]), opens=int(m[1]))


def children_cpu_ns() -> int:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


def unrecorded(work: list[str]) -> Run:
    return parse(subprocess.run(work, capture_output=True, text=True, check=True).stdout)


def floor(work: list[str], tmp: Path) -> Run:
    """The workload outside any session while sessrec's programs are loaded."""
    out = tmp / "floor.srec"
    rec = subprocess.Popen(
        [*SESSREC, "record", "-f", "-o", str(out), "--", "sleep", "600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not out.exists() or out.stat().st_size == 0:
            if time.monotonic() > deadline or rec.poll() is not None:
                raise SystemExit("the floor's recorder did not start")
            time.sleep(0.05)
        return unrecorded(work)
    finally:
        rec.send_signal(signal.SIGTERM)  # passed on to sleep; then the recorder ends
        rec.wait(timeout=30)


def info(path: Path) -> dict[str, object]:
    r = subprocess.run([*SESSREC, "info", "--json", str(path)], capture_output=True, text=True,
                       check=True)
    return dict(json.loads(r.stdout))


@dataclass
class Recorded:
    run: Run
    recorder_cpu_ns: int
    events: int
    opens_recorded: int
    lost: int
    bytes: int


def recorded(work: list[str], tmp: Path) -> Recorded:
    out = tmp / "storm.srec"
    before = children_cpu_ns()
    r = subprocess.run([*SESSREC, "record", "-f", "-o", str(out), "--", *work],
                       capture_output=True, text=True, check=True)
    cpu = children_cpu_ns() - before
    run = parse(r.stdout)
    i = info(out)
    counts = dict(i["counts"])  # type: ignore[call-overload]
    lost = i["lost"]
    lost_total = sum(lost.values()) if isinstance(lost, dict) else int(lost)  # type: ignore[call-overload]
    return Recorded(run=run, recorder_cpu_ns=cpu - run.cpu_ns, events=sum(counts.values()),
                    opens_recorded=int(counts.get("open", 0)), lost=lost_total,
                    bytes=out.stat().st_size)


def startup(tmp: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        time.sleep(SETTLE)
        t = time.monotonic()
        subprocess.run([*SESSREC, "record", "-f", "-o", str(tmp / "true.srec"), "--", "/bin/true"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.monotonic() - t)
    return times


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}-{max(xs):.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200,000 opens, 2 rounds (a smoke test)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--opens", type=int, default=1_000_000)
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("open_storm: needs root (it runs sessrec record)", file=sys.stderr)
        return 2
    rounds, opens = (2, 200_000) if a.quick else (a.rounds, a.opens)
    work = [str(build("open_storm")), str(opens)]
    base: list[Run] = []
    flo: list[Run] = []
    rec: list[Recorded] = []
    with tempfile.TemporaryDirectory(prefix="sessrec-bench-") as d:
        tmp = Path(d)
        for i in range(rounds):
            # Interleaved, so drift in the machine's speed hits every setup alike.
            base.append(unrecorded(work))
            time.sleep(SETTLE)
            flo.append(floor(work, tmp))
            time.sleep(SETTLE)
            rec.append(recorded(work, tmp))
            print(f"round {i + 1}/{rounds}: unrecorded {base[-1].wall_ns / 1e9:.3f} s, "
                  f"floor {flo[-1].wall_ns / 1e9:.3f} s, "
                  f"recorded {rec[-1].run.wall_ns / 1e9:.3f} s", file=sys.stderr)
        starts = startup(tmp, 3 if a.quick else 5)
    b = [r.wall_ns / 1e9 for r in base]
    f = [r.wall_ns / 1e9 for r in flo]
    r = [x.run.wall_ns / 1e9 for x in rec]
    mb = statistics.median(b)
    result = {
        "opens_per_run": opens,
        "rounds": rounds,
        "unrecorded_s": b,
        "floor_s": f,
        "recorded_s": r,
        "floor_ratio": statistics.median(f) / mb,
        "recorded_ratio": statistics.median(r) / mb,
        "events_recorded": [x.events for x in rec],
        "opens_recorded": [x.opens_recorded for x in rec],
        "opens_true": opens,
        "lost": [x.lost for x in rec],
        "bytes_per_event": statistics.median(x.bytes / max(x.events, 1) for x in rec),
        "recorder_cpu_s": statistics.median(x.recorder_cpu_ns / 1e9 for x in rec),
        "startup_s": starts,
    }
    recorded_list = ", ".join(f"{x.opens_recorded:,}" for x in rec)
    print(f"""
| measure | value |
| --- | --- |
| workload | {opens:,} open+close, {rounds} interleaved rounds |
| unrecorded, s (median, min-max) | {spread(b)} |
| floor (programs loaded, no session), s | {spread(f)} |
| recorded, s | {spread(r)} |
| **floor ratio** | **{result['floor_ratio']:.2f}** |
| **recorded ratio** (target ≤ 1.3) | **{result['recorded_ratio']:.2f}** |
| opens recorded / true (per round) | {recorded_list} / {opens:,} |
| events lost (per round) | {', '.join(str(x.lost) for x in rec)} |
| bytes per event on disk | {result['bytes_per_event']:.2f} |
| recorder CPU, s (median) | {result['recorder_cpu_s']:.2f} |
| start-up of `sessrec record -- /bin/true`, s (target < 1.5) | {spread(starts)} |
""")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    ok = all(x.opens_recorded >= opens for x in rec)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
