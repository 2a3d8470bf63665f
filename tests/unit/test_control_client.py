"""The control protocol's client side and framing, without a daemon."""

from __future__ import annotations

import json
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
