"""The logind enrolment's watcher (recorder/logind.py) on a directory tree
laid out as logind lays out its cgroups. This machine has no systemd, so
no logind: the tree is made by the test, as logind (through systemd) would
make it: user.slice/user-UID.slice/session-ID.scope. The same watcher on a
real cgroup2 tree is tests/kernel/test_logind_cgroup.py."""

from __future__ import annotations

from pathlib import Path

from recorder.logind import Scope, ScopeWatcher, parse_scope


def test_parse_scope() -> None:
    s = parse_scope(Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-42.scope"))
    assert s == Scope(Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-42.scope"),
                      uid=1000, session="42", audit_session_id=42)
    c = parse_scope(Path("/u/user.slice/user-0.slice/session-c3.scope"))
    assert c is not None and c.session == "c3" and c.audit_session_id is None
    for bad in ("user-1000.slice/user@1000.service", "user-x.slice/session-1.scope",
                "user-1000.slice/session-1.scope/sub", "user-1.slice/session-.scope",
                "user-1.slice/session-1.scopex"):
        assert parse_scope(Path("/u/user.slice") / bad) is None


def test_existing_then_new_scopes_once_each(tmp_path: Path) -> None:
    root = tmp_path / "user.slice"
    (root / "user-1000.slice" / "session-3.scope").mkdir(parents=True)
    (root / "user-1000.slice" / "user@1000.service").mkdir()     # not a session
    (root / "system.slice").mkdir()
    w = ScopeWatcher(root)
    try:
        new, gone = w.read()
        assert [(s.uid, s.session) for s in new] == [(1000, "3")] and gone == []
        # A second login of the same user, and the first of another user
        # (its slice and scope made one right after the other, as systemd does).
        (root / "user-1000.slice" / "session-4.scope").mkdir()
        (root / "user-1001.slice" / "session-5.scope").mkdir(parents=True)
        (root / "user-1001.slice" / "session-5.scope" / "sub").mkdir()   # not a session
        new, gone = w.read()
        assert sorted((s.uid, s.session) for s in new) == [(1000, "4"), (1001, "5")]
        assert w.read() == ([], [])
        (root / "user-1000.slice" / "session-3.scope").rmdir()
        new, gone = w.read()
        assert new == [] and gone == [root / "user-1000.slice" / "session-3.scope"]
        # A slice removed and made again is watched again.
        (root / "user-1001.slice" / "session-5.scope" / "sub").rmdir()
        (root / "user-1001.slice" / "session-5.scope").rmdir()
        (root / "user-1001.slice").rmdir()
        assert w.read() == ([], [root / "user-1001.slice" / "session-5.scope"])
        (root / "user-1001.slice" / "session-c1.scope").mkdir(parents=True)
        new, _ = w.read()
        assert [(s.uid, s.session, s.audit_session_id) for s in new] == [(1001, "c1", None)]
    finally:
        w.close()


def test_a_scope_made_and_removed_between_two_reads(tmp_path: Path) -> None:
    """Reported as new and as gone when its slice was watched already; not
    at all when it came and went before the watcher saw its new slice
    (inotify watches one directory at a time): a limit of the logind mode."""
    root = tmp_path / "user.slice"
    root.mkdir()
    w = ScopeWatcher(root)
    try:
        scope = root / "user-7.slice" / "session-9.scope"
        scope.mkdir(parents=True)
        scope.rmdir()
        assert w.read() == ([], [])
        scope.mkdir()
        scope.rmdir()
        new, gone = w.read()
        assert [s.path for s in new] == [scope] and gone == [scope]
    finally:
        w.close()
