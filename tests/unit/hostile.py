"""Hostile session files, built by code (small on disk, large when read), and
a way to run the CLI on them under the bounds every read command must keep:
512 MiB of address space and a timeout that only catches hangs and
quadratic blow-ups (never a speed assertion)."""

from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import zstandard
from srec_util import HEADER, TRAILER

from sessrec import format as fmt
from sessrec import records

MEMORY_LIMIT = 512 << 20
ROOT = Path(__file__).resolve().parents[2]


# Every command that reads a session file, as the bounds and fuzzing tests
# run them ({tmp}: the test's directory), and the exit statuses of verify,
# which has its own: intact, damaged, truncated, unsealed (cli_verify).
READ_COMMANDS = (
    ["info"],
    ["info", "--json"],
    ["replay"],
    ["tree"],
    ["export", "--format", "jsonl"],
    ["export", "--format", "teleport"],
    ["export", "--format", "ecs"],
    ["html", "-o", "{tmp}/out.html"],
    ["verify"],
)
VERIFY_STATUSES = (0, 5, 6, 7, 8, 9)


def pack(*objs: Any) -> bytes:
    return b"".join(msgpack.packb(o, use_bin_type=True) for o in objs)


def chunk(kind: int, raw: bytes) -> bytes:
    """A descriptor and a zstd frame, compressed hard: hostile files are
    small on disk and large when decompressed."""
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(raw)
    return fmt.pack_descriptor(kind, len(frame), len(raw)) + frame


def header_map(**extra: Any) -> dict[str, Any]:
    return {"k": "header", "format": [2, 0], **HEADER, **extra}


def trailer_map(**extra: Any) -> dict[str, Any]:
    return {"k": "trailer", **TRAILER, **extra}


def session(body: Iterable[bytes] = (), *, header: bytes | None = None,
            trailer: bytes | None = None, complete: bool = True) -> bytes:
    """Preamble, header chunk, body chunks, then (complete) the trailer chunk
    and the footer that points to it. header/trailer: raw chunk content."""
    data = fmt.pack_preamble(2, 0)
    data += chunk(fmt.ChunkKind.HEADER, pack(header_map()) if header is None else header)
    data += b"".join(body)
    if complete:
        offset = len(data)
        data += chunk(fmt.ChunkKind.TRAILER, pack(trailer_map()) if trailer is None else trailer)
        data += fmt.pack_footer(offset)
    return data


def events(evs: Iterable[list[Any]], per_chunk: int = 1 << 20) -> list[bytes]:
    """EVENTS chunks of about per_chunk raw bytes holding evs."""
    out: list[bytes] = []
    buf = bytearray()
    packer = msgpack.Packer(use_bin_type=True)
    for e in evs:
        buf += packer.pack(e)
        if len(buf) >= per_chunk:
            out.append(chunk(fmt.ChunkKind.EVENTS, bytes(buf)))
            buf.clear()
    if buf:
        out.append(chunk(fmt.ChunkKind.EVENTS, bytes(buf)))
    return out


def ev(t: int, pid: int, body: list[Any], *, ppid: int = 1, ts: int = 1,
       tid: int | None = None) -> list[Any]:
    return [t, ts, pid, pid if tid is None else tid, ppid, 1000, b"x", 0, *body]


def fork(pid: int, child: int, ts: int = 1) -> list[Any]:
    return ev(1, pid, [child], ts=ts)


def exec_(pid: int, argv: list[bytes], ret: int = 0, ts: int = 1) -> list[Any]:
    return ev(2, pid, [ret, argv[0] if argv else b"", argv, len(argv), pid, 0], ts=ts)


# --- the crafted cases of issue 11 -----------------------------------------

ISSUE_BOMB = 64 << 20  # the issue's 64 MiB of empty msgpack arrays
# The most a header, events or trailer chunk may hold: the worst case that
# is read rather than refused.
LARGEST = fmt.MAX_MSGPACK_RAW_LEN - 4096


