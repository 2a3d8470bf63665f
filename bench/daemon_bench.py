#!/usr/bin/env python3
"""The daemon's benchmarks (issue 8), results in docs/PERFORMANCE.md:

1. session start latency through the control socket, p50/p99/max, for
   --sessions sessions started one after another (each for a `sleep`);
2. the daemon's resident memory and locked (BPF) memory with 0 and with
   --sessions idle sessions, and its CPU over --idle-seconds with them;
3. --active sessions at once, one of them flooding (an open storm as fast as
   it goes) and the others paced: events per second recorded, and what each
   lost (target: the paced sessions lose nothing).

    sudo bench/daemon_bench.py [--sessions 1000] [--active 20] [--out bench/out/daemon.json]

Run it under `flock /tmp/sessrec-suite.lock` on a shared machine; quote the
numbers as measured under that load."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_PYTHON = REPO / ".venv" / "bin" / "python"
if VENV_PYTHON.exists() and Path(sys.prefix).resolve() != VENV_PYTHON.parent.parent.resolve():
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), str(Path(__file__).resolve()), *sys.argv[1:]])
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from benchlib.common import build, proc_cpu_ns  # noqa: E402

from replay.reader import open_session  # noqa: E402
from sessrec import control  # noqa: E402
from sessrec.event import Open  # noqa: E402


class Daemon:
    def __init__(self, tmp: Path, ring: str, extra: str = "") -> None:
        self.sock = str(tmp / "run" / "control.sock")
        self.out = tmp / "out"
        self.root = f"sessrec-bench-{os.getpid()}"
        cfg = tmp / "sessrec.toml"
        cfg.write_text(f'output_dir = "{self.out}"\ncontrol_socket = "{self.sock}"\n'
                       f'cgroup_root = "{self.root}"\nring_size = "{ring}"\n{extra}')
        self.log = open(tmp / "daemon.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessrec", "daemon", "--config", str(cfg)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 120
        while not control.running(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon did not start: "
                                 + (tmp / "daemon.log").read_text()[-2000:])
            time.sleep(0.2)

    def request(self, op: str, **f: Any) -> dict[str, Any]:
        return control.request(op, socket_path=self.sock, timeout=120.0, **f)

    def rss_kib(self, field: str = "RssAnon") -> int:
        """RssAnon: the daemon's own memory. (VmRSS also counts every
        session ring, mapped twice: kernel memory, in bpf_memlock_kib.)"""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def bpf_memlock_kib(self) -> int:
        """What the kernel charges for the daemon's BPF maps and programs
        (the "memlock" of each one's fdinfo, once per map or program: Python's
        mmap keeps a dup of each ring's descriptor)."""
        seen: dict[str, int] = {}
        for fd in Path(f"/proc/{self.proc.pid}/fdinfo").iterdir():
            try:
                fields = dict(line.split(":", 1) for line in fd.read_text().splitlines()
                              if ":" in line)
            except OSError:
                continue
            ident = fields.get("map_id") or fields.get("prog_id")
            if ident is not None and "memlock" in fields:
                seen[ident.strip()] = int(fields["memlock"])
        return sum(seen.values()) // 1024

    def wait_idle(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.request("status")["sessions_active"]:
            if time.monotonic() > deadline:
                raise SystemExit("sessions did not end")
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def cpu_share(d: Daemon, seconds: float) -> float:
    c0, t0 = proc_cpu_ns(d.proc.pid), time.monotonic()
    time.sleep(seconds)
    return (proc_cpu_ns(d.proc.pid) - c0) / 1e9 / (time.monotonic() - t0)


def gated(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "sh", *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)


def go(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None
    p.stdin.write(b"go\n")
    p.stdin.close()


def bench_sessions(d: Daemon, n: int, idle_s: float) -> dict[str, Any]:
    res: dict[str, Any] = {"sessions": n, "rss_kib_0": d.rss_kib(),
                           "vmrss_kib_0": d.rss_kib("VmRSS"),
                           "bpf_memlock_kib_0": d.bpf_memlock_kib(),
                           "idle_cpu_0": cpu_share(d, idle_s)}
    procs = [subprocess.Popen(["/bin/sleep", "3600"]) for _ in range(n)]
    lat = []
    try:
        for p in procs:
            t = time.perf_counter()
            d.request("start", pid=p.pid, kind="logind")
            lat.append(time.perf_counter() - t)
        res.update(start_ms_p50=statistics.median(lat) * 1e3, start_ms_p99=pct(lat, 99) * 1e3,
                   start_ms_max=max(lat) * 1e3, rss_kib_n=d.rss_kib(),
                   vmrss_kib_n=d.rss_kib("VmRSS"),
                   bpf_memlock_kib_n=d.bpf_memlock_kib(), idle_cpu_n=cpu_share(d, idle_s))
        t = time.monotonic()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        d.wait_idle()
        res["end_all_s"] = time.monotonic() - t
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return res


def bench_active(d: Daemon, active: int, paced_n: int, paced_rate: int,
                 flood_n: int) -> dict[str, Any]:
    storm = str(build("open_storm"))
    target = "/etc/hostname"
    procs, sessions = [], []
    for i in range(active):
        flood = i == 0
        argv = [storm, str(flood_n if flood else paced_n), target,
                "0" if flood else str(paced_rate)]
        p = gated(argv)
        r = d.request("start", pid=p.pid, kind="logind", login={"user": f"bench{i}"})
        procs.append(p)
        sessions.append(r)
    t = time.monotonic()
    c0 = proc_cpu_ns(d.proc.pid)
    for p in procs:
        go(p)
    for p in procs:
        p.wait()
    wall = time.monotonic() - t
    cpu = (proc_cpu_ns(d.proc.pid) - c0) / 1e9
    d.wait_idle()
    out: list[dict[str, Any]] = []
    for i, r in enumerate(sessions):
        with open_session(r["file"]) as s:
            opens = sum(1 for e in s.records()
                        if isinstance(e, Open) and e.requested_path == target.encode())
            trailer = s.trailer or {}
        out.append({"flood": i == 0, "opens_recorded": opens,
                    "opens_true": flood_n if i == 0 else paced_n,
                    "lost": sum(trailer.get("lost", {}).values()),
                    "events": sum(trailer.get("counts", {}).values())})
    paced = out[1:]
    return {
        "active": active, "wall_s": wall, "daemon_cpu_s": cpu,
        "events_per_s": sum(o["events"] for o in out) / wall,
        "flood": out[0],
        "paced_lost": sum(o["lost"] for o in paced),
        "paced_missing": sum(o["opens_true"] - o["opens_recorded"] for o in paced),
        "paced_sessions": len(paced),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--active", type=int, default=20)
    ap.add_argument("--paced", type=int, default=20000, help="opens per paced session")
    ap.add_argument("--paced-rate", type=int, default=4000, help="opens/s per paced session")
    ap.add_argument("--flood", type=int, default=2_000_000, help="opens of the flooding one")
    ap.add_argument("--ring", default="1MiB", help="each session's ring (config ring_size)")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "daemon.json")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/daemon_bench.py needs root (sudo)")
    with tempfile.TemporaryDirectory(prefix="sessrec-dbench-") as tmp:
        d = Daemon(Path(tmp), a.ring)
        try:
            res: dict[str, Any] = {"ring": a.ring, "cpus": os.cpu_count()}
            res["idle"] = bench_sessions(d, a.sessions, a.idle_seconds)
            res["active"] = bench_active(d, a.active, a.paced, a.paced_rate, a.flood)
        finally:
            d.stop()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
