"""Write the golden session file of format 2.0, v2.0-records.srec, and its
expected `sessrec info --json` and jsonl outputs: the 106 ring records of a
real recording (raw-abi1.bin, captured on a real kernel by capture_raw.py) in
two RECORDS chunks, with a stats map between them, as the recorder writes
them since 2.0; the header and trailer describe that recording.

Like every golden it is kept forever and never regenerated: this script
refuses to overwrite it.

    python tests/golden/make_golden_v2_0.py [--out-dir DIR]
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden

from recorder.writer import SessionWriter
from sessrec import format as fmt
from sessrec import records
from sessrec.event import TYPE_NAMES

NAME = "v2.0-records"
CAPTURE = os.path.join(make_golden.HERE, "raw-abi1")


def capture() -> tuple[list[bytes], int]:
    """The captured records and the monotonic origin they were decoded with."""
    with open(CAPTURE + ".bin", "rb") as f:
        data = f.read()
    out: list[bytes] = []
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    with open(CAPTURE + ".json", encoding="utf-8") as f:
        origin: int = json.load(f)["mono_origin_ns"]
    return out, origin


def session_maps(raw: list[bytes], origin: int,
                 abi_version: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and trailer of the recording of the captured records (of
    ABI 1, raw-abi1)."""
    decoder = records.Decoder(origin, records.ABI_1)
    events = [decoder.decode(r) for r in raw]
    assert all(e is not None for e in events)
    first = events[0]
    assert first is not None
    counts = {name: 0 for name in TYPE_NAMES.values()}
    for e in events:
        assert e is not None
        counts[TYPE_NAMES[int(e[0])]] += 1  # type: ignore[call-overload]
    header: dict[str, Any] = {
        **make_golden.HEADER,
        "command": ["sh", "-c", "cd /tmp && cat /etc/hostname >/dev/null; ..."],
        "cwd": b"/root",
        "leader_pid": first[2],
        "uid": 0,
        "user": "root",
        "login_uid": None,
        "audit_session_id": None,
        "clock": {"wall_ns": make_golden.WALL_NS, "mono_ns": origin},
        "cgroup_id": struct.unpack_from("<Q", raw[0], records.HEADER.offsets()["cgroup_id"])[0],
        "audit": {"record_type": 1121, "status": None, "sender_session_id": None,
                  "start_record": False, "reason": "auditd is not running"},
        "abi_version": abi_version,
    }
    trailer: dict[str, Any] = {
        **make_golden.TRAILER,
        "counts": counts,
        "lost": {"open": 3},
        "truncated": {"argv": 0, "path": 0},
        "exit_status": 7,
        "audit": {"end_record": False, "reason": "auditd is not running"},
    }
    return header, trailer


def write(path: str, raw: list[bytes], origin: int, *,
          abi_version: int = 1, stored: list[bytes] | None = None,
          sealer: Any = None) -> None:
    """The session of the captured records `raw` into path; `stored` (the
    same records in another ABI, by default raw) is what its RECORDS hold;
    sealed by `sealer` if one is given (make_golden_v2_1.py)."""
    header, trailer = session_maps(raw, origin, abi_version)
    stored = raw if stored is None else stored
    w = SessionWriter(path, header, sealer=sealer)
    half = len(stored) // 2
    for i, part in enumerate((stored[:half], stored[half:])):
        buf = w.begin_records()
        for r in part:
            buf += fmt.RECORD_FRAME.pack(len(r), 0) + r
        if i == 0:
            w.add_stats({"ts": 5_000_000, "lost": {"open": 3}})
    w.close(trailer)


def main(argv: list[str] | None = None) -> int:
    assert (fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR) == (2, 0), "this writer no longer writes 2.0"
    outputs = make_golden.new_outputs(argv, __doc__, NAME)
    if outputs is None:
        return 1
    write(outputs[0], *capture())
    make_golden.write_expected(*outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
