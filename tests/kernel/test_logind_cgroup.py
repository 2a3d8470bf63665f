"""The logind watcher (recorder/logind.py) on a real cgroup2 tree laid out
as logind's, made by the test under a private top cgroup (this machine has
no systemd): inotify reports mkdir and rmdir on cgroupfs too."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest
from krec import SESSREC

from recorder.cgroup import cgroup2_mount
from recorder.logind import ScopeWatcher

pytestmark = pytest.mark.kernel


def test_scopes_on_a_real_cgroup_tree() -> None:
    top = cgroup2_mount().path / f"sessrec-logind-test-{secrets.token_hex(3)}"
    root = top / "user.slice"
    scope = root / "user-1000.slice" / "session-12.scope"
    root.mkdir(parents=True)
    w = ScopeWatcher(root)
    sleeper = None
    try:
        scope.mkdir(parents=True)
        sleeper = subprocess.Popen(["sleep", "30"])
        (scope / "cgroup.procs").write_text(str(sleeper.pid))
        new, gone = w.read()
        assert [(s.path, s.uid, s.audit_session_id) for s in new] == [(scope, 1000, 12)]
        assert gone == []
        sleeper.kill()
        sleeper.wait()
        for _ in range(200):        # rmdir is EBUSY until the task is fully gone
            try:
                scope.rmdir()
                break
            except OSError:
                time.sleep(0.01)
        assert w.read() == ([], [scope])
    finally:
        w.close()
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        for d in (scope, scope.parent, root, top):
            try:
                d.rmdir()
            except OSError:
                pass



def test_the_logind_enrolment_needs_loginds_tree(tmp_path: Path) -> None:
    """Without systemd-logind's user.slice (as on this machine), a daemon
    asked for the logind enrolment says so in one line and exits."""
    config = tmp_path / "sessrec.toml"
    config.write_text(f'enrolment = "logind"\ncontrol_socket = "{tmp_path}/c.sock"\n'
                      f'output_dir = "{tmp_path}/out"\nlogind_root = "no-such.slice"\n')
    r = subprocess.run([SESSREC, "daemon", "--config", str(config)], capture_output=True,
                       text=True, timeout=60)
    root = cgroup2_mount().path / "no-such.slice"
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        f'sessrec: error: enrolment = "logind" but there is no {root}: systemd-logind makes '
        'it (each login\'s scope is there); without logind, use enrolment = "pam" (or set '
        'logind_root)']


def test_a_cgroup_holds_the_processes_in_it_and_below() -> None:
    # What the daemon's sweep asks of each idle login's leader (Session.holds_leader).
    from recorder.cgroup import SessionCgroup

    mount = cgroup2_mount()
    cg = SessionCgroup.create(f"holds-{secrets.token_hex(3)}", mount, "sessrec-holds-test")
    inner = subprocess.Popen(["sleep", "30"])
    below = subprocess.Popen(["sleep", "30"])
    outside = subprocess.Popen(["sleep", "30"])
    sub = cg.path / "sub"
    try:
        (cg.path / "cgroup.procs").write_text(str(inner.pid))
        sub.mkdir()
        (sub / "cgroup.procs").write_text(str(below.pid))
        assert cg.holds(inner.pid) and cg.holds(below.pid)
        assert not cg.holds(outside.pid)
        inner.kill()
        inner.wait()
        assert not cg.holds(inner.pid)  # gone
    finally:
        for p in (inner, below, outside):
            p.kill()
            p.wait()
        for _ in range(200):
            try:
                if sub.exists():
                    sub.rmdir()
                cg.path.rmdir()
                cg.path.parent.rmdir()
                break
            except OSError:
                time.sleep(0.01)
