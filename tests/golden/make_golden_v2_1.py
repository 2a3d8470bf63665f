"""Write the golden session file of format 2.1, v2.1-sealed.srec: the records,
header and trailer of v2.0-records.srec, sealed as the recorder seals since 2.1
(a seal after the header and after each chunk, the final seal before the
trailer), as session file #41 of a test node. Also writes the node's
verification key (v2.1-sealed.key: a test key, public on purpose), the
expected `sessrec info --json` and the expected `sessrec verify --key` output
(v2.1-sealed.verify.txt, run from this directory). Its events are those of
v2.0-records.jsonl.

Like every golden it is kept forever and never regenerated: this script
refuses to overwrite it.

    python tests/golden/make_golden_v2_1.py [--out-dir DIR]
"""

from __future__ import annotations

import io
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden
import make_golden_v2_0

from sessrec import format as fmt
from sessrec import seal
from sessrec.cli import main as sessrec_main

NAME = "v2.1-sealed"
EPOCH = 41


def main(argv: list[str] | None = None) -> int:
    assert (fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR) == (2, 1), "this writer no longer writes 2.1"
    outputs = make_golden.new_outputs(argv, __doc__, NAME,
                                      (".srec", ".info.json", ".key", ".verify.txt"))
    if outputs is None:
        return 1
    srec, info_json, key_file, verify_txt = outputs
    with tempfile.TemporaryDirectory() as tmp:
        state = os.path.join(tmp, "seal.key")
        vk = seal.create_seal_key(state)
        for _ in range(EPOCH):
            seal.start_file(state)
        sealer = seal.start_file(state)
    assert sealer.epoch == EPOCH
    make_golden_v2_0.write(srec, *make_golden_v2_0.capture(), sealer=sealer)
    make_golden.write_expected(srec, None, info_json)
    with open(key_file, "w", encoding="ascii") as f:
        f.write(f"# the verification key of the test node that sealed {NAME}.srec\n{vk}\n")
    out = io.StringIO()
    os.chdir(os.path.dirname(srec))
    status = sessrec_main(["verify", "--key", key_file, os.path.basename(srec)], out, out)
    assert status == 0, out.getvalue()
    with open(verify_txt, "w", encoding="utf-8") as f:
        f.write(out.getvalue())
    for p in (key_file, verify_txt):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
