"""The golden sealed file of format 2.1 (tests/golden/make_golden_v2_1.py):
read forever, by readers that know seals and, by the minor-version rule, by
2.0 readers; verified with its test node's key."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from srec_util import GOLDEN_DIR, read_all

from replay.info import session_info
from replay.jsonl import write_jsonl
from replay.reader import open_session
from sessrec import seal
from sessrec.cli import ExitStatus, main

GOLDEN = GOLDEN_DIR / "v2.1-sealed.srec"
KEY = GOLDEN_DIR / "v2.1-sealed.key"


def test_its_events_are_those_of_the_unsealed_2_0_golden() -> None:
    out = io.StringIO()
    with open_session(GOLDEN) as s:
        assert s.format_version == "2.1"
        assert s.header["seal"] == {"node_id": seal.VerifyKey.load(str(KEY)).node,
                                    "epoch": 41, "scheme": seal.SCHEME}
        write_jsonl(s, out)
        assert s.unknown_records == 0 and s.damage is None and s.stats_lost == {"open": 3}
    assert out.getvalue() == (GOLDEN_DIR / "v2.0-records.jsonl").read_text(encoding="utf-8")
    expected = json.loads((GOLDEN_DIR / "v2.1-sealed.info.json").read_text(encoding="utf-8"))
    assert session_info(GOLDEN) == expected


def test_its_verify_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN_DIR)
    out = io.StringIO()
    assert main(["verify", "--key", KEY.name, GOLDEN.name], out, out) == ExitStatus.OK
    assert out.getvalue() == (GOLDEN_DIR / "v2.1-sealed.verify.txt").read_text(encoding="utf-8")
    out = io.StringIO()
    assert main(["verify", GOLDEN.name], out, out) == ExitStatus.UNVERIFIED
    assert "not verified (no --key): 5 seals present, checksums of 5 chunks intact; " \
        "complete" in out.getvalue()


def test_one_byte_changed_anywhere_in_it_is_found(tmp_path: Path) -> None:
    """Every byte of the golden file matters to `verify --key`: a flip of any
    one bit (here, of every 3rd byte) is reported, never intact. Except in the
    final seal's chunk: no seal covers its own bytes (the next seal would), so
    only its content counts there (docs/SECURITY.md)."""
    data = GOLDEN.read_bytes()
    final_seal = range(4036, 4036 + 235)
    key = seal.VerifyKey.load(str(KEY))
    from replay.verify import verify_file
    from sessrec.errors import FormatError

    p = tmp_path / "x.srec"
    for at in range(0, len(data), 3):
        d = bytearray(data)
        d[at] ^= 0x10
        p.write_bytes(bytes(d))
        try:
            verdict = verify_file(p, key).verdict.name
        except FormatError:
            continue  # the preamble: not a session file any more
        assert verdict != "INTACT" or at in final_seal, at


def test_the_unsealed_2_0_golden_is_unsealed() -> None:
    out = io.StringIO()
    status = main(["verify", str(GOLDEN_DIR / "v2.0-records.srec")], out, out)
    assert status == ExitStatus.UNSEALED
    assert out.getvalue().endswith("checksums of 5 chunks intact; complete\n")
    assert read_all(GOLDEN_DIR / "v2.0-records.srec")[1].damage is None
