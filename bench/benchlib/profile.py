"""Where the recorder's time goes under the open storm: py-spy samples the
`sessrec record` process from the gate (programs loaded) to its exit.

py-spy is a bench-only tool, not a project dependency:
    .venv/bin/pip install py-spy
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from benchlib.common import SESSREC, BenchError, Gate, build, parse_timed, timed_argv
from benchlib.workloads import Prepared

RATE = 250  # samples per second


def py_spy() -> str:
    venv = Path(sys.executable).parent / "py-spy"
    found = str(venv) if venv.exists() else shutil.which("py-spy")
    if found is None:
        raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def profile_sessrec(prep: Prepared, tmp: Path, out_dir: Path, log: TextIO,
                    native: bool = True) -> str:
    """Records prep under sessrec with py-spy attached; returns a summary and
    leaves the collapsed stacks in out_dir/profile-open.txt."""
    spy = py_spy()
    timed = build("timed")
    gate = Gate(tmp)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "profile-open.txt"
    raw.unlink(missing_ok=True)  # never summarise an older run's samples
    session = tmp / "profile.srec"
    argv = [*SESSREC, "record", "-f", "-o", str(session), "--",
            *timed_argv(timed, gate, prep.argv)]
    err = tmp / "profile.err"
    with open(err, "wb") as e:
        rec = subprocess.Popen(argv, cwd=prep.cwd, env=prep.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=e)
    fd = gate.wait_reader(rec)
    spy_argv = [spy, "record", "--pid", str(rec.pid), "--rate", str(RATE), "--format", "raw",
                "--output", str(raw), "--nonblocking"]
    if native:
        spy_argv.append("--native")
    spy_proc = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    # Let py-spy attach before the storm starts.
    time.sleep(1.0)
    Gate.open_(fd)
    rec.wait()
    _, spy_err = spy_proc.communicate(timeout=60)
    timing = parse_timed(err.read_text(errors="replace"))
    session.unlink(missing_ok=True)
    if spy_proc.returncode != 0 or not raw.exists() or raw.stat().st_size == 0:
        if native:
            print("bench: py-spy --native failed; sampling Python frames only", file=log)
            return profile_sessrec(prep, tmp, out_dir, log, native=False)
        raise BenchError(f"py-spy produced nothing: {spy_err[-1000:]}")
    return summarize(raw, timing.wall_ns / 1e9)


def summarize(raw: Path, wall_s: float, top: int = 15) -> str:
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        self_t[_short(frames[-1])] += count
        for f in {_short(f) for f in frames}:
            incl[f] += count
    if total == 0:
        return "py-spy took no samples"
    lines = [f"{total} samples at {RATE}/s = {total / RATE:.2f} s of recorder CPU "
             f"while the workload ran {wall_s:.2f} s", "",
             "| self % | function |", "| ---: | --- |"]
    lines += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in self_t.most_common(top)]
    lines += ["", "| inclusive % | function |", "| ---: | --- |"]
    lines += [f"| {100 * c / total:.1f} | `{f}` |" for f, c in incl.most_common(top)
              if not f.startswith("<module>") and "(sessrec" not in f]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """'func (path/to/file.py:12)' -> 'func (file.py)'"""
    name, _, where = frame.partition(" (")
    if not where:
        return name
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(file).name})"
