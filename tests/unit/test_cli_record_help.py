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


def test_the_waiting_notice_names_the_processes_and_ctrl_c() -> None:
    """What record prints once when the command exits and leaves processes
    running (tests/kernel/test_session.py sees it in a real recording)."""
    import subprocess
    import sys

    from recorder.record import waiting_notice

    code = "print(1, flush=True); import time; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code, "\x1b[2J"], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"1\n"  # exec'd
        notice = waiting_notice([child.pid, 2**22 + 1], timeout=None)
        shown = f"{sys.executable} -c {code} \\x1b[2J"
        shown = shown if len(shown) <= 60 else shown[:59] + "…"
        assert notice == (
            "sessrec: the command exited; recording goes on while what it left runs: "
            f"{child.pid} {shown}, {2**22 + 1} (exited). Ctrl-C stops the wait.")
        # The child's command line, longer than 60 characters, is cut short.
        many = waiting_notice([child.pid] * 7, timeout=30)
        assert "runs (at most 30 s): " in many
        assert many.endswith(" and 2 more. Ctrl-C stops the wait.")
        assert many.count(f"{child.pid} ") == 5 and many.count("…") == 5
    finally:
        child.kill()
        child.wait()
