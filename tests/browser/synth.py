"""Synthetic sessions in the real format, of any size, for the HTML report's
browser tests and bench/html_bench.py.

A shell (pid 1000) runs jobs: each job forks a child that execs a program,
opens files (a few fail), sometimes connects, sometimes forks a helper of its
own, and exits with a code or a signal. Written with SessionWriter, so the
reader sees what a recording would give it."""

from __future__ import annotations

import calendar
import os
import random
import struct
import time
from collections.abc import Iterator
from typing import Any

from recorder.writer import SessionWriter

FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6
WALL_NS = calendar.timegm((2026, 11, 21, 9, 30, 0, 0, 0, 0)) * 1_000_000_000

HEADER: dict[str, Any] = {
    "session_id": "5a6b7c8d-1e2f-4a3b-8c9d-0e1f2a3b4c5d",
    "hostname": "web-03",
    "kernel": "6.1.0-27-amd64",
    "user": "alice",
    "uid": 1000,
    "login_uid": 1000,
    "audit_session_id": 118,
    "command": ["/bin/bash", "-l"],
    "cwd": b"/home/alice",
    "leader_pid": 1000,
    "started_at": "2026-11-21T09:30:00.000000Z",
    "clock": {"wall_ns": WALL_NS, "mono_ns": 7_000_000_000_000},
    "cgroup": "/sessrec.slice/5a6b7c8d.scope",
    "cgroup_id": 5150,
    "recorder": {"version": "0.1.0", "pid": 990},
    "limits": {"argv_max": 32768, "path_max": 4096},
    "abi_version": 1,
}

PROGRAMS: list[tuple[bytes, list[bytes], list[bytes]]] = [
    (b"/usr/bin/git", [b"git", b"pull", b"--rebase"],
     [b"/home/alice/app/.git/HEAD", b"/home/alice/app/.git/config", b"/home/alice/.gitconfig"]),
    (b"/usr/bin/python3", [b"python3", b"manage.py", b"migrate"],
     [b"/home/alice/app/manage.py", b"/usr/lib/python3.11/os.py", b"/etc/ssl/openssl.cnf"]),
    (b"/usr/bin/sudo", [b"sudo", b"systemctl", b"restart", b"nginx"],
     [b"/etc/sudoers", b"/etc/shadow", b"/etc/pam.d/sudo"]),
    (b"/usr/bin/curl", [b"curl", b"-fsS", b"https://deploy.example.com/hook"],
     [b"/etc/resolv.conf", b"/etc/ssl/certs/ca-certificates.crt"]),
    (b"/usr/bin/cat", [b"cat", b"/var/log/nginx/error.log"], [b"/var/log/nginx/error.log"]),
    (b"/usr/bin/grep", [b"grep", b"-r", b"TODO", b"src/"],
     [b"/home/alice/app/src/main.py", b"/home/alice/app/src/util.py"]),
    (b"/usr/bin/ssh", [b"ssh", b"db-01", b"uptime"],
     [b"/home/alice/.ssh/config", b"/home/alice/.ssh/id_ed25519"]),
    (b"/usr/bin/ls", [b"ls", b"-la"], [b"/home/alice/app"]),
]
DESTS = [(bytes([10, 0, 0, 5]), 5432), (bytes([192, 0, 2, 80]), 443), (bytes([10, 0, 0, 9]), 22)]


def _sa_in(addr: bytes, port: int) -> bytes:
    return struct.pack("<H", 2) + struct.pack(">H", port) + addr + bytes(8)


def generate(path: str | os.PathLike[str], n_events: int, *, seed: int = 4,
             complete: bool = True, lost: int = 0,
             extra: list[tuple[int, list[Any]]] | None = None) -> dict[str, int]:
    """Write a session of about n_events events (at least n_events); return
    {"events": n, "processes": n}. extra: (type, body) of events the shell
    (pid 1000) has first."""
    rng = random.Random(seed)
    w = SessionWriter(path, HEADER, force=True)
    ts = 1_000
    n = 0
    procs = 1
    counts: dict[str, int] = {}
    names = {FORK: "fork", EXEC: "exec", EXIT: "exit", OPEN: "open", CONNECT: "connect",
             CHDIR: "chdir"}

    def add(t: int, pid: int, ppid: int, comm: bytes, body: list[Any]) -> None:
        nonlocal ts, n
        ts += rng.randint(5_000, 60_000)
        w.add([t, ts, pid, pid, ppid, 1000, comm, 0, *body])
        counts[names[t]] = counts.get(names[t], 0) + 1
        n += 1

    add(EXEC, 1000, 990, b"bash", [0, b"/bin/bash", [b"-bash"], 1, 1000, 0])
    for t, body in extra or []:
        add(t, 1000, 990, b"bash", body)
    next_pid = 1001
    # Up to six jobs run at once: their events interleave, as in a parallel build.
    jobs: list[Iterator[tuple[int, int, int, bytes, list[Any]]]] = []

    def job(pid: int) -> Iterator[tuple[int, int, int, bytes, list[Any]]]:
        nonlocal next_pid, procs
        exe, argv, files = PROGRAMS[rng.randrange(len(PROGRAMS))]
        comm = os.path.basename(exe)[:15]
        yield EXEC, pid, 1000, b"bash", [0, exe, argv, len(argv), pid, 0]
        for _ in range(rng.randint(2, 12)):
            f = files[rng.randrange(len(files))]
            ret = -2 if rng.random() < 0.04 else -13 if f == b"/etc/shadow" else rng.randint(3, 40)
            yield OPEN, pid, 1000, comm, [ret, 1, -100, f, 0o2000000, 0]
        if rng.random() < 0.25:
            addr, port = DESTS[rng.randrange(len(DESTS))]
            ret = -111 if rng.random() < 0.1 else -115 if rng.random() < 0.3 else 0
            yield CONNECT, pid, 1000, comm, [ret, 5, 1, 6, _sa_in(addr, port)]
        if rng.random() < 0.1:
            child = next_pid
            next_pid += 1
            procs += 1
            yield FORK, pid, 1000, comm, [child]
            yield EXEC, child, pid, comm, [0, b"/bin/sh", [b"sh", b"-c", b"id -u"], 3, child, 0]
            yield OPEN, child, pid, b"sh", [3, 1, -100, b"/etc/passwd", 0o2000000, 0]
            yield EXIT, child, pid, b"sh", [0]
        status = 0 if rng.random() < 0.9 else (1 << 8) if rng.random() < 0.7 else 9
        yield EXIT, pid, 1000, comm, [status]

    while n < n_events - 2 or jobs:
        if n < n_events - 2 and (not jobs or (len(jobs) < 6 and rng.random() < 0.2)):
            pid = next_pid
            next_pid += 1
            procs += 1
            add(FORK, 1000, 990, b"bash", [pid])
            jobs.append(job(pid))
            continue
        k = rng.randrange(len(jobs))
        try:
            add(*next(jobs[k]))
        except StopIteration:
            jobs.pop(k)
    if lost:
        w.add_stats({"ts": ts, "lost": {"open": lost}})
    add(EXIT, 1000, 990, b"bash", [0])
    ended = WALL_NS + ts + 1000
    sec, ns = divmod(ended, 1_000_000_000)
    ended_at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns // 1000:06d}Z"
    if complete:
        w.close({
            "ended_at": ended_at, "counts": counts, "lost": {"open": lost} if lost else {},
            "truncated": {"argv": 0, "path": 0}, "unknown_types": 0, "exit_status": 0,
            "end_reason": "cgroup-empty",
        })
    else:
        w.close(None)
    return {"events": n, "processes": procs}
