"""Write the golden session file of format 1.1, v1.1-audit.srec, and its
expected `sessrec info --json` output: the events of v1.0-synthetic (so its
jsonl export is v1.0-synthetic.jsonl), plus the header's and the trailer's
audit keys that 1.1 added (docs/AUDIT.md).

Like every golden it is kept forever and never regenerated: this script
refuses to overwrite it.

    python tests/golden/make_golden_v1_1.py [--out-dir DIR]
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden

from sessrec import format as fmt

NAME = "v1.1-audit"
HEADER: dict[str, Any] = {
    **make_golden.HEADER,
    "audit": {
        "record_type": 1121,
        "status": {"enabled": 1, "failure": 1, "pid": 612, "rate_limit": 0,
                   "backlog_limit": 8192, "lost": 0, "backlog": 0, "backlog_wait_time": 15000},
        "sender_session_id": 42,
        "start_record": True,
        "reason": None,
    },
}
TRAILER: dict[str, Any] = {
    **make_golden.TRAILER,
    "audit": {"end_record": False,
              "reason": "no answer from audit netlink within 1 s (auditd's backlog full?); "
              "the record may still be written"},
}


def main(argv: list[str] | None = None) -> int:
    assert (fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR) == (1, 1), "this writer no longer writes 1.1"
    outputs = make_golden.new_outputs(argv, __doc__, NAME, (".srec", ".info.json"))
    if outputs is None:
        return 1
    make_golden.write(outputs[0], HEADER, TRAILER)
    make_golden.write_expected(outputs[0], None, outputs[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
