"""The control protocol's client side and framing, without a daemon."""

from __future__ import annotations

import array
import fcntl
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from sessrec import control


def test_encode_is_one_ascii_line_with_the_version() -> None:
    line = control.encode({"op": "start", "login": {"user": "ali\nce\u00e9"}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"v": 1, "op": "start", "login": {"user": "ali\nce\u00e9"}}


@pytest.mark.parametrize(("line", "code"), [
    (b"garbage", control.E_BAD_JSON),
    (b"\xff\xfe", control.E_BAD_JSON),
    (b"[1, 2]", control.E_BAD_JSON),
    (b"[" * 100000, control.E_BAD_JSON),
    (b'{"op": "status"}', control.E_VERSION),
    (b'{"v": 2, "op": "status"}', control.E_VERSION),
    (b'{"v": true, "op": "status"}', control.E_VERSION),
])
def test_decode_refuses(line: bytes, code: str) -> None:
    with pytest.raises(control.ControlError) as e:
        control.decode(line)
    assert e.value.code == code


def test_no_socket_is_daemon_not_running(tmp_path: Path) -> None:
    path = str(tmp_path / "control.sock")
    with pytest.raises(control.DaemonNotRunning) as e:
        control.request("status", socket_path=path)
    assert str(e.value) == f"sessrec daemon is not running (no socket at {path})"
    assert not control.running(path)


def test_stale_socket_is_daemon_not_running(tmp_path: Path) -> None:
    path = str(tmp_path / "control.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays, nobody listens: a killed daemon's socket
    with pytest.raises(control.DaemonNotRunning, match="nothing listens on it"):
        control.request("status", socket_path=path)


def _serve_once(path: str, reply: bytes) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        with conn, srv:
            buf = b""
            while b"\n" not in buf:
                buf += conn.recv(4096)
            conn.sendall(reply)

    t = threading.Thread(target=run)
    t.start()
    return t


def test_request_returns_the_reply_and_raises_error_replies(tmp_path: Path) -> None:
    path = str(tmp_path / "a.sock")
    t = _serve_once(path, control.encode({"ok": True, "sessions": []}))
    assert control.request("list", socket_path=path) == {"v": 1, "ok": True, "sessions": []}
    t.join()
    path = str(tmp_path / "b.sock")
    t = _serve_once(path, control.encode(control.error_reply(control.E_NOT_FOUND, "no session x")))
    with pytest.raises(control.ControlError) as e:
        control.request("end", socket_path=path, session="x")
    assert e.value.code == control.E_NOT_FOUND and "no session x" in str(e.value)
    t.join()


def test_a_request_carries_its_descriptors_with_its_line(tmp_path: Path) -> None:
    """Descriptors go with the request line (SCM_RIGHTS) and come out of
    the daemon's read of that line, close-on-exec."""
    path = str(tmp_path / "fd.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    got: list[tuple[bytes, list[int], bool]] = []

    def run() -> None:
        conn, _ = srv.accept()
        with conn, srv:
            got.append(control.recv_with_fds(conn, 65536))
            conn.sendall(control.encode({"ok": True}))

    t = threading.Thread(target=run)
    t.start()
    r, w = os.pipe()
    try:
        with control.Connection(path) as c:
            assert c.request("start", fds=[w], pid=2) == {"v": 1, "ok": True}
            t.join()
            assert c.lost()  # the server closed the connection
        [(data, fds, cut)] = got
        assert data == control.encode({"op": "start", "pid": 2}) and not cut
        assert len(fds) == 1 and os.fstat(fds[0]).st_ino == os.fstat(w).st_ino
        assert fcntl.fcntl(fds[0], fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        os.close(fds[0])
    finally:
        os.close(r)
        os.close(w)


def test_more_descriptors_than_a_read_takes_are_cut_and_closed() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    r, w = os.pipe()
    with a, b:
        a.sendmsg([b"x\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                              array.array("i", [w] * 10).tobytes())])
        data, fds, cut = control.recv_with_fds(b, 100)
        assert data == b"x\n" and cut and len(fds) == control.RECV_FDS
        for fd in fds:
            os.close(fd)
    os.close(w)
    assert os.read(r, 1) == b""  # every copy of the write end is closed: EOF
    os.close(r)


def test_lost_is_false_while_the_daemon_holds_the_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "l.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    with srv, control.Connection(path) as c:
        conn, _ = srv.accept()
        assert not c.lost()
        conn.close()
        assert c.lost()
