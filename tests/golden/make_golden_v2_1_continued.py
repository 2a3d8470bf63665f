"""Write the golden session file of a session continued after its daemon was
killed (format 2.1), v2.1-continued.srec, with its expected jsonl and
`sessrec info --json`. It holds the captured records of v2.0-records.srec in
two segments, as recorder/resume.py leaves a file:

  1. the header and a RECORDS chunk with the first 53 records, then the first
     100 bytes of a second chunk (the daemon was killed inside that write);
  2. from the end of the last whole chunk (the partial one is cut): a "gap"
     map, from the last event of segment 1 to the moment a new daemon watched
     the session again (the events between are missing: the records of the
     cut chunk among them), a RECORDS chunk with the records after the gap,
     and a trailer that counts what the file holds and repeats the gap.

The records in the cut chunk are left out of the file on purpose: the gap
covers them. Kept forever, never regenerated: the script refuses to overwrite.

    python tests/golden/make_golden_v2_1_continued.py [--out-dir DIR]
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden
import make_golden_v2_0

from recorder.writer import SessionWriter
from sessrec import format as fmt
from sessrec import records
from sessrec.event import TYPE_NAMES

NAME = "v2.1-continued"
FIRST, CUT = 53, 20  # records in segment 1, and in the chunk the kill cut


def main(argv: list[str] | None = None) -> int:
    assert (fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR) == (2, 1), "this writer no longer writes 2.1"
    outputs = make_golden.new_outputs(argv, __doc__, NAME)
    if outputs is None:
        return 1
    path = outputs[0]
    raw, origin = make_golden_v2_0.capture()
    header, trailer = make_golden_v2_0.session_maps(raw, origin)
    header["kind"] = "pam"
    header["login"] = {"user": "root", "uid": 0, "rhost": "192.0.2.7", "tty": "ssh",
                       "service": "sshd", "remote_addr": "192.0.2.7", "remote_port": 50022}

    def frames(part: list[bytes]) -> bytes:
        return b"".join(fmt.RECORD_FRAME.pack(len(r), 0) + r for r in part)

    w = SessionWriter(path, header)
    w.begin_records()[:] = frames(raw[:FIRST])
    w.flush()
    whole = w.bytes_written
    w._write(w._chunk(fmt.ChunkKind.RECORDS, frames(raw[FIRST:FIRST + CUT]))[:100])
    w.close(None)

    decoder = records.Decoder(origin)
    ts = [e.ts for e in (decoder.decode(r) for r in raw) if e is not None]
    kept = raw[:FIRST] + raw[FIRST + CUT:]
    w = SessionWriter(path, header, resume_at=whole)
    gap = {"ts": ts[FIRST - 1], "end": ts[FIRST + CUT] - 1000,
           "reason": "restart", "detail": "the daemon was restarted or killed; the file "
           f"continues from byte {whole}", "dropped": None}
    w.add_map("gap", gap)
    w.begin_records()[:] = frames(raw[FIRST + CUT:])
    counts = {name: 0 for name in TYPE_NAMES.values()}
    for r in kept:
        counts[TYPE_NAMES[r[0] | r[1] << 8]] += 1
    trailer.update(counts=counts, lost={}, left_running=[], gaps=[gap])
    trailer.pop("exit_status")
    trailer["exit_status"] = None
    trailer["end_reason"] = "cgroup-empty"
    w.close(trailer)
    make_golden.write_expected(*outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
