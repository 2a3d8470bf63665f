"""Replay benchmark: a synthetic 1,000,000-event session in the real format,
then the time of `export --format jsonl` (and teleport, ecs), `info`, `tree`
and `replay` on it. Prints a Markdown table; never fails on timings.

    .venv/bin/python bench/replay_bench.py [--events N] [--keep PATH]
    .venv/bin/python bench/replay_bench.py --against DIR [--runs N]
    .venv/bin/python bench/replay_bench.py --against-python [--runs N]

--against DIR compares this checkout with another one (DIR, a checkout of
an older commit: `git archive REV | tar -x -C DIR`): each command runs in a
new process of each checkout in turn, runs times, and the table gives the
medians and their ratio (after / before). Made for a shared machine: the
turns see the same load, and CPU time counts more than wall time.
--against-python compares this checkout's read side as compiled with mypyc
(replay/compiled.py) with its Python sources (SESSREC_PURE_PYTHON=1), in the
same way.

The session is what a busy build looks like: a shell forking children that
exec compilers and tools, each opening a handful of files (some failing),
a few connecting, exiting with a code or a signal; runs of /bin/true; some
threads. It is written with recorder.writer.SessionWriter, so the reader
sees exactly what a recording would give it. Targets (issue 4): jsonl export
>= 300,000 events/s, info < 0.5 s, tree < 5 s.
"""

from __future__ import annotations

import argparse
import calendar
import io
import os
import platform
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recorder.writer import SessionWriter
from replay import compiled
from sessrec.cli import main

FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6
AT_FDCWD = -100
O_RDONLY, O_WRONLY, O_CREAT, O_TRUNC, O_CLOEXEC = 0, 1, 0o100, 0o1000, 0o2000000
WALL_NS = calendar.timegm((2026, 11, 21, 11, 0, 0, 0, 0, 0)) * 1_000_000_000

HEADER: dict[str, Any] = {
    "session_id": "0b9c1f2e-8d7a-4c3b-9e5f-1a2b3c4d5e6f",
    "hostname": "bench",
    "kernel": "6.8.0-45-generic",
    "user": "alice",
    "uid": 1000,
    "login_uid": 1000,
    "audit_session_id": 7,
    "command": ["/bin/bash", "-c", "make -j8"],
    "cwd": b"/home/alice/src",
    "leader_pid": 1000,
    "started_at": "2026-11-21T11:00:00.000000Z",
    "clock": {"wall_ns": WALL_NS, "mono_ns": 1_000_000_000_000},
    "cgroup": "/sessrec.slice/bench.scope",
    "cgroup_id": 4242,
    "recorder": {"version": "bench", "pid": 999},
    "limits": {"argv_max": 32768, "path_max": 4096},
    "abi_version": 1,
}

PROGRAMS = [
    (b"/usr/bin/cc", [b"cc", b"-O2", b"-c", b"src/main.c", b"-o", b"build/main.o"]),
    (b"/usr/bin/ld", [b"ld", b"-o", b"build/app", b"build/main.o", b"-lc"]),
    (b"/usr/bin/python3", [b"python3", b"tools/gen.py", b"--out", b"gen/"]),
    (b"/usr/bin/git", [b"git", b"rev-parse", b"HEAD"]),
    (b"/usr/bin/curl", [b"curl", b"-fsS", b"https://pkg.example.com/index"]),
]
FILES = [
    b"/etc/ld.so.cache",
    b"/lib/x86_64-linux-gnu/libc.so.6",
    b"src/main.c",
    b"include/app.h",
    b"/usr/include/stdio.h",
    b"build/main.o",
    b"/nonexistent/cfg",
]


def _sa_in(port: int, addr: bytes) -> bytes:
    return struct.pack("<H", 2) + struct.pack(">H", port) + addr + bytes(8)


