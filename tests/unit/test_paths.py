"""replay.events.PathResolver: lexical path resolution from the event stream."""

from __future__ import annotations

from typing import Any

import pytest

from replay.events import PathResolver, normalize, with_paths
from sessrec.event import TYPE_NAMES, Event, Exec, make
from sessrec.linux import AT_FDCWD, O_CLOEXEC

LEADER = 100
O_PATH_DIR = 0o10200000


def _e(t: int, pid: int, *body: Any) -> Event:
    return make([t, 1, pid, pid, 1, 0, b"c", 0, *body])


def fork(pid: int, child: int) -> Event:
    return _e(1, pid, child)


def exec_(pid: int, filename: bytes, ret: int = 0, syscall: int = 0) -> Event:
    return _e(2, pid, ret, filename, [filename], 1, pid, syscall)


def exit_(pid: int) -> Event:
    return _e(3, pid, 0)


def open_(pid: int, path: bytes, ret: int = 3, dirfd: int = AT_FDCWD, flags: int = 0) -> Event:
    return _e(4, pid, ret, 1, dirfd, path, flags, 0)


def chdir(pid: int, path: bytes, ret: int = 0) -> Event:
    return _e(6, pid, ret, -1, path)


def fchdir(pid: int, fd: int, ret: int = 0) -> Event:
    return _e(6, pid, ret, fd, b"")


@pytest.fixture
def r() -> PathResolver:
    return PathResolver(LEADER, b"/home/alice")


@pytest.mark.parametrize(
    ("path", "want"),
    [
        (b"/", b"/"),
        (b"//", b"/"),
        (b"///", b"/"),
        (b"//etc/passwd", b"/etc/passwd"),
        (b"/a/./b/../c/", b"/a/c"),
        (b"/../..", b"/"),
        (b"/a//b", b"/a/b"),
        (b"/.hidden/x", b"/.hidden/x"),
        (b"/a/b", b"/a/b"),
        (b"/\xff/x/..", b"/\xff"),
    ],
)
def test_normalize(path: bytes, want: bytes) -> None:
    assert normalize(path) == want


def test_absolute_and_relative(r: PathResolver) -> None:
    assert r.apply(open_(LEADER, b"/etc//hosts")) == b"/etc/hosts"
    assert r.apply(open_(LEADER, b"notes.txt")) == b"/home/alice/notes.txt"
    assert r.apply(open_(LEADER, b"./a/../b")) == b"/home/alice/b"
    assert r.apply(open_(LEADER, b"../../../..")) == b"/"
    assert r.apply(open_(LEADER, b"")) is None
    assert r.cwd(LEADER) == b"/home/alice"


def test_dirfd(r: PathResolver) -> None:
    assert r.apply(open_(LEADER, b"/etc/ssh", ret=5, flags=O_PATH_DIR)) == b"/etc/ssh"
    assert r.fd_path(LEADER, 5) == b"/etc/ssh"
    assert r.apply(open_(LEADER, b"sshd_config", ret=6, dirfd=5)) == b"/etc/ssh/sshd_config"
    assert r.apply(open_(LEADER, b"../hosts", ret=7, dirfd=5)) == b"/etc/hosts"
    assert r.apply(open_(LEADER, b"x", dirfd=42)) is None  # unknown descriptor
    assert r.apply(open_(LEADER, b"/abs", dirfd=42)) == b"/abs"  # dirfd ignored


def test_failed_open_resolves_but_records_no_fd(r: PathResolver) -> None:
    assert r.apply(open_(LEADER, b"missing", ret=-2)) == b"/home/alice/missing"
    assert r.fd_path(LEADER, -2) is None
    r.apply(open_(LEADER, b"/etc", ret=3))
    r.apply(open_(LEADER, b"nodir", ret=3, dirfd=99))  # fd 3 reused, path unknown
    assert r.fd_path(LEADER, 3) is None


def test_chdir(r: PathResolver) -> None:
    assert r.apply(chdir(LEADER, b"src/../build")) == b"/home/alice/build"
    assert r.cwd(LEADER) == b"/home/alice/build"
    assert r.apply(chdir(LEADER, b"/nonexistent", ret=-2)) == b"/nonexistent"
    assert r.cwd(LEADER) == b"/home/alice/build"  # failed: unchanged
    assert r.apply(chdir(LEADER, b"..")) == b"/home/alice"
    assert r.apply(open_(LEADER, b"f")) == b"/home/alice/f"