def nested_empties(n: int, empty: bytes = b"\x80") -> bytes:
    """About n bytes that unpack into about n empty maps (the costliest
    object per byte) inside one array of arrays, each within the
    unpacker's per-array limit."""
    inner = (1 << 16) - 1
    outer = max(1, n // (inner + 3))
    one = b"\xdc" + inner.to_bytes(2, "big") + empty * inner  # an array16 of empties
    return b"\xdd" + outer.to_bytes(4, "big") + one * outer


def header_bomb(n: int = LARGEST) -> bytes:
    """A header chunk of the header map followed by n bytes of empty arrays."""
    return session(header=pack(header_map()) + b"\x90" * n)


def header_key_bomb(n: int = LARGEST) -> bytes:
    """A header map with an extra key holding about n empty maps."""
    h = header_map()
    head = b"\xde" + (len(h) + 1).to_bytes(2, "big")  # a map16 with one key more
    body = b"".join(pack(k, v) for k, v in h.items())
    return session(header=head + body + pack("x") + nested_empties(n - len(body) - 16))


def trailer_bomb(n: int = LARGEST) -> bytes:
    return session(trailer=pack(trailer_map()) + b"\x90" * n)


def events_bomb(n: int = LARGEST) -> bytes:
    """One event whose appended (unknown) field holds about n empty maps."""
    e = fork(1000, 1001)
    raw = bytes([0x90 + len(e) + 1]) + pack(*e) + nested_empties(n - 64)
    return session([chunk(fmt.ChunkKind.EVENTS, raw)])


def forks_of_one_child(n: int = 2_000_000) -> bytes:
    """One process forking the same child pid again and again (never exited)."""
    return session(events(fork(1000, 1001) for _ in range(n)))


def big_execs(n: int = 20_000) -> bytes:
    """Execs of 32 KiB argv each, in one process."""
    argv = [b"a" * 1000] * 32
    return session(events(exec_(1000, argv) for _ in range(n)))


def deep_chain(depth: int = 20_000) -> bytes:
    """Each process forks the next: a chain depth processes deep."""
    return session(events(fork(1000 + i, 1001 + i) for i in range(depth)))


def failed_execs(n: int = 50_000) -> bytes:
    """A process with n failed execs, then n forks: every fork asks what
    the parent runs."""
    evs = [exec_(1000, [b"/bin/sh"])]
    evs += [exec_(1000, [b"/nonexistent"], ret=-2) for _ in range(n)]
    evs += [fork(1000, 2000 + i) for i in range(n)]
    return session(events(evs))


def leaderless(n: int = 50_000) -> bytes:
    """n processes forked, then exited, by a process that is not the
    header's leader, who never shows: the ECS export looked for the leader
    among every process at each document (26 s for 20,000)."""
    evs: list[list[Any]] = []
    for i in range(n):
        evs += [fork(7, 5000 + i), ev(3, 5000 + i, [0], ppid=7)]
    return session(events(evs))


def long_paths(n: int = 750, size: int = 400_000) -> bytes:
    """Opens of n distinct absolute paths of size bytes each (a path may be
    1 MiB in a file, though not from a kernel): every cache
    keyed by a path or its text misses, and a cache bounded by its count
    alone held gigabytes (ECS, html)."""
    return session(events(
        ev(4, 1000, [3, 1, -100, b"/" + b"a" * (size - 12) + b"%011d" % i, 0, 0o644])
        for i in range(n)))


def many_descriptors(n: int = 1500, size: int = 400_000) -> bytes:
    """One process opening n distinct long paths on n distinct descriptors,
    none closed: the path resolver kept every one."""
    return session(events(
        ev(4, 1000, [3 + i, 1, -100, b"/" + b"b" * (size - 12) + b"%011d" % i, 0, 0o644])
        for i in range(n)))


def long_cwds(n: int = 1500, size: int = 400_000) -> bytes:
    """n live processes, each in its own long working directory."""
    def evs() -> Iterable[list[Any]]:
        for i in range(n):
            yield fork(1000, 2000 + i)
            yield ev(6, 2000 + i, [0, -1, b"/" + b"d" * (size - 12) + b"%011d" % i], ppid=1000)
    return session(events(evs()))


def distinct_argv(n: int = 400, size: int = 1_000_000) -> bytes:
    """Execs of n distinct argv of size bytes each: every cache of an
    argv's text misses (teleport's kept 800 MB)."""
    return session(events(exec_(1000, [b"a" * size + b"%08d" % i]) for i in range(n)))


def long_command(n: int = 600, size: int = 1_000_000) -> bytes:
    """A recorded command of size characters (the header may hold 64 MiB),
    and n live children of the leader, each in its own directory: each ECS
    document carried the command twice, and each child's cached process.*
    a copy, uncounted."""
    def evs() -> Iterable[list[Any]]:
        yield ev(6, 1000, [0, -1, b"/tmp"])
        for i in range(n):
            yield fork(1000, 2000 + i)
            yield ev(6, 2000 + i, [0, -1, b"/d%d" % i], ppid=1000)
            yield ev(4, 2000 + i, [3, 1, -100, b"f", 0, 0o644], ppid=1000)
    return session(events(evs()), header=pack(header_map(command=["x" * size, "y"])))


def record(t: int, body: bytes, pid: int = 1000, ts: int | None = None) -> bytes:
    """A framed ring record: bpf/sessrec.h's header, then body."""
    mono = HEADER["clock"]["mono_ns"]
    hdr = struct.pack(records.HEADER.fmt, t, 0, 0, mono + 5 if ts is None else ts, 9876,
                      pid, pid, 1, 0, b"sh")
    rec = hdr + body
    return fmt.RECORD_FRAME.pack(len(rec), 0) + rec


def records_chunks(recs: Iterable[bytes], per_chunk: int = fmt.MAX_RAW_LEN - 4096
                   ) -> list[bytes]:
    out: list[bytes] = []
    buf = bytearray()
    for r in recs:
        if len(buf) + len(r) > per_chunk:
            out.append(chunk(fmt.ChunkKind.RECORDS, bytes(buf)))
            buf.clear()
        buf += r
    if buf:
        out.append(chunk(fmt.ChunkKind.RECORDS, bytes(buf)))
    return out


def nul_argv_execs(n: int = 2000, complete: bool = True) -> bytes:
    """Exec records of 32 KiB of NULs: 32,768 empty arguments each, filling
    the largest RECORDS chunk (a list item per byte once decoded)."""
    argv = bytes(records.ARGV_MAX)
    # ret, argc, filename_len, argv_len, old_pid, syscall, pad; then ABI 2's
    # kernel path (none) and argv_total, argv_parts
    body = struct.pack(records.BODIES[records.EXEC].fmt, 0, len(argv), 0, len(argv), 1000, 0, 0,
                       0, 0, 0, 0, len(argv), 0)
    rec = record(records.EXEC, body + argv)
    return session(records_chunks(rec for _ in range(n)), complete=complete)


def fork_records(n: int = 1_200_000, complete: bool = True) -> bytes:
    """The smallest records, filling the largest RECORDS chunk."""
    body = struct.pack(records.BODIES[records.FORK].fmt, 1001, 0)
    return session(records_chunks(record(records.FORK, body) for _ in range(n)),
                   complete=complete)


CASES = {
    "nul_argv_execs": nul_argv_execs,
    "fork_records": fork_records,
    "header_bomb_64m": lambda: header_bomb(ISSUE_BOMB),
    "header_key_bomb_64m": lambda: header_key_bomb(ISSUE_BOMB),
    "trailer_bomb_64m": lambda: trailer_bomb(ISSUE_BOMB),
    "header_bomb": header_bomb,
    "header_key_bomb": header_key_bomb,
    "trailer_bomb": trailer_bomb,
    "events_bomb": events_bomb,
    "forks_of_one_child": forks_of_one_child,
    "big_execs": big_execs,
    "deep_chain": deep_chain,
    "failed_execs": failed_execs,
}

# --- running the CLI under the bounds ----------------------------------------


@dataclass
class Run:
    argv: Sequence[str]
    status: int
    stdout_bytes: int
    stderr: str


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_bounded(argv: Sequence[str], *, timeout: float = 120, cwd: Path | None = None) -> Run:
    """`sessrec argv` in a child process under MEMORY_LIMIT of address space;
    stdout is counted, not kept. A hang is a TimeoutExpired."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessrec", *argv], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, preexec_fn=_limit, env=env, cwd=cwd,
    )
    assert proc.stdout is not None and proc.stderr is not None
    n = 0
    try:
        import selectors
        import time

        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        sel.register(proc.stderr, selectors.EVENT_READ)
        err = bytearray()
        open_ = 2
        while open_:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(list(argv), timeout)
            for key, _ in sel.select(left):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                    open_ -= 1
                elif key.fileobj is proc.stdout:
                    n += len(data)
                else:
                    err += data[: max(0, 65536 - len(err))]
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return Run(argv, status, n, err.decode("utf-8", "replace"))
