"""`sessrec record --help` without root or BCC: it names the real defaults."""

from __future__ import annotations

import io

from recorder.loader import DEFAULT_RING_PAGES, PAGE_SIZE
from sessrec.cli import main


def test_record_help_names_the_ring_default() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["record", "--help"], stdout=out, stderr=err) == 0
    text = " ".join(out.getvalue().split())
    assert f"(default {DEFAULT_RING_PAGES}: {DEFAULT_RING_PAGES * PAGE_SIZE >> 20} MiB;" in text
    assert "sudo sessrec record -o build.srec -- make -j2" in text
