"""The README's first command ends in demo/run: it must keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from krec import TIMEOUT_FACTOR

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]


def test_demo_records_and_shows_a_session(tmp_path: Path) -> None:
    out = tmp_path / "demo.srec"
    # sessrec from this checkout's venv first on PATH, as setup.sh links it.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    r = subprocess.run([str(ROOT / "demo" / "run"), str(out)], capture_output=True,
                       text=True, timeout=120 * TIMEOUT_FACTOR, env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "hello from the demo service" in r.stdout  # the session's connect worked
    tree = r.stdout.split("== sessrec tree", 1)[1]
    assert "/bin/bash session.sh" in tree
    assert "grep -c root /etc/passwd" in tree
    assert "orphaned" in tree  # the background sh outlives the script
    timeline = r.stdout.split("== sessrec replay", 1)[1]
    assert "connect tcp 127.0.0.1:" in timeline
    assert "/usr/bin/no-such-tool --flag = -2 ENOENT" in timeline
    # One timeline: its times never run backwards, and it holds the session's
    # own opens and its execs, but not the loader's.
    times = [float(line.split()[0]) for line in timeline.splitlines()[1:] if line.strip()]
    assert len(times) > 10 and times == sorted(times)
    assert "notes.txt" in timeline and "exec" in timeline and "ld.so.cache" not in timeline
    assert "lost         none" in r.stdout
