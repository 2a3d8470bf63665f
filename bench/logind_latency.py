"""How long the logind watcher (recorder/logind.py) takes to hear of a new
session scope: the part of a login that `enrolment = "logind"` can miss is
what the login runs in that time (plus the daemon's registration).

Makes user.slice/user-0.slice/session-N.scope directories under a private
top cgroup on the real cgroup2 hierarchy, each with a process moved in at
once (as systemd does), and times mkdir -> the watcher's report, waiting
on the inotify descriptor as a daemon's event loop would. Root.

    sudo .venv/bin/python bench/logind_latency.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import secrets
import select
import statistics
import subprocess
import sys
import time

from recorder.cgroup import cgroup2_mount
from recorder.logind import ScopeWatcher


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    top = cgroup2_mount().path / f"sessrec-logind-bench-{secrets.token_hex(3)}"
    root = top / "user.slice"
    slice_ = root / "user-0.slice"
    slice_.mkdir(parents=True)
    w = ScopeWatcher(root)
    lat: list[float] = []
    sleeper = subprocess.Popen(["sleep", "600"])
    try:
        for i in range(args.rounds):
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
        for d in sorted(top.rglob("*"), key=lambda p: -len(p.parts)):
            if d.is_dir():
                os.rmdir(d)
        top.rmdir()
    lat.sort()
    us = [x * 1e6 for x in lat]
    print(f"rounds {len(us)}: mkdir + move -> watcher report: p50 {statistics.median(us):.0f} us, "
          f"p99 {us[int(len(us) * 0.99) - 1]:.0f} us, max {us[-1]:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
