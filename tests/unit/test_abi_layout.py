"""The Python mirrors of bpf/sessrec.h against what the compiler makes of it
for the BPF target, as BCC compiles it (`clang -target bpf`).

sessrec/records.py describes every ring-buffer struct of the current ABI as
struct formats; this compiles the header with clang for BPF and checks each
field's offset, each struct's size, where each variable part starts and each
constant, so that a change on one side fails here, not in a recording.
(Tetragon's alignchecker does the same for its Go mirrors.) Nothing is run:
the values are read back from the generated assembly. Under CI=true a
missing clang is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sessrec import records

# Not `from conftest import IN_CI`: in a whole-suite run, "conftest" can be
# tests/kernel/conftest.py, which has none.
IN_CI = os.environ.get("CI", "").lower() == "true"
BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
CONSTANTS = ("SESSREC_ABI_VERSION", "SR_COMM_LEN", "SR_PATH_MAX", "SR_ARGV_MAX",
             "SR_SOCKADDR_MAX", "SR_EVENT_FORK", "SR_EVENT_EXEC", "SR_EVENT_EXIT",
             "SR_EVENT_OPEN", "SR_EVENT_CONNECT", "SR_EVENT_CHDIR", "SR_EVENT_TYPE_MAX")


def _c_program() -> tuple[str, list[str]]:
    """C that puts every value in a global of its own, and the keys in order."""
    values: list[tuple[str, str]] = []
    h = records.HEADER
    values.append((f"{h.c_name} size", f"sizeof(struct {h.c_name})"))
    for name, _ in h.fields:
        values.append((f"{h.c_name}.{name}", f"offsetof(struct {h.c_name}, {name})"))
    for body in records.BODIES.values():
        c = body.c_name
        values.append((f"{c} size", f"sizeof(struct {c})"))
        for name, _ in [*body.fields, *([(body.tail, "")] if body.tail else [])]:
            values.append((f"{c}.{name}", f"offsetof(struct {c}, {name})"))
    values += [(const, f"(long long){const}") for const in CONSTANTS]
    lines = [
        # The kernel's fixed-width types, as <linux/types.h> defines them.
        "typedef unsigned char __u8; typedef unsigned short __u16;",
        "typedef unsigned int __u32; typedef unsigned long long __u64;",
        "typedef int __s32;",
        '#include "sessrec.h"',
        "#define offsetof(t, f) __builtin_offsetof(t, f)",
    ]
    lines += [f"const long long sr_abi_{i} = {expr};" for i, (_, expr) in enumerate(values)]
    return "\n".join(lines) + "\n", [key for key, _ in values]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    clang = shutil.which("clang")
    if clang is None:
        if IN_CI:
            pytest.fail("CI=true, so the ABI layout test must run, but clang is missing "
                        "(./setup.sh installs it)", pytrace=False)
        pytest.skip("needs clang (./setup.sh installs it)")
    src = tmp_path_factory.mktemp("abi") / "abi.c"
    text, keys = _c_program()
    src.write_text(text)
    asm = subprocess.run([clang, "-target", "bpf", "-O2", "-S", f"-I{BPF_DIR}", "-o", "-",
                          str(src)], capture_output=True, text=True, check=True).stdout
    # Each global is its label, then one `.quad N` (clang's BPF assembly).
    found = {int(i): int(v) for i, v in
             re.findall(r"^sr_abi_(\d+):\s*\n\s*\.quad\s+(-?\d+)", asm, re.MULTILINE)}
    assert sorted(found) == list(range(len(keys))), "unexpected assembly from clang"
    return {key: found[i] for i, key in enumerate(keys)}


def test_header_offsets_match_c(compiled: dict[str, int]) -> None:
    h = records.HEADER
    for name, off in h.offsets().items():
        assert compiled[f"{h.c_name}.{name}"] == off, name
    assert compiled[f"{h.c_name} size"] == h.size == records.HEADER_SIZE


@pytest.mark.parametrize("etype", sorted(records.BODIES))
def test_event_struct_offsets_match_c(compiled: dict[str, int], etype: int) -> None:
    body = records.BODIES[etype]
    # Body fields follow the embedded header (field `h` of every event struct).
    for name, off in body.offsets().items():
        assert compiled[f"{body.c_name}.{name}"] == records.HEADER_SIZE + off, name
    assert compiled[f"{body.c_name} size"] == records.HEADER_SIZE + body.size
    if body.tail:  # the variable part starts where the decoder reads it
        assert compiled[f"{body.c_name}.{body.tail}"] == records.record_size(etype)


def test_constants_match_c(compiled: dict[str, int]) -> None:
    assert compiled["SESSREC_ABI_VERSION"] == records.ABI_VERSION
    assert compiled["SR_COMM_LEN"] == records.COMM_LEN
    assert compiled["SR_PATH_MAX"] == records.PATH_MAX
    assert compiled["SR_ARGV_MAX"] == records.ARGV_MAX
    assert compiled["SR_SOCKADDR_MAX"] == records.SOCKADDR_MAX
    assert compiled["SR_EVENT_TYPE_MAX"] == records.EVENT_TYPE_MAX
    for name in ("FORK", "EXEC", "EXIT", "OPEN", "CONNECT", "CHDIR"):
        assert compiled[f"SR_EVENT_{name}"] == getattr(records, name), name


def test_every_event_type_has_a_layout() -> None:
    assert sorted(records.BODIES) == list(range(1, records.EVENT_TYPE_MAX))


def test_the_current_abi_is_the_newest_table() -> None:
    assert records.ABI_VERSION == max(v for v in records.ABIS if v < 1000)
    assert records.ABIS[records.ABI_VERSION] is records.CURRENT
