"""The ring buffer under a steady load the recorder can keep up with: nothing
may be lost, however often the ring wraps. (A consumer position written to
the shared mapping byte by byte once made the kernel refuse a few records
per wrap at any rate.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from krec import Recorder

pytestmark = pytest.mark.kernel


def test_no_loss_across_many_wraps(record: Recorder, progs: dict[str, Path]) -> None:
    n = 400_000  # ~40 MB of open records: about ten laps of a 4 MiB ring
    status, events, info = record(
        [str(progs["open_paced"]), str(n), "100000", "/etc/hostname"], "--ring-pages", "1024")
    assert status == 0
    assert info["lost"] == {name: 0 for name in info["lost"]}
    opens = [e for e in events if e["type"] == "open"]
    assert len(opens) == n  # a static program: no loader opens
    assert all(e["requested_path"] == "/etc/hostname" and e["return_code"] >= 0 for e in opens)
