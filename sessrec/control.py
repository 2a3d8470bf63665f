"""The daemon's control protocol, version 1 (docs/CONTROL.md): the client,
and the framing that the server (recorder/daemon.py) shares with it.

JSON lines over a unix stream socket: one request object per line, one reply
object per line, both carrying "v": 1. Needs neither BCC nor root to import,
so that the PAM helper and `sessrec status` can use it anywhere.
"""

from __future__ import annotations

import array
import json
import os
import select
import socket
from collections.abc import Sequence
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

# Descriptors ride on the request line that needs them (SCM_RIGHTS, sent
# with the line in one sendmsg): a `start` with "output_fd": true carries
# the session file. The daemon reads at most RECV_FDS with any read; a
# request with fewer or more than it needs, or ancillary data that did not
# fit, is refused and every descriptor closed.
RECV_FDS: Final = 4
RECV_ANCILLARY: Final = socket.CMSG_SPACE(RECV_FDS * 4)

OPS: Final = ("start", "end", "list", "status", "reattach")
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


def recv_with_fds(sock: socket.socket, size: int) -> tuple[bytes, list[int], bool]:
    """One read of a connection for the daemon: (data, the descriptors that
    came with it, close-on-exec, and whether ancillary data was cut short:
    more than RECV_FDS descriptors, whose excess the kernel closed). They
    belong to the request line that holds the last byte of data: the kernel
    ends a read inside the write that carried them."""
    data, anc, flags, _ = sock.recvmsg(size, RECV_ANCILLARY, socket.MSG_CMSG_CLOEXEC)
    fds: list[int] = []
    for level, kind, raw in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.extend(array.array("i", raw[:len(raw) - len(raw) % 4]))
    return data, fds, bool(flags & socket.MSG_CTRUNC)


class ConnectionLost(ControlError):
    """The daemon went away (killed, restarted) while a request was on its way."""

    def __init__(self, message: str) -> None:
        super().__init__(E_FAILED, message)


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

    def request(self, op: str, *, fds: Sequence[int] = (), **fields: Any) -> dict[str, Any]:
        """Sends one request, returns the reply object (ok true), or raises
        ControlError with the daemon's error code. fds: descriptors the
        request carries (SCM_RIGHTS, with its first byte); they stay open here."""
        try:
            data = encode({"op": op, **fields})
            if fds:
                sent = self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                    array.array("i", fds).tobytes())])
                data = data[sent:]
            if data:
                self._sock.sendall(data)
            line = self._readline()
        except TimeoutError:
            raise ControlError(E_FAILED, f"no answer to {op!r} in time") from None
        except OSError as e:
            raise ConnectionLost(f"connection lost during {op!r}: {e.strerror or e}") from None
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
                    if _refused_peer():
                        raise ControlError(E_PERMISSION, "the daemon closed the connection")
                    raise ConnectionLost("the daemon closed the connection")
                break
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def lost(self) -> bool:
        """Whether the daemon has closed the connection (it went away), without
        waiting: a record client asks this while its command runs."""
        # select first: a socket with a timeout waits for data in recv().
        if not select.select([self._sock], [], [], 0)[0]:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

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
            fds: Sequence[int] = (), **fields: Any) -> dict[str, Any]:
    """One request on a new connection: `request("status")`,
    `request("start", pid=1234, kind="pam", login={...})`."""
    with Connection(socket_path, timeout) as c:
        return c.request(op, fds=fds, **fields)


def running(socket_path: str = DEFAULT_SOCKET) -> bool:
    """Whether a daemon answers on socket_path (a stale socket file does not)."""
    try:
        request("status", socket_path=socket_path, timeout=5.0)
    except (DaemonNotRunning, ControlError):
        return False
    return True
