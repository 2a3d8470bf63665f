"""connect: destination, family, protocol and result, for TCP and UDP over
IPv4 and IPv6 and for unix sockets, against endpoints the test itself runs
outside the session (loopback only)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from krec import PYTHON, Recorder, write_script

pytestmark = pytest.mark.kernel

SCRIPT = """
import socket, sys
p4, p6, r4, r6 = map(int, sys.argv[1:5])
unix_path, abstract, missing = sys.argv[5:8]
keep = []

def connect(family, kind, addr, blocking=True):
    s = socket.socket(family, kind)
    s.setblocking(blocking)
    keep.append(s)
    return s.connect_ex(addr)

results = [
    connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", p4)),
    connect(socket.AF_INET6, socket.SOCK_STREAM, ("::1", p6)),
    connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", r4)),
    connect(socket.AF_INET6, socket.SOCK_STREAM, ("::1", r6)),
    connect(socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", p4), blocking=False),
    connect(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 9)),
    connect(socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 9)),
    connect(socket.AF_UNIX, socket.SOCK_STREAM, unix_path),
    connect(socket.AF_UNIX, socket.SOCK_DGRAM, "\\0" + abstract),
    connect(socket.AF_UNIX, socket.SOCK_STREAM, missing),
]
print(results)
"""


@pytest.fixture
def endpoints(tmp_path: Path) -> Iterator[dict[str, object]]:
    """Listeners (and ports that refuse) in the test process, outside the
    session. A bound TCP socket that does not listen refuses connections."""
    with ExitStack() as stack:
        def sock(family: int, kind: int) -> socket.socket:
            return stack.enter_context(socket.socket(family, kind))

        ep: dict[str, object] = {}
        for name, family, host in (("4", socket.AF_INET, "127.0.0.1"),
                                   ("6", socket.AF_INET6, "::1")):
            listener = sock(family, socket.SOCK_STREAM)
            listener.bind((host, 0))
            listener.listen(8)
            refuser = sock(family, socket.SOCK_STREAM)
            refuser.bind((host, 0))
            ep["listen" + name] = listener
            ep["p" + name] = listener.getsockname()[1]
            ep["r" + name] = refuser.getsockname()[1]
        unix_path = tmp_path.resolve() / "stream.sock"
        unix = sock(socket.AF_UNIX, socket.SOCK_STREAM)
        unix.bind(str(unix_path))
        unix.listen(8)
        abstract = f"sessrec-test-{uuid.uuid4()}"
        dgram = sock(socket.AF_UNIX, socket.SOCK_DGRAM)
        dgram.bind("\0" + abstract)
        ep.update(unix_path=str(unix_path), unix=unix, abstract=abstract,
                  missing=str(tmp_path.resolve() / "nobody-listens.sock"))
        yield ep


def test_connects(record: Recorder, endpoints: dict[str, object], tmp_path: Path) -> None:
    ep = endpoints
    script = write_script(tmp_path / "connects.py", SCRIPT)
    args = [str(ep[k]) for k in ("p4", "p6", "r4", "r6", "unix_path", "abstract", "missing")]

    status, events, info = record([PYTHON, str(script), *args])

    assert status == 0
    connects = [e for e in events if e["type"] == "connect"]
    assert [(e["family"], e["protocol"], e["dst_addr"], e["dst_port"], e["return_code"])
            for e in connects] == [
        ("inet", "tcp", "127.0.0.1", ep["p4"], 0),
        ("inet6", "tcp", "::1", ep["p6"], 0),
        ("inet", "tcp", "127.0.0.1", ep["r4"], -111),
        ("inet6", "tcp", "::1", ep["r6"], -111),
        ("inet", "tcp", "127.0.0.1", ep["p4"], -115),
        ("inet", "udp", "127.0.0.1", 9, 0),
        ("inet6", "udp", "::1", 9, 0),
        ("unix", "stream", ep["unix_path"], None, 0),
        ("unix", "dgram", "@" + str(ep["abstract"]), None, 0),
        ("unix", "stream", ep["missing"], None, -2),
    ]
    python = connects[0]["pid"]
    assert {e["pid"] for e in connects} == {python}
    assert info["counts"]["connect"] == 10
    # The connections the events call accepted really reached the listeners.
    for name in ("listen4", "listen6", "unix"):
        listener = ep[name]
        assert isinstance(listener, socket.socket)
        listener.settimeout(2)
        conn, _ = listener.accept()
        conn.close()
