"""What the daemon's configuration does, on the real kernel: `events` (a kind
that is off is not compiled: no program, no event), `[retention]` (old files
removed oldest first and logged, never an active session's), `enabled`."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonctl import Daemon, gated, make_daemon, release
from krec import export

pytestmark = pytest.mark.kernel
DAY = 86400


@pytest.fixture
def tmp_daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    try:
        yield made
    finally:
        for d in made:
            d.cleanup()


def test_events_off_and_retention(tmp_daemons: list[Daemon], tmp_path: Path) -> None:
    d = make_daemon(tmp_path, 'events = ["command", "network"]\n'
                    '[retention]\nmax_age = "90d"\nmax_total_size = "1MiB"\n')
    tmp_daemons.append(d)
    d.out.mkdir(parents=True)
    now = time.time()
    old = d.out / "old.srec"          # older than max_age
    big_old = d.out / "big-old.srec"  # young, but the oldest of what is over the size
    big_new = d.out / "big-new.srec"
    keep = d.out / "keep.srec"
    for p, size, age in ((old, 10, 100 * DAY), (big_old, 700_000, 3 * DAY),
                         (big_new, 700_000, 2 * DAY), (keep, 10, 1 * DAY)):
        p.write_bytes(b"\0" * size)
        os.utime(p, (now - age, now - age))
    d.start()
    # An active session's file, made to look old: never removed.
    p = subprocess.Popen(["/bin/sleep", "60"])
    try:
        r = d.request("start", pid=p.pid, kind="pam")
        os.utime(r["file"], (now - 200 * DAY, now - 200 * DAY))
        deadline = time.monotonic() + 60
        while len(d.events("retention-removed")) < 2:
            assert time.monotonic() < deadline, d.log_path.read_text()
            time.sleep(0.2)
        assert Path(r["file"]).exists()
    finally:
        p.kill()
        p.wait()
    removed = {(Path(e["file"]).name, e["why"]) for e in d.events("retention-removed")}
    assert removed == {("old.srec", "max_age"), ("big-old.srec", "max_total_size")}
    assert not old.exists() and not big_old.exists() and big_new.exists() and keep.exists()

    status = d.request("status")
    assert status["events"] == ["command", "network"]
    assert not [t for t in status["programs"] if "open" in t]
    assert "syscalls:sys_exit_connect" in status["programs"]
    c = gated(["/bin/cat", "/etc/hostname"], stdout=subprocess.DEVNULL)
    r = d.request("start", pid=c.pid, kind="pam")
    release(c)
    assert c.wait(30) == 0
    d.wait_ended(r["session"])
    events, _ = export(r["file"])
    kinds = {e["type"] for e in events}
    assert "exec" in kinds and "open" not in kinds


def test_disabled(tmp_daemons: list[Daemon], tmp_path: Path) -> None:
    d = make_daemon(tmp_path, "enabled = false\n")
    tmp_daemons.append(d)
    d.start()
    p = subprocess.Popen(["/bin/sleep", "60"])
    try:
        r = d.request("start", pid=p.pid, kind="pam")
    finally:
        p.kill()
        p.wait()
    assert r == {"v": 1, "ok": True, "recorded": False,
                 "reason": "recording is disabled (enabled = false)"}
    assert d.request("status")["sessions_total"] == 0
