#!/usr/bin/env python3
"""Open-storm benchmark: the cost of recording 1,000,000 open+close calls.

Runs the workload (bench/workloads/open_storm.c) unrecorded, at the floor
(programs loaded by a running `sessrec record`, workload outside any session)
and recorded, interleaved round by round, and reports medians and ratios from
this one run (the machine is noisy: compare ratios, not absolute times across
runs). Also: events recorded against the true count, losses, bytes per event,
the recorder's own CPU time, and the start-up time of `sessrec record -- /bin/true`.

This is the open storm of bench/run (which adds the other workloads, auditd
and the zero-loss rate) with the start-up time; both use bench/benchlib.

    sudo .venv/bin/python bench/open_storm.py [--quick] [--rounds N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.common import SESSREC, BenchError, median, settle, spread
from benchlib.configs import Runner, Sample
from benchlib.workloads import PREPARE, Services


def startup(tmp: Path, n: int) -> list[float]:
    times = []
    for _ in range(n):
        settle()
        t = time.monotonic()
        subprocess.run([*SESSREC, "record", "-f", "-o", str(tmp / "true.srec"), "--", "/bin/true"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.monotonic() - t)
    return times


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
    runs: dict[str, list[Sample]] = {"unrecorded": [], "floor": [], "sessrec": []}
    try:
        with tempfile.TemporaryDirectory(prefix="sessrec-bench-", dir="/var/tmp") as d:
            tmp = Path(d)
            runner = Runner(tmp, sys.stderr)
            prep = PREPARE["open"](opens, tmp, Services(port=0))
            for i in range(rounds):
                # Interleaved, so drift in the machine's speed hits every setup alike.
                for config, samples in runs.items():
                    samples.append(runner.run(config, prep))
                    if config != "unrecorded":
                        settle()
                print(f"round {i + 1}/{rounds}: " + ", ".join(
                    f"{c} {s[-1].wall_s:.3f} s" for c, s in runs.items()), file=sys.stderr)
            starts = startup(tmp, 3 if a.quick else 5)
    except BenchError as e:
        print(f"open_storm: {e}", file=sys.stderr)
        return 1
    b, f, r = ([s.wall_s for s in runs[c]] for c in ("unrecorded", "floor", "sessrec"))
    rec = runs["sessrec"]
    opens_rec = [int((x.recorded or {}).get("open", 0)) for x in rec]
    result = {
        "opens_per_run": opens,
        "rounds": rounds,
        "unrecorded_s": b,
        "floor_s": f,
        "recorded_s": r,
        "floor_ratio": median(f) / median(b),
        "recorded_ratio": median(r) / median(b),
        "events_recorded": [x.events for x in rec],
        "opens_recorded": opens_rec,
        "opens_true": opens,
        "lost": [x.lost for x in rec],
        "bytes_per_event": median([(x.bytes or 0) / max(x.events or 0, 1) for x in rec]),
        "recorder_cpu_s": median([x.recorder_cpu_s or 0.0 for x in rec]),
        "startup_s": starts,
    }
    print(f"""
| measure | value |
| --- | --- |
| workload | {opens:,} open+close, {rounds} interleaved rounds |
| unrecorded, s (median, min-max) | {spread(b)} |
| floor (programs loaded, no session), s | {spread(f)} |
| recorded, s | {spread(r)} |
| **floor ratio** | **{result['floor_ratio']:.2f}** |
| **recorded ratio** (target ≤ 1.3) | **{result['recorded_ratio']:.2f}** |
| opens recorded / true (per round) | {', '.join(f'{n:,}' for n in opens_rec)} / {opens:,} |
| events lost (per round) | {', '.join(str(x.lost) for x in rec)} |
| bytes per event on disk | {result['bytes_per_event']:.2f} |
| recorder CPU, s (median) | {result['recorder_cpu_s']:.2f} |
| start-up of `sessrec record -- /bin/true`, s (target < 1.5) | {spread(starts)} |
""")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(n >= opens for n in opens_rec) else 1


if __name__ == "__main__":
    sys.exit(main())