def generate(path: str, n_events: int) -> int:
    """Write a session of exactly n_events events; return the process count."""
    w = SessionWriter(path, HEADER)
    ts = 0
    n = 0
    procs = 1

    def add(ev: list[Any]) -> None:
        nonlocal n
        w.add(ev)
        n += 1

    add([EXEC, 1000, 1000, 1000, 999, 1000, b"bash", 0, 0, b"/bin/bash",
         [b"bash", b"-c", b"make -j8"], 3, 1000, 0])
    pid = 1001
    i = 0
    while n < n_events - 1:
        i += 1
        ts += 20_000
        child = pid
        pid = pid + 1 if pid < 4_000_000 else 1001
        procs += 1
        add([FORK, ts, 1000, 1000, 999, 1000, b"bash", 0, child])
        if i % 50 < 10:  # runs of /bin/true
            add([EXEC, ts + 1000, child, child, 1000, 1000, b"true", 0, 0, b"/bin/true",
                 [b"true"], 1, child, 0])
            add([EXIT, ts + 3000, child, child, 1000, 1000, b"true", 0, 0])
            continue
        exe, argv = PROGRAMS[i % len(PROGRAMS)]
        comm = exe.rsplit(b"/", 1)[-1]
        add([EXEC, ts + 1000, child, child, 1000, 1000, comm, 0, 0, exe, argv, len(argv),
             child, 0])
        for k, f in enumerate(FILES):
            ret = -2 if f.startswith(b"/nonexistent") else 3 + k
            flags = O_WRONLY | O_CREAT | O_TRUNC if f.endswith(b".o") else O_RDONLY | O_CLOEXEC
            tid = child + 1 if (i % 7 == 0 and k % 2) else child  # a second thread
            add([OPEN, ts + 2000 + k * 100, child, tid, 1000, 1000, comm, 0, ret, 1, AT_FDCWD,
                 f, flags, 0o644])
        if comm == b"curl":
            add([CONNECT, ts + 3000, child, child, 1000, 1000, comm, 0, 0, 10, 1, 6,
                 _sa_in(443, bytes([192, 0, 2, i % 250]))])
        if i % 100 == 3:
            add([CHDIR, ts + 3500, child, child, 1000, 1000, comm, 0, 0, -1, b"build"])
        code = (1 << 8) if i % 40 == 7 else 9 if i % 97 == 5 else 0
        add([EXIT, ts + 9000, child, child, 1000, 1000, comm, 0, code])
        if n >= n_events - 1:
            break
    # Trim to exactly n_events - 1, then the leader's exit.
    add([EXIT, ts + 20_000, 1000, 1000, 999, 1000, b"bash", 0, 0])
    w.close({
        "ended_at": "2026-11-21T11:00:30.000000Z",
        "counts": {},
        "lost": {},
        "truncated": {"argv": 0, "path": 0},
        "unknown_types": 0,
        "exit_status": 0,
        "end_reason": "cgroup-empty",
    })
    return procs


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one in-process `sessrec ARGV`, output discarded."""
    err = io.StringIO()
    with open(os.devnull, "w", encoding="utf-8") as out:  # a real file, as stdout would be
        t0, c0 = time.perf_counter(), time.process_time()
        status = main(argv, stdout=out, stderr=err)
        elapsed = time.perf_counter() - t0, time.process_time() - c0
    if status != 0:
        raise SystemExit(f"sessrec {' '.join(argv)} failed: {err.getvalue()}")
    return elapsed


def best(f: Callable[[], tuple[float, float]], runs: int) -> tuple[float, float]:
    """The fastest of runs (by wall time): the one least disturbed."""
    return min((f() for _ in range(runs)), key=lambda t: t[0])


def cold_info(path: str) -> tuple[float, float]:
    """`sessrec info` as a new process, interpreter start-up included."""
    t0 = time.perf_counter()
    r0 = os.times()
    subprocess.run([sys.executable, "-m", "sessrec", "info", path], check=True,
                   stdout=subprocess.DEVNULL)
    r1 = os.times()
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return time.perf_counter() - t0, cpu


def run(events: int, keep: str | None, runs: int) -> None:
    tmp = tempfile.mkdtemp(prefix="sessrec-bench-")
    path = keep or os.path.join(tmp, "bench.srec")
    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    procs = generate(path, events)
    gen = time.perf_counter() - t0
    size = os.path.getsize(path)
    rows: list[tuple[str, str, str, str]] = []

    def secs(t: tuple[float, float], unit: str = "s") -> str:
        if unit == "ms":
            return f"{t[0] * 1000:.1f} ms (CPU {t[1] * 1000:.1f} ms)"
        return f"{t[0]:.2f} s (CPU {t[1]:.2f} s)"

    def rate(t: tuple[float, float]) -> str:
        return f"{events / t[0]:,.0f} events/s"

    def measure(label: str, argv: list[str], n: int, target: str, unit: str = "s",
                what: str | None = None) -> None:
        t = best(lambda: timed(argv), n)
        rows.append((label, secs(t, unit), what or rate(t), target))

    measure("`export --format jsonl`", ["export", path, "--format", "jsonl"], runs,
            ">= 300,000 events/s")
    measure("`export --format teleport`", ["export", path, "--format", "teleport"], runs, "-")
    measure("`export --format ecs`", ["export", path, "--format", "ecs"], runs, "-")
    measure("`info`", ["info", path], max(runs, 3), "< 0.5 s", "ms", "footer + trailer")
    t = best(lambda: cold_info(path), max(runs, 3))
    rows.append(("`info`, as a new process", secs(t, "ms"), "with Python start-up", "-"))
    measure("`tree`", ["tree", path], runs, "< 5 s")
    measure("`replay` (every event)", ["replay", path], 1, "-")
    measure("`replay --type exit`", ["replay", path, "--type", "exit"], 1, "-")
    measure("`replay --pid 1000 --children --failed`",
            ["replay", path, "--pid", "1000", "--children", "--failed"], 1, "-")

    print(f"Session: {events:,} events, {procs:,} processes, {size / 1e6:.1f} MB "
          f"(generated in {gen:.1f} s). Python {platform.python_version()}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; read side {compiled.state}; best of {runs} runs, but "
          "one of each replay.\n")
    print("| measure | wall time (CPU time) | rate | target |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if not keep:
        os.unlink(path)
        os.rmdir(tmp)


# A child's program for --against: one command in process, under ROOT.
_CHILD = """
import io, os, sys, time
sys.path.insert(0, sys.argv[1])
from sessrec.cli import main
from replay import compiled
with open(os.devnull, "w", encoding="utf-8") as out:
    t0, c0 = time.perf_counter(), time.process_time()
    status = main(sys.argv[2:], stdout=out, stderr=io.StringIO())
    print(time.perf_counter() - t0, time.process_time() - c0, status)
