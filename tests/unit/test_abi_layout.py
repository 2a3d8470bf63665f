"""The Python mirrors of bpf/sessrec.h against what the C compiler makes of it.

sessrec/records.py describes every ring-buffer struct as struct formats; this
compiles the header with gcc and checks each field's offset, each struct's
size and each constant, so that a change on one side fails here, not in a
recording. (Tetragon's alignchecker does the same for its Go mirrors.)
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sessrec import records

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def _c_program() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/types.h>",
        '#include "sessrec.h"',
        "int main(void) {",
    ]
    h = records.HEADER
    lines.append(f'printf("{h.c_name} size %zu\\n", sizeof(struct {h.c_name}));')
    for name, _ in h.fields:
        lines.append(
            f'printf("{h.c_name}.{name} %zu\\n", offsetof(struct {h.c_name}, {name}));'
        )
    for body in records.BODIES.values():
        c = body.c_name
        lines.append(f'printf("{c} size %zu\\n", sizeof(struct {c}));')
        for name, _ in body.fields:
            lines.append(f'printf("{c}.{name} %zu\\n", offsetof(struct {c}, {name}));')
    for const in ("SESSREC_ABI_VERSION", "SR_COMM_LEN", "SR_PATH_MAX", "SR_ARGV_MAX",
                  "SR_SOCKADDR_MAX", "SR_EVENT_FORK", "SR_EVENT_EXEC", "SR_EVENT_EXIT",
                  "SR_EVENT_OPEN", "SR_EVENT_CONNECT", "SR_EVENT_CHDIR",
                  "SR_EVENT_TYPE_MAX"):
        lines.append(f'printf("{const} %d\\n", (int){const});')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    d = tmp_path_factory.mktemp("abi")
    src = d / "abi.c"
    src.write_text(_c_program())
    exe = d / "abi"
    subprocess.run(["gcc", f"-I{BPF_DIR}", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}


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
