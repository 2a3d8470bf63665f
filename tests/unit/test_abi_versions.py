"""Decoders keyed by BPF ABI version (sessrec/records.py, docs/FORMAT.md "BPF
ABI versions"): a struct grown at its end is a minor change, and files of the
older ABI stay readable. tests/golden/v2.0-abi-test.srec holds the records of
v2.0-records.srec in a test ABI whose open record has one appended field."""

from __future__ import annotations

import importlib.util
import io
import struct
from pathlib import Path
from types import ModuleType

import pytest
from srec_util import GOLDEN_DIR

from replay.jsonl import write_jsonl
from replay.reader import open_session
from sessrec import records
from sessrec.errors import FormatError
from sessrec.event import Open

GOLDEN_ABI_1 = GOLDEN_DIR / "v2.0-records.srec"
GOLDEN_TEST_ABI = GOLDEN_DIR / "v2.0-abi-test.srec"


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, GOLDEN_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


script = _script("make_golden_abi_test")
outputs = _script("make_replay_outputs")


@pytest.fixture
def test_abi(monkeypatch: pytest.MonkeyPatch) -> records.Abi:
    """A sessrec that knows the test ABI as well as every real one."""
    abi: records.Abi = script.TEST_ABI
    monkeypatch.setitem(records.ABIS, abi.version, abi)
    return abi


def _jsonl(path: Path) -> str:
    out = io.StringIO()
    with open_session(path) as s:
        write_jsonl(s, out)
    return out.getvalue()


def test_both_abis_read_to_the_same_events(test_abi: records.Abi) -> None:
    """This sessrec's Open does not have the test field: the grown records
    read as the old ones, their paths found after the grown fixed part."""
    with open_session(GOLDEN_ABI_1) as s_old:
        old = list(s_old.records())
    with open_session(GOLDEN_TEST_ABI) as s_new:
        new = list(s_new.records())
    assert s_old.header["abi_version"] == 1 and s_new.header["abi_version"] == 1001
    assert s_old.damage is s_new.damage is None
    assert len(old) == 106 and new == old
    assert sum(type(e) is Open for e in new) > 10


def test_the_appended_field_is_decoded(test_abi: records.Abi) -> None:
    """The test ABI's table gives the appended field's value after the
    fields of ABI 1: what a sessrec whose Open has the field receives."""
    raw, origin = script.make_golden_v2_0.capture()
    grown = script.to_test_abi(raw)
    old_open = records.ABI_1.types[records.OPEN]
    new_open = test_abi.types[records.OPEN]
    assert new_open.n_fields == old_open.n_fields + 1
    opens = 0
    for i, (a, b) in enumerate(zip(raw, grown, strict=True)):
        if a[0] != records.OPEN:
            continue
        opens += 1
        va = struct.unpack_from(records.HEADER.fmt + old_open.body.fmt[1:], a)
        vb = struct.unpack_from(records.HEADER.fmt + new_open.body.fmt[1:], b)
        end_a = records.record_size(records.OPEN, records.ABI_1)
        end_b = records.record_size(records.OPEN, test_abi)
        fields_a = old_open.build(va, a, end_a, origin)
        fields_b = new_open.build(vb, b, end_b, origin)
        assert fields_b == (*fields_a, script.appended_value(i))
    assert opens > 10


def test_the_appended_field_changes_no_output(test_abi: records.Abi) -> None:
    assert _jsonl(GOLDEN_TEST_ABI) == _jsonl(GOLDEN_ABI_1) == (
        GOLDEN_DIR / "v2.0-records.jsonl").read_text(encoding="utf-8")


@pytest.mark.parametrize("suffix", outputs.OUTPUTS)
def test_every_command_shows_the_same(test_abi: records.Abi, suffix: str) -> None:
    expected = (GOLDEN_DIR / f"v2.0-records{suffix}").read_text(encoding="utf-8")
    assert outputs.output(str(GOLDEN_TEST_ABI), suffix) == expected


def test_an_abi_this_sessrec_does_not_know_is_refused_by_name() -> None:
    assert 1001 not in records.ABIS
    with pytest.raises(FormatError, match="BPF ABI 1001; this sessrec decodes ABI 1"):
        open_session(GOLDEN_TEST_ABI)


def test_extend_grows_only_the_named_struct(test_abi: records.Abi) -> None:
    for t, rt in records.ABI_1.types.items():
        grown = test_abi.types[t].body
        if t == records.OPEN:
            assert grown.fields[: len(rt.body.fields)] == rt.body.fields
            assert grown.size == rt.body.size + 8
        else:
            assert grown == rt.body
    # ABI 1 itself is untouched: its decoder still reads its own records.
    assert records.record_size(records.OPEN, records.ABI_1) == records.HEADER_SIZE + 24


def test_a_grown_record_cut_before_its_appended_field_is_malformed(
        test_abi: records.Abi) -> None:
    raw: list[bytes] = script.to_test_abi(script.make_golden_v2_0.capture()[0])
    dec = records.Decoder(0, test_abi)
    one_open = next(r for r in raw if r[0] == records.OPEN)
    assert dec.decode(one_open) is not None
    assert dec.decode(one_open[: records.record_size(records.OPEN, records.ABI_1)]) is None
    assert dec.malformed == 1


