"""What `enrolment = "logind"` misses of a login: the part before the
daemon has adopted its scope (recorder/enrol_logind.py). Two measures:

1. the watcher (recorder/logind.py) alone: a scope made and a process moved
   into it, as systemd does, timed until the watcher reports it, waiting on
   its descriptor as the daemon's loop would;
2. the daemon (--daemon-rounds): a real `sessrec daemon` with
   enrolment = "logind"; each round a login shell is moved into a new scope
   and goes on at once, running `/bin/true N` for N = 0, 1, 2, ... in a
   loop (a fork and an exec each). The first N recorded is the number of
   execs missed; the time from the move to its first recorded event is the
   window; execs in the window's last part are counted as lost in the file
   (their process was adopted, the session's ring not yet registered).

Scopes are made under a private top cgroup on the real cgroup2 hierarchy,
never in a real logind tree. Root; run it under `flock
/tmp/sessrec-suite.lock` on a shared machine.

    sudo .venv/bin/python bench/logind_latency.py [--rounds 200] [--daemon-rounds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import select
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon_bench import Daemon

from recorder.cgroup import cgroup2_mount
from recorder.logind import ScopeWatcher
from replay.reader import open_session, read_trailer_fast
from sessrec.event import Exec

# The login: waits until it is in its scope, then execs /bin/true N in a loop.
LOGIN = 'read _; i=0; while [ $i -lt {n} ]; do /bin/true $i; i=$((i+1)); done'


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200, help="watcher rounds")
    ap.add_argument("--daemon-rounds", type=int, default=20,
                    help="daemon rounds (0: the watcher alone)")
    ap.add_argument("--execs", type=int, default=2000, help="execs per daemon round")
    args = ap.parse_args()
    top = cgroup2_mount().path / f"sessrec-logind-bench-{secrets.token_hex(3)}"
    slice_ = top / "user.slice" / "user-0.slice"
    slice_.mkdir(parents=True)
    try:
        watcher(top, slice_, args.rounds)
        if args.daemon_rounds:
            daemon(top, slice_, args.daemon_rounds, args.execs)
    finally:
        for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                os.rmdir(d)
        top.rmdir()
    return 0


def watcher(top: Path, slice_: Path, rounds: int) -> None:
    w = ScopeWatcher(slice_.parent)
    lat: list[float] = []
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        for i in range(rounds):
            scope = slice_ / f"session-{i + 1}.scope"
            t0 = time.perf_counter()
            scope.mkdir()
            (scope / "cgroup.procs").write_text(str(sleeper.pid))
            while True:
                select.select([w], [], [], 1.0)
                new, _ = w.read()
                if any(s.path == scope for s in new):
                    break
            lat.append(time.perf_counter() - t0)
            (top / "cgroup.procs").write_text(str(sleeper.pid))
            scope.rmdir()
            w.read()
    finally:
        sleeper.kill()
        sleeper.wait()
        w.close()
    lat.sort()
    us = [x * 1e6 for x in lat]
    print(f"watcher, {len(us)} rounds: mkdir + move -> watcher report: p50 "
          f"{statistics.median(us):.0f} us, p99 {us[int(len(us) * 0.99) - 1]:.0f} us, "
          f"max {us[-1]:.0f} us")


def daemon(top: Path, slice_: Path, rounds: int, execs: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="sessrec-logind-bench-"))
    root = slice_.parent.relative_to(cgroup2_mount().path)
    d = Daemon(tmp, "8MiB", f'enrolment = "logind"\nlogind_root = "{root}"\n')
    moved: dict[str, int] = {}
    try:
        for i in range(rounds):
            scope = slice_ / f"session-{1000 + i}.scope"
            p = subprocess.Popen(["/bin/sh", "-c", LOGIN.format(n=execs)],
                                 stdin=subprocess.PIPE)
            assert p.stdin is not None
            scope.mkdir()
            moved[str(scope)] = time.time_ns()
            (scope / "cgroup.procs").write_text(str(p.pid))      # systemd's move
            p.stdin.write(b"go\n")                               # the login goes on at once
            p.stdin.close()
            p.wait()
            d.wait_idle(60)
            for _ in range(300):
                try:
                    scope.rmdir()
                    break
                except OSError:
                    time.sleep(0.01)
            time.sleep(0.2)
    finally:
        d.stop()
    # The daemon's log: when it had adopted each scope (its registration
    # done), and how long adopting the processes and all of it took.
    adopted: dict[str, float] = {}
    steps: list[tuple[float, float]] = []
    for line in (tmp / "daemon.log").read_text().splitlines():
        m = ADOPTED.match(line)
        if m:
            at = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            adopted[m.group(2)] = at * 1e9
            steps.append((float(m.group(3)) * 1e3, float(m.group(4)) * 1e3))
    missed: list[float] = []
    counted: list[float] = []
    window: list[float] = []
    for f in sorted(d.out.glob("*.srec")):
        with open_session(str(f), strict=False) as s:
            scope_path = s.header["cgroup"]
            first_n: int | None = None
            for ev in s.records():
                if isinstance(ev, Exec) and ev.ret == 0 and len(ev.argv) == 2:
                    first_n = int(ev.argv[1])
                    break
        if first_n is not None and scope_path in moved and scope_path in adopted:
            missed.append(first_n)
            window.append((adopted[scope_path] - moved[scope_path]) / 1e6)
            counted.append((read_trailer_fast(f) or {}).get("lost", {}).get("exec", 0))
    never = rounds - len(missed)
    print(f"daemon, {rounds} rounds ({execs} execs each, {never} never adopted):\n"
          f"  move -> scope adopted: {spread(window)} ms\n"
          f"  of which adopting its processes: {spread([a for a, _ in steps])} ms, "
          f"all of the adoption: {spread([b for _, b in steps])} ms\n"
          f"  execs not in the file: {spread(missed)}; "
          f"of them counted as lost in it: {spread(counted)}")


def spread(xs: list[float]) -> str:
    v = sorted(xs)
    return f"p50 {statistics.median(v):.1f}, max {v[-1]:.1f}" if v else "none"


ADOPTED = re.compile(
    r"^(\S+) info scope-adopted .*scope=(\S+) .*processes_s=(\S+) seconds=(\S+)")

if __name__ == "__main__":
    sys.exit(main())
