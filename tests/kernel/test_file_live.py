"""The session file of a recording in progress can be read, and so can the
file of a recorder killed with SIGKILL: everything up to its last flush."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from krec import export, header, info, live_recording

pytestmark = pytest.mark.kernel

SH = "/bin/sh"


def test_read_while_recording_then_after_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "live.srec"
    marker = tmp_path.resolve() / "first"
    cmd = [SH, "-c", f"echo > {marker}; exec /bin/sleep 30"]
    with live_recording(out, marker, cmd) as recorder:
        cgroup = Path(header(out)["cgroup"])
        time.sleep(1.6)  # more than the 1 s flush interval

        # While it is being written: the events so far, and a warning.
        events, err = export(out)
        assert err.startswith(f"sessrec: warning: {out}: truncated at byte ")
        assert err.count("\n") == 1
        sh = events[0]
        assert (sh["type"], sh["path"], sh["argv"]) == ("exec", os.path.realpath(SH), cmd)
        opens = [e for e in events if e["type"] == "open" and e["path"] == str(marker)]
        assert [(e["pid"], e["flag_names"]) for e in opens] == [
            (sh["pid"], ["O_WRONLY", "O_CREAT", "O_TRUNC"])]
        sleep = [e for e in events if e["type"] == "exec"
                 and e["path"] == os.path.realpath("/bin/sleep")]
        assert [(e["pid"], e["argv"]) for e in sleep] == [(sh["pid"], ["/bin/sleep", "30"])]
        running = info(out)
        assert (running["complete"], running["ended_at"], running["end_reason"]) == (
            False, None, None)

        # Killed: no trailer, but every flushed chunk is still there.
        recorder.send_signal(signal.SIGKILL)
        assert recorder.wait(timeout=10) == -signal.SIGKILL
        after, err = export(out)
        assert err.startswith(f"sessrec: warning: {out}: truncated at byte ")
        assert after[: len(events)] == events
        killed = info(out)
        assert killed["complete"] is False
        assert killed["damage"] is not None
        assert killed["end_reason"] is None
        assert killed["counts"]["exec"] == len([e for e in after if e["type"] == "exec"])
        assert os.path.exists(cgroup)  # the recorder had no chance to clean up
