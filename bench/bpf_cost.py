#!/usr/bin/env python3
"""In-kernel cost of sessrec's BPF programs under the open storm, per program:
at the floor (programs loaded, the storm outside every session) and recorded.

Turns on kernel.bpf_stats_enabled for the measurement (and restores it), and
reads each tracepoint program's run_time_ns and run_cnt with bpftool before
and after 1,000,000 open+close: the programs the recorder holds open only
(its /proc/PID/fdinfo), as others may run BPF on the same machine. The
statistics add two clock reads to every program run, so the figures are a
little high.

    sudo .venv/bin/python bench/bpf_cost.py [--opens N] [--path FILE]
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

from benchlib.common import REPO, SESSREC, BenchError, Gate, build, settle

STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
Progs = dict[int, tuple[str, int, int]]


def owned(pid: int) -> set[int]:
    """The ids of the BPF programs process pid holds open: the recorder's own,
    not those of anything else that runs BPF on the machine meanwhile."""
    ids = set()
    fdinfo = Path(f"/proc/{pid}/fdinfo")
    for f in fdinfo.iterdir():
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("prog_id:"):
                ids.add(int(line.split()[1]))
    return ids


def progs(owner: int) -> Progs:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                         check=True).stdout
    mine = owned(owner)
    return {p["id"]: (p.get("name", "?"), p.get("run_time_ns", 0), p.get("run_cnt", 0))
            for p in json.loads(out) if p.get("type") == "tracepoint" and p["id"] in mine}


def show(label: str, before: Progs, after: Progs, opens: int) -> None:
    rows = []
    for pid, (name, t, c) in after.items():
        t0, c0 = before.get(pid, (name, 0, 0))[1:]
        if c > c0:
            rows.append((name, t - t0, c - c0))
    total = sum(t for _, t, _ in rows)
    print(f"{label}: {total / 1e9:.3f} s in BPF programs, {total / opens:.0f} ns per open+close")
    for name, t, c in sorted(rows, key=lambda r: -r[1])[:6]:
        print(f"  {name:40} {c:>10,} runs {t / c:6.0f} ns/run")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--opens", type=int, default=1_000_000)
    ap.add_argument("--race-check", action="store_true",
                    help="record with --race-check (a sys_enter program per open as well)")
    ap.add_argument("--path", default="/etc/hostname",
                    help="the file the storm opens (a deep one shows the cost of the "
                         "kernel path walk per component)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bpf_cost: needs root", file=sys.stderr)
        return 2
    storm = [str(build("open_storm")), str(a.opens), a.path]
    race = ["--race-check"] if a.race_check else []
    old = STATS.read_text().strip()
    STATS.write_text("1")
    try:
        with tempfile.TemporaryDirectory(prefix="sessrec-bench-", dir="/var/tmp") as d:
            tmp = Path(d)
            # The floor: a recorder with its session asleep, the storm outside it.
            out = tmp / "floor.srec"
            rec = subprocess.Popen([*SESSREC, "record", "--no-daemon", *race, "-f", "-o", str(out),
                                    "--", "sleep", "600"], cwd=REPO, stderr=subprocess.DEVNULL)
            try:
                while not out.exists() or out.stat().st_size == 0:
                    if rec.poll() is not None:
                        raise BenchError("the recorder did not start")
                    time.sleep(0.05)
                before = progs(rec.pid)
                subprocess.run(storm, check=True, stdout=subprocess.DEVNULL)
                show("floor", before, progs(rec.pid), a.opens)
            finally:
                rec.terminate()
                rec.wait()
            settle()
            # Recorded: the storm between two gates, so the programs are read
            # while the recorder still has them loaded.
            gate = Gate(tmp)
            script = f"read x < {gate.path}; {' '.join(storm)} > /dev/null; read x < {gate.path}"
            rec = subprocess.Popen([*SESSREC, "record", "--no-daemon", *race, "-f", "-o",
                                    str(tmp / "s.srec"), "--", "/bin/sh", "-c", script],
                                   cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            fd = gate.wait_reader(rec)
            before = progs(rec.pid)
            Gate.open_(fd)
            time.sleep(0.2)
            fd = gate.wait_reader(rec, timeout=600)
            after = progs(rec.pid)
            Gate.open_(fd)
            rec.wait()
            show("recorded", before, after, a.opens)
    except BenchError as e:
        print(f"bpf_cost: {e}", file=sys.stderr)
        return 1
    finally:
        STATS.write_text(old)
    return 0


if __name__ == "__main__":
    sys.exit(main())
