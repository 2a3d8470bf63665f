"""bench/run: every workload under every configuration, interleaved round by
round, then one table as text, JSON and Markdown (docs/PERFORMANCE.md)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from benchlib import auditd, profile, report
from benchlib.common import BENCH, REPO, BenchError, build, settle
from benchlib.configs import CONFIGS, DEFAULT_CONFIGS, Runner, rate_prepared
from benchlib.workloads import PREPARE, WORKLOADS_BY_NAME, Prepared, Services

EPILOG = """\
examples:
  sudo bench/run                          # everything: ~30 min on 2 cores
  sudo bench/run --quick                  # small sizes, 1 round: a smoke test
  sudo bench/run --only open,rate --configs unrecorded,sessrec
  sudo bench/run --only open --rounds 3 --no-doc

The workloads (bench/workloads/) run outside the measured time until the
configuration is ready (`timed` waits at a gate). The auditd configuration
takes /run/sessrec-audit.lock, runs its own auditd with a never-rotating log
in the bench's temp directory, and always restores the machine's auditd,
audit rules and settings afterwards.
"""
RATE_COPIES = (1, 2, 4)
RATE_COPIES_QUICK = (1, 2)
# One storm paced at these fractions of its unrecorded speed, for this long.
PACED_FRACTIONS = (0.2, 0.4, 0.6, 0.8)
PACED_FRACTIONS_QUICK = (0.3, 0.6)
PACED_SECONDS = 4.0
# Workloads shorter than this (unrecorded) are warmed up again in every round.
WARM_EACH_ROUND_S = 3.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/run", description="Benchmarks sessrec against unrecorded runs, the BPF "
        "floor and auditd, on five workloads.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes and 1 round (under 3 minutes)")
    ap.add_argument("--only", metavar="WORKLOAD,...",
                    help=f"run only these: {','.join(WORKLOADS_BY_NAME)},rate "
                    "(rate: the zero-loss rate ladder)")
    ap.add_argument("--configs", metavar="CONFIG,...", default=",".join(DEFAULT_CONFIGS),
                    help=f"configurations to run (default {','.join(DEFAULT_CONFIGS)}; "
                    "also: race, `sessrec record --race-check`)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (default 5, --quick 1)")
    ap.add_argument("--out", metavar="DIR", type=Path, default=BENCH / "out",
                    help="where results.json goes (default bench/out)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the recorder under the open storm with py-spy "
                    "(.venv/bin/pip install py-spy)")
    doc = ap.add_mutually_exclusive_group()
    doc.add_argument("--doc", dest="doc", action="store_true", default=None,
                     help="write docs/PERFORMANCE.md (the default, except with --quick)")
    doc.add_argument("--no-doc", dest="doc", action="store_false")
    a = ap.parse_args(argv)
    names = [*WORKLOADS_BY_NAME, "rate"]
    a.only = a.only.split(",") if a.only else names
    a.configs = a.configs.split(",")
    for w in a.only:
        if w not in names:
            ap.error(f"unknown workload {w!r}; choose from {','.join(names)}")
    for c in a.configs:
        if c not in CONFIGS:
            ap.error(f"unknown configuration {c!r}; choose from {','.join(CONFIGS)}")
    if "unrecorded" not in a.configs:
        a.configs.insert(0, "unrecorded")  # every ratio needs it
    if a.rounds is None:
        a.rounds = 1 if a.quick else 5
    if a.doc is None:
        a.doc = not a.quick
    return a


def start_listener() -> tuple[subprocess.Popen[str], int]:
    exe = build("listener")
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("port="):
        proc.kill()
        raise BenchError(f"the loopback listener did not start: {line!r}")
    return proc, int(line.split("=")[1])


def run(a: argparse.Namespace, log: TextIO) -> dict[str, Any]:
    notes: list[str] = []
    configs = list(a.configs)
    if "auditd" in configs:
        why = auditd.available()
        if why is not None:
            configs.remove("auditd")
            notes.append(f"auditd configuration skipped: {why}")
            print(f"bench: {notes[-1]}", file=log)
    if "bpftrace" in configs and shutil.which("bpftrace") is None:
        configs.remove("bpftrace")
        notes.append("bpftrace configuration skipped: bpftrace is not installed")
    workloads = [w for w in WORKLOADS_BY_NAME if w in a.only]
    sizes = {w: (WORKLOADS_BY_NAME[w].quick if a.quick else WORKLOADS_BY_NAME[w].full)
             for w in workloads}
    cells: dict[tuple[str, str], report.Cell] = {}
    rate: list[dict[str, Any]] = []
    prof: str | None = None
    listener, port = start_listener()
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            d = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="sessrec-bench-", dir="/var/tmp"))
            tmp = Path(d)
            os.chmod(tmp, 0o755)  # the workloads run as root, but keep paths readable
            runner = Runner(tmp, log)
            stack.callback(runner.close)
            services = Services(port=port)
            prepared = {w: PREPARE[w](sizes[w], tmp, services) for w in workloads}
            for w in workloads:
                for c in configs:
                    cells[(w, c)] = report.Cell(w, c, prepared[w].kind, prepared[w].exact)
            short: set[str] = set()
            for w in workloads:
                # Once unrecorded and untimed first: page cache, compiled
                # binaries and the generated project are warm for every round.
                if runner.run("unrecorded", prepared[w]).wall_s < WARM_EACH_ROUND_S:
                    short.add(w)
            for rnd in range(a.rounds):
                # Interleaved, so drift in the machine's speed hits every
                # configuration alike; the order turns each round.
                order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
                for w in workloads:
                    if w in short:
                        # A short workload after a long one finds the caches
                        # the long one pushed out: warm it again, untimed.
                        runner.run("unrecorded", prepared[w])
                    for c in order:
                        s = runner.run(c, prepared[w])
                        cells[(w, c)].samples.append(s)
                        rec = s.recorded.get(prepared[w].kind) if s.recorded else None
                        print(f"bench: round {rnd + 1}/{a.rounds} {w:8} {c:10} "
                              f"{s.wall_s:8.3f} s"
                              + (f"  {rec:,}/{s.true[prepared[w].kind]:,} {prepared[w].kind}"
                                 f"  lost {s.lost}" if rec is not None else ""), file=log)
                        if c != "unrecorded":
                            settle()
            if "rate" in a.only and "sessrec" in configs:
                rate = rate_ladder(runner, a, tmp, services, log)
            if a.profile:
                storm = WORKLOADS_BY_NAME["open"]
                size = storm.quick if a.quick else storm.full
                settle()
                prof = profile.profile_sessrec(PREPARE["open"](size, tmp, services), tmp, a.out,
                                               log)
                prof = f"py-spy, {size:,} open+close: " + prof
    finally:
        listener.kill()
        listener.wait()
    summaries = {k: c.summary(cells.get((k[0], "unrecorded"))) for k, c in cells.items()}
    tgts = report.targets(summaries, rate)
    meta = {
        "command": "bench/run " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "bench/run",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "rounds": a.rounds,
        "quick": a.quick,
        "configs": configs,
        "duration_s": round(time.monotonic() - started),
        "commit": commit(),
        "workloads": {w: WORKLOADS_BY_NAME[w].describe(sizes[w]) for w in workloads},
        "notes": notes,
    }
    ordered = [cells[(w, c)] for w in workloads for c in configs]
    md = report.markdown(meta, ordered, summaries, rate, tgts, prof)
    return {
        "meta": meta,
        "cells": [{"workload": c.workload, "config": c.config, "kind": c.kind,
                   "exact": c.exact, "summary": summaries[(c.workload, c.config)],
                   "samples": [s.to_json() for s in c.samples]} for c in ordered],
        "rate": rate,
        "targets": tgts,
        "profile": prof,
        "markdown": md,
    }


def commit() -> str | None:
    r = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                       capture_output=True, text=True)
    if r.returncode == 0:
        return r.stdout.strip()
    stamp = REPO / "COMMIT"  # a copy of the tree made with git archive, stamped
    return stamp.read_text().strip() if stamp.exists() else None


def rate_ladder(runner: Runner, a: argparse.Namespace, tmp: Path, services: Services,
                log: TextIO) -> list[dict[str, Any]]:
    """The highest event rate recorded without loss. First open storms in
    parallel in one session (1, 2, 4: the generators' full speed); then one
    storm paced at fractions of its unrecorded speed, each held for a few
    seconds, since a rate the recorder cannot sustain loses events only once
    its backlog outgrows the ring."""
    size = WORKLOADS_BY_NAME["open"].quick if a.quick else WORKLOADS_BY_NAME["open"].full
    base = PREPARE["open"](size, tmp, services)
    out: list[dict[str, Any]] = []

    def one(prep: Prepared, config: str, copies: int, paced: int | None) -> dict[str, Any]:
        s = runner.run(config, prep)
        opens = int(s.recorded["open"]) if s.recorded else s.true["open"]
        row = {"copies": copies, "paced": paced, "config": config, "wall_s": s.wall_s,
               "true": s.true["open"], "recorded": opens, "lost": int(s.lost or 0),
               "rate": opens / s.wall_s, "recorder_cpu_s": s.recorder_cpu_s}
        out.append(row)
        what = f"{copies} storm(s)" if paced is None else f"paced {paced:,}/s"
        print(f"bench: rate {what:18} {config:10} {s.wall_s:8.3f} s "
              f"{row['rate']:12,.0f} opens/s  lost {row['lost']}", file=log)
        if config == "sessrec":
            settle()
        return row

    full_speed = 0.0
    for copies in RATE_COPIES_QUICK if a.quick else RATE_COPIES:
        prep = rate_prepared(base, copies)
        u = one(prep, "unrecorded", copies, None)
        full_speed = full_speed or u["rate"]
        one(prep, "sessrec", copies, None)
    hold = 1.0 if a.quick else PACED_SECONDS
    for fraction in PACED_FRACTIONS_QUICK if a.quick else PACED_FRACTIONS:
        rate = int(full_speed * fraction / 10_000) * 10_000 or 10_000
        prep = dataclasses.replace(base, argv=[base.argv[0], str(int(rate * hold)),
                                               "/etc/hostname", str(rate)])
        one(prep, "sessrec", 1, rate)
    return out


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    if os.geteuid() != 0:
        print("bench/run: needs root (it runs sessrec record and auditd)", file=sys.stderr)
        return 2
    # SIGTERM as Ctrl-C: the cleanup (the listener, the workload, auditd and its
    # rules) runs either way; a plain SIGTERM left the listener behind.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = run(a, sys.stderr)
    except BenchError as e:
        print(f"bench/run: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench/run: interrupted", file=sys.stderr)
        return 130
    a.out.mkdir(parents=True, exist_ok=True)
    md = results.pop("markdown")
    (a.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (a.out / "results.md").write_text(md)
    print(md)
    print(f"bench/run: results in {a.out / 'results.json'}", file=sys.stderr)
    if a.doc:
        report.write_doc(REPO / "docs" / "PERFORMANCE.md", md)
        print("bench/run: docs/PERFORMANCE.md updated", file=sys.stderr)
    return 0