def test_fchdir(r: PathResolver) -> None:
    r.apply(open_(LEADER, b"/var/log", ret=4, flags=O_PATH_DIR))
    assert r.apply(fchdir(LEADER, 4)) == b"/var/log"
    assert r.apply(open_(LEADER, b"syslog")) == b"/var/log/syslog"
    assert r.apply(fchdir(LEADER, 9)) is None  # unknown descriptor: cwd unknown now
    assert r.cwd(LEADER) is None
    assert r.apply(open_(LEADER, b"syslog")) is None
    assert r.apply(chdir(LEADER, b"/tmp")) == b"/tmp"  # absolute: known again
    assert r.apply(open_(LEADER, b"x")) == b"/tmp/x"


def test_failed_fchdir_keeps_cwd(r: PathResolver) -> None:
    r.apply(open_(LEADER, b"/var", ret=4))
    assert r.apply(fchdir(LEADER, 4, ret=-20)) == b"/var"
    assert r.cwd(LEADER) == b"/home/alice"


def test_fork_inherits_a_copy(r: PathResolver) -> None:
    r.apply(open_(LEADER, b"/srv", ret=3, flags=O_PATH_DIR))
    r.apply(fork(LEADER, 200))
    assert r.cwd(200) == b"/home/alice"
    assert r.apply(open_(200, b"data", ret=4, dirfd=3)) == b"/srv/data"
    r.apply(chdir(200, b"/tmp"))
    assert r.cwd(200) == b"/tmp"
    assert r.cwd(LEADER) == b"/home/alice"  # the parent is unaffected
    assert r.fd_path(LEADER, 4) is None
    r.apply(fork(200, 201))
    assert r.apply(open_(201, b"x")) == b"/tmp/x"


def test_unknown_process(r: PathResolver) -> None:
    assert r.apply(open_(999, b"rel")) is None
    assert r.apply(open_(999, b"/abs/./x")) == b"/abs/x"
    r.apply(fork(999, 1000))  # a child of an unknown process: unknown too
    assert r.cwd(1000) is None
    r.apply(chdir(999, b"rel"))
    assert r.cwd(999) is None
    r.apply(chdir(999, b"/opt"))
    assert r.apply(open_(999, b"rel")) == b"/opt/rel"


def test_exec_drops_cloexec_descriptors(r: PathResolver) -> None:
    r.apply(open_(LEADER, b"/etc/a", ret=3, flags=O_CLOEXEC))
    r.apply(open_(LEADER, b"/etc", ret=4, flags=O_PATH_DIR))
    r.apply(open_(LEADER, b"/etc/c", ret=5, flags=O_CLOEXEC))
    r.apply(open_(LEADER, b"/etc/d", ret=5))  # fd 5 reused without O_CLOEXEC
    r.apply(exec_(LEADER, b"/bin/false", ret=-13))  # failed exec: nothing dropped
    assert r.fd_path(LEADER, 3) == b"/etc/a"
    r.apply(exec_(LEADER, b"/bin/true"))
    assert r.fd_path(LEADER, 3) is None
    assert r.fd_path(LEADER, 4) == b"/etc"
    assert r.fd_path(LEADER, 5) == b"/etc/d"
    assert r.apply(open_(LEADER, b"x", dirfd=3)) is None
    assert r.apply(open_(LEADER, b"hosts", dirfd=4)) == b"/etc/hosts"


def test_exec_paths(r: PathResolver) -> None:
    assert r.apply(exec_(LEADER, b"/usr//bin/ls")) == b"/usr/bin/ls"
    assert r.apply(exec_(LEADER, b"./configure", ret=-2)) == b"/home/alice/configure"
    # A failed execveat: its dirfd is not recorded.
    assert r.apply(exec_(LEADER, b"tool", ret=-2, syscall=1)) is None
    assert r.apply(exec_(LEADER, b"/abs/tool", ret=-2, syscall=1)) == b"/abs/tool"
    # A successful execveat shows as /dev/fd/N/name (or /dev/fd/N).
    r.apply(open_(LEADER, b"/opt/bin", ret=7, flags=O_PATH_DIR))
    assert r.apply(exec_(LEADER, b"/dev/fd/7/../sbin/x")) == b"/opt/sbin/x"
    r.apply(open_(LEADER, b"/opt/bin/prog", ret=8))
    assert r.apply(exec_(LEADER, b"/dev/fd/8")) == b"/opt/bin/prog"
    assert r.apply(exec_(LEADER, b"/dev/fd/99/x")) == b"/dev/fd/99/x"  # unknown fd
    assert r.apply(exec_(LEADER, b"/dev/fd/")) == b"/dev/fd"


def test_exit_forgets_the_process(r: PathResolver) -> None:
    r.apply(fork(LEADER, 300))
    r.apply(exit_(300))
    assert r.cwd(300) is None
    assert r.apply(open_(300, b"x")) is None  # a reused pid starts unknown


def test_other_events_resolve_nothing(r: PathResolver) -> None:
    assert r.apply(_e(5, LEADER, 0, 3, 1, 6, b"")) is None


