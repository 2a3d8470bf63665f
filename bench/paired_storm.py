#!/usr/bin/env python3
"""The open storm's recording cost, measured in pairs of short bursts.

On a shared VM the speed of a CPU drifts by a quarter from one second to
the next, so whole runs of the storm (bench/run) spread more than the cost
being measured. Here two copies of the storm stay alive side by side, one
recorded and one not, and take turns: a burst of N open+close calls in the
recorded one, a burst in the other (then the other first, and so on), both
on one CPU (taskset). Both bursts of a pair see the same machine, so the
ratio of a pair is steady even when the times are not, and the median of
many pairs is the cost.

For each configuration (`record`: `sessrec record --no-daemon`; `daemon`:
through a `sessrec daemon` started for it; `race`: `record --race-check`):

- recorded / floor: the median ratio of the pairs (the other copy runs with
  the programs loaded, outside any session: the floor);
- floor / unloaded: first, one storm's bursts with the programs loaded
  (a `sessrec record -- sleep`), against its bursts just before they were
  loaded and just after they were unloaded, over several load cycles (a few
  seconds apart, so less steady than the pairs);
- recorded / unloaded: the product, the figure bench/run's ratio estimates;
- that every open of the recorded copy is in the file and none was lost.

    sudo .venv/bin/python bench/paired_storm.py [--pairs 40] [--opens 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib.common import REPO, SESSREC, BenchError, build, info, total
from benchlib.configs import Runner

CONFIGS = ("record", "daemon", "race")


class Storm:
    """A running `open_storm -b`: one burst per request."""

    def __init__(self, argv: list[str], stderr: IO[bytes]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=stderr, cwd=REPO)

    def burst(self, n: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{n}\n".encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the storm ended (exit {self.proc.wait()})")
        return int(line) / 1e9

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=120)


def pinned(a: argparse.Namespace, exe: Path) -> list[str]:
    """The storm, on the one CPU both copies share: on two CPUs of their
    own, one copy would share its CPU with other work (the recorder,
    interrupts) and the pairs would be biased, not merely noisy."""
    return ["taskset", "-c", str(a.cpu), str(exe), "-b", a.path]


def quantiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], statistics.median(xs), q[2]


def loaded_floor(a: argparse.Namespace, tmp: Path, exe: Path,
                 log: IO[bytes]) -> dict[str, float]:
    """floor / unloaded: bursts of one storm, alternately with the programs
    loaded by `sessrec record -- sleep` (the storm outside its session) and
    not loaded at all; each loaded phase against the unloaded ones just
    before and after it, a few seconds apart."""
    storm = Storm(pinned(a, exe), log)
    for _ in range(3):
        storm.burst(a.opens)
    phases: list[list[float]] = [[storm.burst(a.opens) for _ in range(a.around)]]
    ratios: list[float] = []
    floor_all: list[float] = []
    for _ in range(a.cycles):
        out = tmp / "floor.srec"
        rec = subprocess.Popen([*SESSREC, "record", "-f", "--no-daemon", "-o", str(out), "--",
                                "sleep", "3600"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        deadline = time.monotonic() + 120
        while not out.exists() or out.stat().st_size == 0:
            if time.monotonic() > deadline or rec.poll() is not None:
                raise BenchError("the floor's recorder did not start")
            time.sleep(0.05)
        loaded = [storm.burst(a.opens) for _ in range(a.around)]
        rec.terminate()
        rec.wait(timeout=60)
        out.unlink(missing_ok=True)
        phases.append([storm.burst(a.opens) for _ in range(a.around)])
        ratios.append(statistics.median(loaded) / statistics.median(phases[-2] + phases[-1]))
        floor_all += loaded
    storm.close()
    unloaded = [t for ph in phases for t in ph]
    return {"floor_over_unloaded": statistics.median(ratios),
            "ns_floor": statistics.median(floor_all) / a.opens * 1e9,
            "ns_unloaded": statistics.median(unloaded) / a.opens * 1e9}


def measure(config: str, a: argparse.Namespace, tmp: Path, runner: Runner,
            exe: Path, log: IO[bytes]) -> dict[str, float | int | str]:
    """recorded / floor: pairs of bursts of a recorded storm and of one
    outside every session while the programs are loaded."""
    other = Storm(pinned(a, exe), log)
    out = tmp / f"{config}.srec"
    flags = {"record": ["--no-daemon"], "race": ["--no-daemon", "--race-check"],
             "daemon": ["--control-socket", runner.daemon_sock]}[config]
    if a.ring_pages and config != "daemon":
        flags += ["--ring-pages", str(a.ring_pages)]
    if config == "daemon":
        runner.start_daemon()
    rec = Storm([*SESSREC, "record", "-f", "-o", str(out), *flags, "--", *pinned(a, exe)], log)
    recorded_opens = 0
    pairs: list[tuple[float, float]] = []
    try:
        for _ in range(3):
            other.burst(a.opens)
            rec.burst(a.opens)
            recorded_opens += a.opens
        for i in range(a.pairs):
            if i % 2:
                t_floor, t_rec = other.burst(a.opens), rec.burst(a.opens)
            else:
                t_rec, t_floor = rec.burst(a.opens), other.burst(a.opens)
            recorded_opens += a.opens
            pairs.append((t_rec, t_floor))
    finally:
        status = rec.close()
        other.close()
        runner.close()
    if status != 0:
        raise BenchError(f"{config}: sessrec record exited {status}")
    summary = info(out)
    out.unlink()
    q1, med, q3 = quantiles([r / f for r, f in pairs])
    return {"config": config, "pairs": len(pairs), "recorded_over_floor": med,
            "q1": q1, "q3": q3,
            "ns_recorded": statistics.median(r for r, _ in pairs) / a.opens * 1e9,
            "opens_recorded": int(dict(summary["counts"]).get("open", 0)),
            "opens_true": recorded_opens, "lost": total(summary["lost"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40, help="pairs of bursts (default 40)")
    ap.add_argument("--opens", type=int, default=100_000, help="opens per burst")
    ap.add_argument("--around", type=int, default=6,
                    help="bursts per phase of the floor's load cycles")
    ap.add_argument("--cycles", type=int, default=8,
                    help="load cycles for floor / unloaded (default 8)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--ring-pages", type=int, metavar="N",
                    help="`record --ring-pages N` (default: record's own)")
    ap.add_argument("--path", default="/etc/hostname",
                    help="the file the storms open (default /etc/hostname: two components; "
                    "a deeper one shows the kernel path walk's cost per component)")
    ap.add_argument("--cpu", type=int, default=(os.cpu_count() or 1) - 1,
                    help="the CPU both storms run on (default: the last)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("paired_storm: needs root (it runs sessrec record)", file=sys.stderr)
        return 2
    configs = a.configs.split(",")
    if unknown := [c for c in configs if c not in CONFIGS]:
        print(f"paired_storm: unknown configuration {unknown[0]!r}", file=sys.stderr)
        return 2
    exe = build("open_storm")
    try:
        with tempfile.TemporaryDirectory(prefix="sessrec-paired-", dir="/var/tmp") as d:
            tmp = Path(d)
            with open(tmp / "log", "wb") as log:
                runner = Runner(tmp, sys.stderr)
                f = loaded_floor(a, tmp, exe, log)
                done: list[dict[str, float | int | str]] = []
                print(f"floor / unloaded: {f['floor_over_unloaded']:.3f} (median of "
                      f"{a.cycles} load cycles; {f['ns_floor']:.0f} against "
                      f"{f['ns_unloaded']:.0f} ns per open+close)\n")
                print("| configuration | pairs | recorded / floor, median (quartiles) | "
                      "recorded / unloaded | ns per open+close recorded | opens in the file "
                      "/ true | lost |")
                print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
                for config in configs:
                    r = measure(config, a, tmp, runner, exe, log)
                    r["recorded_over_unloaded"] = (float(r["recorded_over_floor"])
                                                   * f["floor_over_unloaded"])
                    done.append(r)
                    rf = float(r["recorded_over_floor"])
                    print(f"| {config} | {r['pairs']} | {rf:.3f} ({r['q1']:.3f}-{r['q3']:.3f}) "
                          f"| **{r['recorded_over_unloaded']:.2f}** | "
                          f"{r['ns_recorded']:.0f} | {r['opens_recorded']:,} / "
                          f"{r['opens_true']:,} | {r['lost']} |", flush=True)
    except (BenchError, subprocess.CalledProcessError) as e:
        print(f"paired_storm: {e}", file=sys.stderr)
        return 1
    if a.json:
        Path(a.json).write_text(json.dumps({"floor": f, "configs": done}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