print(compiled.state)
"""

COMMANDS: list[tuple[str, list[str]]] = [
    ("`export --format jsonl`", ["export", "{}", "--format", "jsonl"]),
    ("`export --format teleport`", ["export", "{}", "--format", "teleport"]),
    ("`export --format ecs`", ["export", "{}", "--format", "ecs"]),
    ("`info`", ["info", "{}"]),
    ("`tree`", ["tree", "{}"]),
    ("`replay` (every event)", ["replay", "{}"]),
    ("`replay --type exit`", ["replay", "{}", "--type", "exit"]),
    ("`replay --pid 1000 --children --failed`",
     ["replay", "{}", "--pid", "1000", "--children", "--failed"]),
]


def _child(root: str, argv: list[str], pure: bool = False) -> tuple[float, float, str]:
    """Wall and CPU time of sessrec ARGV in a new process of the checkout
    in root (its read side in Python, if pure), and how its read side ran."""
    env = {k: v for k, v in os.environ.items() if k != compiled.OFF}
    if pure:
        env[compiled.OFF] = "1"
    r = subprocess.run([sys.executable, "-c", _CHILD, root, *argv], check=True,
                       capture_output=True, text=True, env=env)
    times, state = r.stdout.split("\n", 1)
    wall, cpu, status = times.split()
    if status != "0":
        raise SystemExit(f"{root}: sessrec {' '.join(argv)} failed: {r.stderr}")
    return float(wall), float(cpu), state.strip()


def against(events: int, other: str, runs: int) -> None:
    """The table of --against and --against-python (see the module's
    docstring); other is "" for the latter."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="sessrec-bench-")
    path = os.path.join(tmp, "bench.srec")
    generate(path, events)
    pure = not other
    other = other or here
    states = {_child(other, ["info", path], pure)[2], _child(here, ["info", path])[2]}
    print(f"Session: {events:,} events. Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start; "
          f"medians of {runs} runs, before ({other}{', in Python' if pure else ''}) and after "
          f"({here}) in turn. Read sides: {'; '.join(sorted(states))}.\n")
    print("| command | before: CPU (wall) | after: CPU (wall) | after / before (CPU) |")
    print("| --- | --- | --- | --- |")
    for label, argv in COMMANDS:
        argv = [a.replace("{}", path) for a in argv]
        before: list[tuple[float, float]] = []
        after: list[tuple[float, float]] = []
        for _ in range(runs):
            before.append(_child(other, argv, pure)[:2])
            after.append(_child(here, argv)[:2])
        b_wall, b_cpu = (statistics.median(x) for x in zip(*before, strict=True))
        a_wall, a_cpu = (statistics.median(x) for x in zip(*after, strict=True))
        print(f"| {label} | {b_cpu:.3f} s ({b_wall:.2f} s) | {a_cpu:.3f} s ({a_wall:.2f} s) "
              f"| {a_cpu / b_cpu:.2f} |", flush=True)
    print(f"\nLoad average at the end: {os.getloadavg()[0]:.1f}.")
    os.unlink(path)
    os.rmdir(tmp)


def main_(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--keep", metavar="PATH", help="write the session here and keep it")
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--against", metavar="DIR",
                     help="compare with the checkout in DIR (medians of --runs runs)")
    how.add_argument("--against-python", action="store_true",
                     help="compare the compiled read side with its Python sources")
    args = ap.parse_args(argv)
    if args.against or args.against_python:
        against(args.events, os.path.abspath(args.against) if args.against else "", args.runs)
    else:
        run(args.events, args.keep, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