def test_events_have_named_fields() -> None:
    e = open_(LEADER, b"x", flags=O_CLOEXEC | 1)
    assert (e.requested_path, e.dirfd, e.open_flags, e.ret) == (b"x", AT_FDCWD, O_CLOEXEC | 1, 3)
    x = make([*exec_(LEADER, b"/bin/x"), "a field of a newer minor version"])
    assert isinstance(x, Exec) and x.argv == [b"/bin/x"] and len(x) == len(Exec._fields)


def test_with_paths_on_the_golden_file() -> None:
    from srec_util import GOLDEN

    from replay.reader import open_session

    with open_session(GOLDEN) as s:
        events = list(with_paths(s))
    assert len(events) == 24
    execs = [(e, p) for e, p in events if isinstance(e, Exec)]
    assert [p for _, p in execs] == [b"/bin/bash", None, b"/usr/bin/env", b"/usr/bin/a.out"]
    assert execs[2][0].argc == 6
    assert [TYPE_NAMES[e.type] for e, _ in events[:3]] == ["exec", "open", "open"]


def test_past_its_budget_the_resolver_forgets_descriptors_then_processes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What the resolver holds is counted (paths, and each process and
    descriptor), and kept under PATH_BUDGET: a hostile file gave one process
    150,000 descriptors of 4 KiB paths, or 150,000 processes 4 KiB cwds."""
    from replay import events

    monkeypatch.setattr(events, "PATH_BUDGET", 100_000)
    r = PathResolver(LEADER, b"/home/alice")
    long = b"/" + b"p" * 999
    for fd in range(3, 203):  # 200 KB of descriptors: the oldest are forgotten
        r.apply(open_(LEADER, long + b"%d" % fd, ret=fd))
    assert r.fds_forgotten > 0 and r.procs_forgotten == 0
    assert r.fd_path(LEADER, 202) == long + b"202"  # the latest is kept
    assert r.cwd(LEADER) == b"/home/alice"
    for pid in range(1000, 1200):  # then 200 processes in 1 KB cwds each
        r.apply(fork(LEADER, pid))
        r.apply(chdir(pid, long + b"%d" % pid))
    assert r.procs_forgotten > 0
    assert r.cwd(1199) == long + b"1199"  # the newest are kept
    assert r.cwd(1000) is None and r.apply(open_(1000, b"rel")) is None  # the oldest not
    assert r.cwd(LEADER) == b"/home/alice"  # but the leader, the session's shell, is kept
    held = sum(1 + len(p.cwd or b"") + sum(map(len, p.fds.values()))
               for p in r._procs.values())
    assert held <= 100_000
    warning = r.limit_warning()
    assert warning is not None and f"forgot {r.fds_forgotten} descriptors" in warning
    assert PathResolver(LEADER, b"/").limit_warning() is None


def test_a_session_s_warnings_say_what_its_resolver_forgot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from replay import events
    from replay.base import Session

    class _Fake(Session):  # only its header and warnings are used
        def batches(self, follow: bool = False, poll_interval: float = 0.2
                    ) -> Any:
            return iter([])

        def close(self) -> None:
            pass

    monkeypatch.setattr(events, "PATH_BUDGET", 10_000)
    s = _Fake("f.srec", (2, 1), True)
    s.header = {"leader_pid": LEADER, "cwd": b"/"}  # type: ignore[typeddict-item]
    resolver = PathResolver.for_session(s)
    assert s.warnings() == []
    for fd in range(3, 100):
        resolver.apply(open_(LEADER, b"/" + b"q" * 500 + b"%d" % fd, ret=fd))
    (warning,) = s.warnings()
    assert "the path resolver keeps: it forgot" in warning


def test_resolved_opens_are_kept_by_base_and_request_within_a_budget() -> None:
    """apply_open keeps each resolution (the same paths come back again and
    again): by its base too, so that a chdir gives the new directory's path;
    and within a cache.Budget, so that distinct long paths stay bounded."""
    r = PathResolver(LEADER, b"/home/alice")
    first = r.apply(open_(LEADER, b"src/../x.c"))
    assert first == b"/home/alice/x.c" and r.apply(open_(LEADER, b"src/../x.c")) is first
    r.apply(chdir(LEADER, b"/tmp"))
    assert r.apply(open_(LEADER, b"src/../x.c")) == b"/tmp/x.c"
    assert r.apply(open_(LEADER, b"//etc/./passwd")) == b"/etc/passwd"
    for i in range(3000):  # 3,000 distinct paths of 4 KiB
        r.apply(open_(LEADER, b"/" + b"z" * 4000 + b"%d" % i, ret=-2))
    assert sum(len(p) for p in r._joined.values()) <= r._joined_kept.budget
