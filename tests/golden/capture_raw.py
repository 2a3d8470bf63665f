#!/usr/bin/env python3
"""Captures raw ring-buffer records from a real recording, for the decoder's
golden test (tests/unit/test_decode_raw.py). Run as root on a real kernel:

    sudo .venv/bin/python tests/golden/capture_raw.py tests/golden/raw-abi1

Writes <prefix>.bin (u32 length + record bytes, repeated) and <prefix>.json
(the mono origin and the decoded event arrays, bytes as latin-1 strings).
Committed captures are kept: the test decodes them forever.
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

from recorder import record as rec
from recorder.ringbuf import BUSY, DISCARD, RingReader
from replay.reader import open_session
from sessrec import records


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"b": v.decode("latin-1")}
    if isinstance(v, (list, tuple)):  # a decoded event is a tuple
        return [_plain(x) for x in v]
    return v


def main() -> int:
    prefix = Path(sys.argv[1])
    if prefix.with_suffix(".bin").exists():
        print(f"{prefix}.bin exists: captures are kept, pick a new name", file=sys.stderr)
        return 1
    raw: list[bytes] = []
    drain = rec.Dispatcher.drain

    def tap(self: rec.Dispatcher, reader: RingReader, cgroup_id: int, limit: int,
            max_bytes: int = 1 << 20) -> int:
        # A copy of what lies in the ring before the drain gives it back to
        # the kernel; then the records the drain took, from the copy.
        view, base, mask, cons, end = reader.span(max_bytes)
        at = base + (cons & mask)
        snap = bytes(view[at:at + end - cons])
        n = drain(self, reader, cgroup_id, limit, max_bytes)
        taken, pos = reader.span(0)[3] - cons, 0
        while pos < taken:
            length = struct.unpack_from("<I", snap, pos)[0]
            if length & BUSY:
                raise SystemExit("a record was still being written: run the capture again")
            size = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                raw.append(snap[pos + 8:pos + 8 + size])
            pos += (size + 15) & ~7
        return n

    rec.Dispatcher.drain = tap  # type: ignore[method-assign]
    # Every record type: ABI 2 adds kernel paths (a symlink opened), argv
    # parts (an argv over 32 KiB), the socket's destination and a cgroup move
    # (the shell leaves the session's cgroup, and stays recorded).
    script = (
        "cd /tmp && cat /etc/hostname >/dev/null; /nonexistent-cmd 2>/dev/null; "
        "ln -sf /etc/hostname /tmp/sessrec-capture-link; cat /tmp/sessrec-capture-link "
        ">/dev/null; rm -f /tmp/sessrec-capture-link; "
        "/bin/true \"$(head -c 40000 /dev/zero | tr '\\0' a)\" end; "
        "/usr/bin/python3 -c 'import socket,os; s=socket.socket(socket.AF_INET6); "
        "s.connect_ex((\"::1\", 9)); os.chdir(\"/etc\"); os.open(\"passwd\", os.O_RDONLY)'; "
        "echo $$ > /sys/fs/cgroup/unified/cgroup.procs; cat /etc/hostname >/dev/null; "
        "sh -c 'kill -9 $$'; exit 7"
    )
    with tempfile.TemporaryDirectory() as d:
        rec.record(rec.RecordOptions(command=["sh", "-c", script], output=f"{d}/x.srec"))
        with open_session(f"{d}/x.srec") as s:
            origin = [s.header["clock"]["mono_ns"]]
    # An argv part decodes to records.CONSUMED ([]): its exec, after it, has
    # the whole argv.
    dec = records.Decoder(origin[0])
    with open(prefix.with_suffix(".bin"), "wb") as f:
        for r in raw:
            f.write(struct.pack("<I", len(r)) + r)
    decoded = [_plain(dec.decode(r)) for r in raw]
    prefix.with_suffix(".json").write_text(
        json.dumps({"abi_version": records.ABI_VERSION, "mono_origin_ns": origin[0],
                    "events": decoded}, indent=1) + "\n"
    )
    print(f"captured {len(raw)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
