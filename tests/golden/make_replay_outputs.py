"""Write the expected outputs of `sessrec replay`, `tree`, `info` and the
teleport and ECS exports for every committed golden session file that lacks
them: tests/golden/<name>.{replay.txt,tree.txt,info.txt,teleport.jsonl,ecs.jsonl}.

Like make_golden.py it never overwrites: an expected output that changes is
a decision, made by deleting the file (and saying why in the commit), not a
side effect of running a script.

    python tests/golden/make_replay_outputs.py
"""

from __future__ import annotations

import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from sessrec.cli import main as sessrec  # noqa: E402

# suffix -> the sessrec arguments after the file name's place
OUTPUTS: dict[str, list[str]] = {
    ".replay.txt": ["replay", "{}", "--color=never"],
    ".tree.txt": ["tree", "{}", "--color=never"],
    ".info.txt": ["info", "{}"],
    ".teleport.jsonl": ["export", "{}", "--format", "teleport"],
    ".ecs.jsonl": ["export", "{}", "--format", "ecs"],
}


# Read only with its test ABI registered (tests/unit/test_abi_versions.py),
# and shows what v2.0-records.srec shows.
TEST_ABI_FILE = "v2.0-abi-test.srec"


def output(srec: str, suffix: str) -> str:
    """What sessrec prints for this golden file and output kind."""
    out, err = io.StringIO(), io.StringIO()
    argv = [a.format(srec) for a in OUTPUTS[suffix]]
    status = sessrec(argv, stdout=out, stderr=err)
    if status != 0 or err.getvalue():
        raise RuntimeError(f"sessrec {' '.join(argv)}: status {status}: {err.getvalue()}")
    return out.getvalue()


def main() -> int:
    for name in sorted(os.listdir(HERE)):
        if not name.endswith(".srec") or name == TEST_ABI_FILE:
            continue
        srec = os.path.join(HERE, name)
        for suffix in OUTPUTS:
            target = srec[: -len(".srec")] + suffix
            if os.path.exists(target):
                continue
            text = output(srec, suffix)
            with open(target, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
