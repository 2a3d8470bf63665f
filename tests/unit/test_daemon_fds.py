"""What the daemon accepts as a session file passed by its client, and how
many descriptors a request may carry (recorder/daemon.py; the kernel tier's
test_daemon_fd.py sends them to a real daemon)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recorder import daemon
from sessrec import control
from sessrec.errors import SessrecError


def _open(tmp_path: Path, how: str) -> int:
    f = tmp_path / "f"
    if how == "pipe":
        r, w = os.pipe()
        os.close(r)
        return w
    if how == "dir":
        return os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    f.write_bytes(b"abc" if how in ("full", "read-only") else b"")
    flags = {"read-only": os.O_RDONLY, "append": os.O_WRONLY | os.O_APPEND,
             "full": os.O_WRONLY, "empty": os.O_WRONLY, "path": os.O_PATH}[how]
    return os.open(f, flags)


@pytest.mark.parametrize(("how", "why"), [
    ("pipe", "is not a regular file"),
    ("dir", "is not a regular file"),
    ("read-only", "is not open for writing"),
    ("path", "is not open for writing"),
    ("append", "is open for appending"),
    ("full", "is not empty (3 bytes)"),
])
def test_a_bad_session_file_is_refused_and_closed(tmp_path: Path, how: str, why: str) -> None:
    fd = _open(tmp_path, how)
    with pytest.raises(SessrecError) as e:
        daemon._passed_output(fd)
    assert str(e.value) == f"the descriptor passed for the session file {why}"
    with pytest.raises(OSError):
        os.fstat(fd)  # closed


def test_the_session_file_is_taken_and_on_reattach_must_be_the_same(tmp_path: Path) -> None:
    fd = _open(tmp_path, "empty")
    st = os.fstat(fd)
    with daemon._passed_output(fd) as f:
        f.write(b"x")
    fd = os.open(tmp_path / "f", os.O_WRONLY)
    with daemon._passed_output(fd, (st.st_dev, st.st_ino)) as f:
        assert f.fileno() == fd  # not empty, but the session's own file
    other = tmp_path / "g"
    other.write_bytes(b"")
    with pytest.raises(SessrecError, match="is not the session's file"):
        daemon._passed_output(os.open(other, os.O_WRONLY), (st.st_dev, st.st_ino))


@pytest.mark.parametrize(("req", "n", "words"), [
    ({"op": "start", "output_fd": True}, 0, "carries 0 descriptor(s) (SCM_RIGHTS) and needs 1"),
    ({"op": "start", "output_fd": True}, 2, "carries 2 descriptor(s)"),
    ({"op": "start"}, 1, "needs 0"),
    ({"op": "status"}, 1, "needs 0"),
    ({"op": "reattach", "session": "s"}, 0, "needs 1: the session file"),
    ({"op": "start", "output_fd": True}, -1, "too much ancillary data"),
])
def test_a_request_carries_exactly_the_descriptors_it_needs(
        req: dict[str, object], n: int, words: str) -> None:
    fds = [-1] if n < 0 else [100 + i for i in range(n)]
    with pytest.raises(control.ControlError) as e:
        daemon._check_fds(req, fds)
    assert e.value.code == control.E_BAD_REQUEST and words in str(e.value)


@pytest.mark.parametrize(("req", "n"), [({"op": "start", "output_fd": True}, 1),
                                        ({"op": "start"}, 0), ({"op": "reattach"}, 1)])
def test_the_right_descriptors_pass(req: dict[str, object], n: int) -> None:
    daemon._check_fds(req, list(range(100, 100 + n)))


def test_a_dead_client_is_not_alive() -> None:
    me = os.getpid()
    start = daemon.proc_start(me)
    assert start is not None and daemon._alive([me, start])
    assert not daemon._alive([me, start + 1])  # the same pid, another process
    assert not daemon._alive(None) and not daemon._alive([2**22 + 1, 0])
