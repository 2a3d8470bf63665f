"""Shared by every benchmark: build the C workloads, run one through `timed`
behind a gate, read CPU times and session files, summarise samples."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent
WORKLOADS = BENCH / "workloads"
# The sessrec of the tree this bench is in (not whatever is installed), so a
# copy of the tree (git archive) can be benchmarked while the tree changes.
SESSREC = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); "
           "from sessrec.cli import main; sys.exit(main())"]
# A previous recording's tracepoints are detached in the background (~2 s of
# RCU waits); loading again meanwhile is slower, so the bench lets it finish.
SETTLE = 2.5
# Workloads run with this PATH, so every command is found by its first exec
# and the true number of exec events is known.
PATH = "/usr/bin:/bin"
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A benchmark cannot go on; the message says why."""


def build(name: str) -> Path:
    """bench/workloads/<name>.c compiled into bench/workloads/bin/<name>."""
    src = WORKLOADS / f"{name}.c"
    out = WORKLOADS / "bin" / name
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        gcc = shutil.which("gcc")
        if gcc is None:
            raise BenchError("gcc is needed to build the workloads (apt-get install gcc)")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([gcc, "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return out


def children_cpu_ns() -> int:
    """CPU time of every child this process has reaped so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


def proc_cpu_ns(pid: int) -> int:
    """utime + stime of a live process (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_NS


@dataclass
class Timing:
    """What `timed` measured: wall time of the workload and the CPU time of
    every process of it that was reaped."""

    wall_ns: int
    cpu_ns: int
    status: int


def parse_timed(stderr: str) -> Timing:
    m = re.search(r"^timed: ns=(\d+) cpu_ns=(\d+) status=(\d+)$", stderr, re.M)
    if not m:
        raise BenchError(f"no timing from the workload; its stderr was:\n{stderr[-2000:]}")
    return Timing(int(m[1]), int(m[2]), int(m[3]))


def parse_counts(stdout: str) -> dict[str, int]:
    """The `name=N ...` pairs a workload prints last."""
    pairs: dict[str, int] = {}
    for m in re.finditer(r"\b([a-z_0-9]+)=(\d+)\b", stdout):
        pairs[m[1]] = int(m[2])
    return pairs


class Gate:
    """A FIFO that `timed -g` waits on: the bench opens it once the
    configuration is ready, so set-up never counts in the workload's time."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "gate.fifo"
        if self.path.exists():
            self.path.unlink()
        os.mkfifo(self.path, 0o600)

    def wait_reader(self, proc: subprocess.Popen[Any], timeout: float = 60.0) -> int:
        """Returns a write end once `timed` waits on the gate."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
            if proc.poll() is not None:
                raise BenchError(f"the workload's wrapper exited ({proc.returncode}) "
                                 "before it reached the gate")
            if time.monotonic() > deadline:
                raise BenchError("the workload's wrapper never reached the gate")
            time.sleep(0.01)

    @staticmethod
    def open_(fd: int) -> None:
        try:
            os.write(fd, b"g")
        finally:
            os.close(fd)


def timed_argv(timed: Path, gate: Gate, cmd: Sequence[str], *, copies: int = 1,
               audit_session: bool = False) -> list[str]:
    argv = [str(timed), "-g", str(gate.path)]
    if copies != 1:
        argv += ["-j", str(copies)]
    if audit_session:
        argv.append("-a")
    return [*argv, "--", *cmd]


def info(path: Path) -> dict[str, Any]:
    r = subprocess.run([*SESSREC, "info", "--json", str(path)], capture_output=True, text=True,
                       check=True, cwd=REPO)
    return dict(json.loads(r.stdout))


def total(x: object) -> int:
    """A count that `sessrec info` gives either as a number or per type."""
    if isinstance(x, dict):
        return sum(int(v) for v in x.values())
    if isinstance(x, int | str):
        return int(x)
    raise BenchError(f"not a count: {x!r}")


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


DASH = "\u2013"  # the en dash of "min-max" in tables


def spread(xs: Sequence[float], digits: int = 3) -> str:
    """The median, then the min and max in brackets."""
    return f"{median(xs):.{digits}f} ({min(xs):.{digits}f}{DASH}{max(xs):.{digits}f})"


def settle() -> None:
    time.sleep(SETTLE)


def cgroup2_path() -> Path:
    """Where the cgroup2 hierarchy is mounted (hybrid machines: .../unified)."""
    sys.path.insert(0, str(REPO))
    from recorder.cgroup import cgroup2_mount

    return cgroup2_mount().path
