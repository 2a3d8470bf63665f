"""The daemon's control protocol, version 1 (docs/CONTROL.md): the client,
and the framing that the server (recorder/daemon.py) shares with it.

JSON lines over a unix stream socket: one request object per line, one reply
object per line, both carrying "v": 1. Needs neither BCC nor root to import,
so that the PAM helper and `sessrec status` can use it anywhere.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Final

from sessrec.errors import SessrecError

VERSION: Final = 1
DEFAULT_SOCKET: Final = "/run/sessrec/control.sock"
# A request line longer than this is refused ("too-large") and the connection
# closed: every valid request is far smaller (a start with a login map is
# under 2 KiB), and the daemon must not buffer what a client sends.
MAX_LINE: Final = 64 * 1024
# A connection that has not sent a complete request within this many seconds
# is closed: a client that connects and never writes costs one descriptor
# for this long, never the daemon's attention.
IDLE_TIMEOUT: Final = 10.0

OPS: Final = ("start", "end", "list", "status")
KINDS: Final = ("record", "pam", "logind")

# Error codes of a reply {"v": 1, "ok": false, "error": {"code", "message"}}.
E_BAD_JSON: Final = "bad-json"            # not a JSON object on one UTF-8 line
E_TOO_LARGE: Final = "too-large"          # a line longer than MAX_LINE
E_VERSION: Final = "unsupported-version"  # "v" missing or not 1
E_BAD_REQUEST: Final = "bad-request"      # a field missing, of the wrong type or value
E_UNKNOWN_OP: Final = "unknown-op"
E_NOT_FOUND: Final = "not-found"          # no such session, or no such pid
E_PERMISSION: Final = "permission"        # the peer is not uid 0
E_FAILED: Final = "failed"                # the daemon could not do it (named in the message)


class DaemonNotRunning(SessrecError):
    """No daemon answers on the control socket."""

    exit_status = 3

    def __init__(self, socket_path: str, why: str = "") -> None:
        self.socket_path = socket_path
        detail = f": {why}" if why else ""
        super().__init__(f"sessrec daemon is not running (no socket at {socket_path}{detail})")


class ControlError(SessrecError):
    """The daemon answered with an error reply, or broke the protocol."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"sessrec daemon: {message} ({code})")


def encode(obj: dict[str, Any]) -> bytes:
    """One protocol line: compact JSON, ASCII only (so no line breaks inside)."""
    return json.dumps({"v": VERSION, **obj}, separators=(",", ":")).encode() + b"\n"


def error_reply(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


def decode(line: bytes) -> dict[str, Any]:
    """A received line as an object, or ControlError(E_BAD_JSON/E_VERSION)."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ControlError(E_BAD_JSON, "not a JSON object on one UTF-8 line") from None
    if not isinstance(obj, dict):
        raise ControlError(E_BAD_JSON, "not a JSON object on one UTF-8 line")
    if obj.get("v") != VERSION or type(obj.get("v")) is not int:
        raise ControlError(E_VERSION, f'this daemon speaks protocol "v": {VERSION}')
    return obj


class Connection:
    """A client connection, for several requests in turn (a `record` keeps
    one open for its session: the daemon ends a record session whose client
    went away)."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, timeout: float | None = 30.0) -> None:
        self.socket_path = socket_path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            self._sock.close()
            raise DaemonNotRunning(socket_path, "" if isinstance(e, FileNotFoundError)
                                   else "nothing listens on it") from None
        except PermissionError:
            self._sock.close()
            raise ControlError(E_PERMISSION, f"cannot connect to {socket_path}: "
                               "permission denied (the control socket is root's)") from None
        except OSError as e:
            self._sock.close()
            raise DaemonNotRunning(socket_path, e.strerror or str(e)) from None
        self._buf = b""

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Sends one request, returns the reply object (ok true), or raises
        ControlError with the daemon's error code."""
        try:
            self._sock.sendall(encode({"op": op, **fields}))
            line = self._readline()
        except TimeoutError:
            raise ControlError(E_FAILED, f"no answer to {op!r} in time") from None
        except OSError as e:
            raise ControlError(E_FAILED, f"connection lost during {op!r}: "
                               f"{e.strerror or e}") from None
        reply = decode(line)
        if reply.get("ok") is not True:
            err = reply.get("error")
            if not isinstance(err, dict):
                raise ControlError(E_FAILED, "malformed error reply")
            raise ControlError(str(err.get("code")), str(err.get("message")))
        return reply

    def _readline(self) -> bytes:
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_LINE * 16:
                raise ControlError(E_TOO_LARGE, "reply too long")
            data = self._sock.recv(65536)
            if not data:
                if self._buf == b"":
                    raise ControlError(E_PERMISSION if _refused_peer() else E_FAILED,
                                       "the daemon closed the connection")
                break
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refused_peer() -> bool:
    # The daemon closes a non-root peer's connection after its error reply;
    # without one, a non-root caller was most likely refused.
    return os.geteuid() != 0


def request(op: str, *, socket_path: str = DEFAULT_SOCKET, timeout: float | None = 30.0,
            **fields: Any) -> dict[str, Any]:
    """One request on a new connection: `request("status")`,
    `request("start", pid=1234, kind="pam", login={...})`."""
    with Connection(socket_path, timeout) as c:
        return c.request(op, **fields)


def running(socket_path: str = DEFAULT_SOCKET) -> bool:
    """Whether a daemon answers on socket_path (a stale socket file does not)."""
    try:
        request("status", socket_path=socket_path, timeout=5.0)
    except (DaemonNotRunning, ControlError):
        return False
    return True
