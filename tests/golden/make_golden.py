"""Write the synthetic golden session file v1.0-synthetic.srec and its
expected outputs (.jsonl, .info.json), deterministically.

Committed goldens are kept forever and never regenerated: this script refuses
to overwrite an existing file. It exists to show how the file was made, and so
that tests can check the committed file still decodes to exactly RECORDS.

    python tests/golden/make_golden.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import calendar
import io
import json
import os
import struct
import sys
from typing import Any

from recorder.writer import SessionWriter
from replay.info import session_info
from replay.jsonl import write_jsonl
from replay.reader import open_session
from sessrec import format as fmt

NAME = "v1.0-synthetic"
HERE = os.path.dirname(os.path.abspath(__file__))

WALL_NS = calendar.timegm((2026, 11, 21, 11, 10, 2, 0, 0, 0)) * 1_000_000_000
MONO_NS = 5_000_000_000_000

HEADER: dict[str, Any] = {
    "session_id": "6f1c2a9e-3b4d-4e5f-8a7b-0c1d2e3f4a5b",
    "hostname": "build-07",
    "kernel": "6.8.0-45-generic",
    "user": "alice",
    "uid": 1000,
    "login_uid": 1000,
    "audit_session_id": 42,
    "command": ["/bin/bash", "-l"],
    "cwd": b"/home/alice",
    "leader_pid": 1000,
    "started_at": "2026-11-21T11:10:02.000000Z",
    "clock": {"wall_ns": WALL_NS, "mono_ns": MONO_NS},
    "cgroup": "/sessrec.slice/6f1c2a9e.scope",
    "cgroup_id": 9876,
    "recorder": {"version": "0.1.0", "pid": 999},
    "limits": {"argv_max": 32768, "path_max": 4096},
    "abi_version": 1,
}

O_RDONLY, O_WRONLY = 0, 1
O_CREAT, O_TRUNC, O_DIRECTORY, O_CLOEXEC, O_PATH = 0o100, 0o1000, 0o200000, 0o2000000, 0o10000000
AT_FDCWD = -100
FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6
PATH_TRUNC, ARGV_TRUNC = 1, 2


def _sockaddr_unix(path: bytes) -> bytes:
    return struct.pack("<H", 1) + path


def _sockaddr_in(port: int, addr: bytes) -> bytes:
    return struct.pack("<H", 2) + struct.pack(">H", port) + addr + bytes(8)


def _sockaddr_in6(port: int, addr: bytes, scope: int = 0) -> bytes:
    return (
        struct.pack("<H", 10) + struct.pack(">H", port) + bytes(4) + addr + struct.pack("<I", scope)
    )


def _ev(
    t: int,
    ms: float,
    pid: int,
    comm: bytes,
    body: list[Any],
    *,
    tid: int = 0,
    ppid: int = 0,
    uid: int = 1000,
    flags: int = 0,
) -> list[Any]:
    ppid = ppid or {1000: 999, 1001: 1000, 1002: 1000}.get(pid, 1)
    return [t, int(ms * 1_000_000) + 123, pid, tid or pid, ppid, uid, comm, flags, *body]


# The records in file order; "flush" ends an events chunk.
RECORDS: list[Any] = [
    # The leader execs bash; opens relative (with ..), a directory with O_PATH,
    # a file relative to that directory fd; a failed creat.
    _ev(EXEC, 1, 1000, b"bash", [0, b"/bin/bash", [b"-bash"], 1, 1000, 0]),
    _ev(OPEN, 2, 1000, b"bash", [3, 1, AT_FDCWD, b"notes/../todo.txt", O_RDONLY | O_CLOEXEC, 0]),
    _ev(
        OPEN, 3, 1000, b"bash", [4, 1, AT_FDCWD, b"/usr//bin/", O_RDONLY | O_DIRECTORY | O_PATH, 0]
    ),
    _ev(OPEN, 4, 1000, b"bash", [5, 1, 4, b"../share/dict/words", O_RDONLY, 0]),
    _ev(
        OPEN, 5, 1000, b"bash", [-13, 3, AT_FDCWD, b"/root/x", O_WRONLY | O_CREAT | O_TRUNC, 0o644]
    ),
    # chdir relative, then fchdir to the O_PATH fd, then chdir ..
    _ev(CHDIR, 6, 1000, b"bash", [0, -1, b"projects/./sessrec"]),
    _ev(CHDIR, 7, 1000, b"bash", [0, 4, b""]),
    _ev(CHDIR, 8, 1000, b"bash", [-2, -1, b"nonexistent"]),
    {"k": "stats", "ts": 8_500_000, "lost": {"open": 2}},
    "flush",
    # A child: fork, a failed execveat (dirfd not recorded), a successful
    # execveat of /usr/bin/env through fd 4, with a truncated argv holding
    # a newline, escapes and non-UTF-8 bytes; fd 3 (O_CLOEXEC) is gone after.
    _ev(FORK, 10, 1000, b"bash", [1001]),
    _ev(EXEC, 11, 1001, b"bash", [-2, b"nosuch", [b"nosuch"], 1, 1001, 1]),
    _ev(
        EXEC,
        12,
        1001,
        b"bash",
        [
            0,
            b"/dev/fd/4/env",
            [b"env", b"A=1\nB=2", b'quote"back\\slash\ttab', b"\xff\xfe caf\xc3\xa9"],
            6,
            1001,
            0,
        ],
        flags=ARGV_TRUNC,
    ),
    _ev(OPEN, 13, 1001, b"env", [3, 1, 3, b"stale", O_RDONLY, 0]),
    _ev(OPEN, 14, 1001, b"env", [6, 2, 4, b"python3", O_RDONLY, 0]),
    _ev(
        OPEN,
        15,
        1001,
        b"env",
        [-36, 0, AT_FDCWD, b"/tmp/" + b"a" * 40, O_RDONLY, 0],
        flags=PATH_TRUNC,
    ),
    # connects: unix abstract, unix path, inet6 (in progress), inet udp.
    _ev(CONNECT, 16, 1001, b"env", [0, 7, 1, 0, _sockaddr_unix(b"\0dbus-6f1c")]),
    _ev(
        CONNECT,
        17,
        1001,
        b"env",
        [0, 8, 2, 0, _sockaddr_unix(b"/run/systemd/journal/socket\0")],
    ),
    _ev(
        CONNECT,
        18,
        1001,
        b"env",
        [-115, 9, 1, 6, _sockaddr_in6(443, bytes.fromhex("20010db8000000000000000000000001"))],
    ),
    _ev(
        CONNECT,
        19,
        1001,
        b"env",
        [0, 10, 2, 17, _sockaddr_in(53, bytes([192, 0, 2, 53]))],
    ),
    # The child is killed by SIGKILL; another child dumps core on SIGSEGV.
    _ev(EXIT, 20, 1001, b"env", [9]),
    _ev(FORK, 21, 1000, b"bash", [1002]),
    _ev(EXEC, 22, 1002, b"bash", [0, b"./a.out", [b"./a.out"], 1, 1002, 0]),
    _ev(EXIT, 23, 1002, b"we\xffird", [0x80 | 11]),
    # A process the resolver never saw: relative paths are unknown.
    _ev(
        OPEN,
        24,
        2000,
        b"daemon",
        [3, 1, AT_FDCWD, b"relative.log", O_WRONLY | O_CREAT, 0o600],
    ),
    # The leader exits with status 3.
    _ev(EXIT, 25, 1000, b"bash", [3 << 8]),
]

TRAILER: dict[str, Any] = {
    "ended_at": "2026-11-21T11:10:02.025123Z",
    "counts": {"fork": 2, "exec": 4, "exit": 3, "open": 8, "connect": 4, "chdir": 3},
    "lost": {"open": 2},
    "truncated": {"argv": 1, "path": 1},
    "unknown_types": 0,
    "exit_status": 3,
    "end_reason": "cgroup-empty",
}


def events() -> list[list[Any]]:
    """The event arrays a reader must give back."""
    return [r for r in RECORDS if isinstance(r, list)]


def write(path: str, header: dict[str, Any] = HEADER,
          trailer: dict[str, Any] = TRAILER) -> None:
    """RECORDS into path, between header and trailer."""
    if os.path.exists(path):
        raise SystemExit(f"{path} exists; goldens are never regenerated")
    w = SessionWriter(path, header)
    for r in RECORDS:
        if r == "flush":
            w.flush()
        elif isinstance(r, dict):
            w.add_stats({k: v for k, v in r.items() if k != "k"})
        else:
            w.add(r)
    w.close(trailer)


def write_expected(srec: str, jsonl: str | None, info_json: str) -> None:
    """The expected `export --format jsonl` (unless jsonl is None) and
    `info --json` of a golden file just written; prints the three paths."""
    if jsonl is not None:
        out = io.StringIO()
        with open_session(srec) as session:
            write_jsonl(session, out)
        with open(jsonl, "w", encoding="utf-8") as f:
            f.write(out.getvalue())
    with open(info_json, "w", encoding="utf-8") as f:
        json.dump(session_info(srec), f, indent=2, ensure_ascii=False)
        f.write("\n")
    for p in (srec, jsonl, info_json):
        if p is not None:
            print(p)


def new_outputs(argv: list[str] | None, doc: str, name: str,
                suffixes: tuple[str, ...] = (".srec", ".jsonl", ".info.json")) -> list[str] | None:
    """The paths a golden script writes (--out-dir, by default here), or None
    after saying so if one exists: goldens are never regenerated."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out-dir", default=HERE)
    base = os.path.join(ap.parse_args(argv).out_dir, name)
    outputs = [base + s for s in suffixes]
    for p in outputs:
        if os.path.exists(p):
            print(f"{p} exists; goldens are never regenerated", file=sys.stderr)
            return None
    return outputs


def main(argv: list[str] | None = None) -> int:
    outputs = new_outputs(argv, __doc__, NAME)
    if outputs is None:
        return 1
    # Its HEADER, RECORDS and TRAILER stay in use (tests/unit/srec_util.py).
    assert (fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR) == (1, 0), "this writer no longer writes 1.0"
    write(outputs[0])
    write_expected(*outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
