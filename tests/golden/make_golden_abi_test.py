"""Write v2.0-abi-test.srec: the records of v2.0-records.srec in a test ABI,
TEST_ABI (version 1001), which is ABI 1 with one field appended to the open
record's fixed part, so its path starts 8 bytes later. A newer sessrec must
read it, and an older file too (tests/unit/test_abi_versions.py): that is the
rule of docs/FORMAT.md for a struct that grows at its end. The recorder never
writes ABI versions from 1000 on; the test registers this one.

Like every golden it is kept forever and never regenerated: this script
refuses to overwrite it.

    python tests/golden/make_golden_abi_test.py [--out-dir DIR]
"""

from __future__ import annotations

import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden
import make_golden_v2_0

from sessrec import format as fmt
from sessrec import records

NAME = "v2.0-abi-test"
TEST_ABI_VERSION = 1001
# A u32 and its explicit pad, as C would lay it out before `char path[]`
# (the struct stays 8-byte aligned: no implicit padding).
APPENDED = (("test_appended", "I"), ("_pad2", "I"))
TEST_ABI = records.ABI_1.extend(TEST_ABI_VERSION, {records.OPEN: APPENDED})
OLD_OPEN_END = records.record_size(records.OPEN, records.ABI_1)
_SIZE_AT = records.HEADER.offsets()["size"]


def appended_value(i: int) -> int:
    """The appended field of the i-th record."""
    return 0xA0000000 + i


def to_test_abi(raw: list[bytes]) -> list[bytes]:
    """ABI 1 records as TEST_ABI has them: opens get the appended fields
    (and a size 8 bytes larger), everything else is unchanged."""
    out = []
    for i, r in enumerate(raw):
        if r[0] == records.OPEN:
            grown = bytearray(r[:OLD_OPEN_END] + struct.pack("<II", appended_value(i), 0)
                              + r[OLD_OPEN_END:])
            (size,) = struct.unpack_from("<I", grown, _SIZE_AT)
            struct.pack_into("<I", grown, _SIZE_AT, size + 8)
            r = bytes(grown)
        out.append(r)
    return out


def main(argv: list[str] | None = None) -> int:
    assert (fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR) == (2, 0), "this writer no longer writes 2.0"
    outputs = make_golden.new_outputs(argv, __doc__, NAME, (".srec",))
    if outputs is None:
        return 1
    raw, origin = make_golden_v2_0.capture()
    make_golden_v2_0.write(outputs[0], raw, origin, abi_version=TEST_ABI_VERSION,
                           stored=to_test_abi(raw))
    print(outputs[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
