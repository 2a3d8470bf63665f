"""Real recordings sealed with a node key (`record --seal-key`), verified with
the auditor's key: intact and complete, one session file number after the
other, and a recorder killed with SIGKILL leaves a file intact up to its last
seal."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
from krec import live_recording, record_into, run_cli

from sessrec import seal
from sessrec.format import rfc3339_us

pytestmark = pytest.mark.kernel

SH = "/bin/sh"


def test_sealed_recordings_verify(tmp_path: Path) -> None:
    key = tmp_path / "etc" / "seal.key"
    status, out, err = run_cli("keygen", "--seal-key", key)
    assert status == 0, err
    vk = seal.VerifyKey.parse(out)
    script = "cat /etc/hostname > /dev/null; echo done"
    recs = [record_into(tmp_path, [SH, "-c", script], "--seal-key", str(key), name=f"s{i}")
            for i in range(2)]
    for i, rec in enumerate(recs):
        assert rec.status == 0, rec.stderr
        assert rec.header["seal"] == {"node_id": vk.node, "epoch": i,
                                      "scheme": seal.SCHEME}
        assert any(e["type"] == "open" and e["path"] == "/etc/hostname" for e in rec.events)
    status, out, err = run_cli("verify", "--key", str(vk), *(r.path for r in recs))
    assert status == 0, out + err
    for rec in recs:
        assert re.search(rf"{rec.path}: intact up to the last seal \(#\d+, sealed [^)]+\) "
                         r"and complete: \d+ seals cover all \d+ chunks", out), out
    assert f"node {vk.node}: session files #0 to #1 given; none missing between" in out
    assert seal.seal_key_status(str(key)).next_epoch == 2

    plain = record_into(tmp_path, [SH, "-c", "true"], "--no-seal", name="plain")
    assert "seal" not in plain.header
    status, out, _ = run_cli("verify", "--key", str(vk), plain.path)
    assert status == 7 and "unsealed" in out


def test_a_killed_sealed_recording_is_intact_up_to_its_last_seal(tmp_path: Path) -> None:
    key = tmp_path / "seal.key"
    vk = seal.create_seal_key(str(key))
    out = tmp_path / "live.srec"
    marker = tmp_path.resolve() / "first"
    cmd = [SH, "-c", f"echo > {marker}; exec /bin/sleep 30"]
    with live_recording(out, marker, cmd, "--seal-key", str(key)) as recorder:
        time.sleep(1.6)  # more than the 1 s flush interval: the open is sealed
        recorder.send_signal(signal.SIGKILL)
        assert recorder.wait(timeout=10) == -signal.SIGKILL
        killed_at = time.time_ns()
        status, text, err = run_cli("verify", "--key", str(vk), out)
        assert status == 6, text + err
        m = re.search(r"truncated: intact up to the last good seal \(#(\d+) at byte \d+, "
                      r"sealed (\S+)\); the file ends there without its final seal", text)
        assert m, text
        assert int(m[1]) >= 1  # the header's seal and at least one chunk's
        assert m[2] <= rfc3339_us(killed_at)
