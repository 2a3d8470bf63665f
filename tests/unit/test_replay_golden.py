"""`sessrec replay`, `tree`, `info` and the teleport and ECS exports of every
committed golden session file, against their committed expected outputs
(tests/golden/make_replay_outputs.py writes missing ones, never overwrites)."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import pytest
from srec_util import GOLDEN, GOLDEN_DIR

from sessrec.cli import main


def _script() -> ModuleType:
    path = GOLDEN_DIR / "make_replay_outputs.py"
    spec = importlib.util.spec_from_file_location("make_replay_outputs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT = _script()
CASES = [
    (srec, suffix)
    for srec in sorted(GOLDEN_DIR.glob("*.srec"))
    if srec.name != SCRIPT.TEST_ABI_FILE
    for suffix in SCRIPT.OUTPUTS
]


@pytest.mark.parametrize(("srec", "suffix"), CASES, ids=[f"{s.stem}{x}" for s, x in CASES])
def test_golden_output(srec: Path, suffix: str) -> None:
    expected = srec.with_name(srec.stem + suffix)
    assert expected.exists(), (
        f"{expected.name} is missing: run tests/golden/make_replay_outputs.py, read what it "
        "wrote, and commit it"
    )
    assert SCRIPT.output(str(srec), suffix) == expected.read_text(encoding="utf-8")


def test_the_goldens_show_what_they_hold() -> None:
    """A few facts of v1.0-synthetic, so the expected files are not just
    whatever the code printed once."""
    replay = (GOLDEN_DIR / "v1.0-synthetic.replay.txt").read_text(encoding="utf-8").splitlines()
    assert len(replay) == 24  # one line per event
    assert replay[0].split() == ["+0.001", "1000", "bash", "exec", "-bash", "(/bin/bash)"]
    assert any("= -13 EACCES" in line for line in replay)
    assert any("killed by SIGSEGV (core dumped)" in line for line in replay)
    assert any("tcp [2001:db8::1]:443 = -115 EINPROGRESS" in line for line in replay)
    assert any("'A=1\\nB=2'" in line for line in replay)  # the newline escaped
    tree = (GOLDEN_DIR / "v1.0-synthetic.tree.txt").read_text(encoding="utf-8").splitlines()
    assert tree[0].startswith("1000 -bash (/bin/bash)  [exit 3, ")
    assert tree[1].startswith("├── 1001 env ")
    assert tree[2].startswith("└── 1002 ./a.out ")
    assert tree[-1] == "4 processes, 1 without an exit"
    info = (GOLDEN_DIR / "v1.0-synthetic.info.txt").read_text(encoding="utf-8")
    assert "duration     25.1 ms\n" in info and "file         complete (its events" in info
    lines = (GOLDEN_DIR / "v1.0-synthetic.teleport.jsonl").read_text(encoding="utf-8")
    teleport = [json.loads(x) for x in lines.splitlines()]
    assert teleport[0]["event"] == "session.start"
    assert teleport[-1]["event"] == "session.end"
    ecs = (GOLDEN_DIR / "v1.0-synthetic.ecs.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(ecs) == 24


def test_info_json_keys_are_stable() -> None:
    """`info --json` keeps the keys of the committed golden, in order."""
    out = io.StringIO()
    assert main(["info", "--json", str(GOLDEN)], stdout=out, stderr=io.StringIO()) == 0
    expected = json.loads((GOLDEN_DIR / "v1.0-synthetic.info.json").read_text(encoding="utf-8"))
    got = json.loads(out.getvalue())
    assert list(got) == list(expected)
    assert got == expected
