"""Starting and stopping a real `sessrec daemon` in the kernel tier.

Each daemon gets its own directory (socket, output, config) and its own
cgroup root (sessrec-test-<pid>-<n>), so that tests never meet another
daemon on this machine, and is started as a user would: `python -m sessrec
daemon --config FILE --log-format json`, its log in a file the tests read.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from krec import TIMEOUT_FACTOR, export, header, info

from sessrec import control

# compiling the programs takes seconds, more on a loaded machine
READY_TIMEOUT = 120.0 * TIMEOUT_FACTOR
_n = itertools.count()


@dataclass
class Daemon:
    dir: Path
    config: Path
    socket: str
    out: Path
    cgroup_root: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, hide: Path | None = None) -> Daemon:
        """hide: the daemon runs in a mount namespace of its own, where an
        empty tmpfs covers that directory (it cannot see what is in it)."""
        log = open(self.log_path, "ab")
        wrap = [] if hide is None else [
            "unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o mode=0700 sessrec-test "$0" && exec "$@"', str(hide)]
        self.proc = subprocess.Popen(
            [*wrap, sys.executable, "-m", "sessrec", "daemon", "--config", str(self.config),
             "--log-format", "json"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited {self.proc.returncode}: "
                                     + self.log_path.read_text())
            if any(e["event"] == "started" and e["pid"] == self.proc.pid for e in self.log()):
                return
            time.sleep(0.1)
        raise AssertionError("the daemon did not start: " + self.log_path.read_text())

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        return control.request(op, socket_path=self.socket, timeout=60.0 * TIMEOUT_FACTOR,
                               **fields)

    def connect(self) -> socket.socket:
        """A raw connection to the control socket, for tests of bad input."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(self.socket)
        return s

    def fds(self) -> list[tuple[int, int]]:
        """(device, inode) of each descriptor the daemon holds."""
        assert self.proc is not None
        out = []
        for n in os.listdir(f"/proc/{self.proc.pid}/fd"):
            try:
                st = os.stat(f"/proc/{self.proc.pid}/fd/{n}")
            except OSError:
                continue  # closed meanwhile
            out.append((st.st_dev, st.st_ino))
        return sorted(out)

    def log(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "?", "line": line})
        return out

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log() if e.get("event") == name]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def wait_ended(self, session: str, timeout: float = 60.0) -> dict[str, Any]:
        """The summary of a session once it has ended by itself."""
        deadline = time.monotonic() + timeout * TIMEOUT_FACTOR
        while time.monotonic() < deadline:
            live = {s["session"] for s in self.request("list")["sessions"]}
            if session not in live:
                return self.request("end", session=session)
            time.sleep(0.1)
        raise AssertionError(f"session {session} did not end")

    def cleanup(self) -> None:
        """Stops the daemon and removes the cgroups it left (a failed test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        root = cgroup2() / self.cgroup_root
        if root.is_dir():
            for d in sorted(root.iterdir(), reverse=True):
                if d.is_dir():
                    for pid in (d / "cgroup.procs").read_text().split():
                        (cgroup2() / "cgroup.procs").write_text(pid)
                    rmdir(d)
            try:
                root.rmdir()
            except OSError:
                pass
        shutil.rmtree(Path(self.socket).parent, ignore_errors=True)


def rmdir(d: Path, tries: int = 300) -> None:
    """Removes a cgroup directory: EBUSY until its exiting tasks are gone."""
    for _ in range(tries):
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def cgroup2() -> Path:
    from recorder.cgroup import cgroup2_mount

    return cgroup2_mount().path


def make_daemon(base: Path, extra: str = "", name: str = "d", ring: str = "1MiB") -> Daemon:
    d = base / name
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o755)
    # Not under pytest's 0700 directories: the non-root client tests must
    # be able to reach the socket when its mode allows it.
    sock = Path(tempfile.mkdtemp(prefix="sessrec-test-run-")) / "control.sock"
    out = d / "out"
    root = f"sessrec-test-{os.getpid()}-{next(_n)}"
    cfg = d / "sessrec.toml"
    cfg.write_text(f'output_dir = "{out}"\ncontrol_socket = "{sock}"\n'
                   f'cgroup_root = "{root}"\nring_size = "{ring}"\n{extra}')
    return Daemon(dir=d, config=cfg, socket=str(sock), out=out, cgroup_root=root,
                  log_path=d / "daemon.log")


def read_reply(s: socket.socket) -> dict[str, Any]:
    """One reply line from a raw connection."""
    buf = b""
    while not buf.endswith(b"\n"):
        data = s.recv(65536)
        assert data, "connection closed without a reply"
        buf += data
    result: dict[str, Any] = json.loads(buf)
    return result


def assert_same_session(via: Path, alone: Path, daemon_pid: int) -> None:
    """A `record` through the daemon (via) and one without it (alone) of
    the same command wrote the same file, but for who recorded it."""
    hv, ha = header(via), header(alone)
    assert hv["recorder"]["pid"] == daemon_pid
    assert ha["recorder"]["pid"] == os.getpid()
    assert set(hv) == set(ha) and hv["kind"] == ha["kind"] == "record"
    for k in ("command", "cwd", "user", "uid", "limits", "abi_version", "format", "hostname"):
        assert hv[k] == ha[k], k
    iv, ia = info(via), info(alone)
    for k in ("counts", "lost", "truncated", "exit_status", "end_reason", "complete",
              "command", "format_version"):
        assert iv[k] == ia[k], k

    def shape(path: Path) -> list[tuple[object, ...]]:
        events, _ = export(path)
        return [(e["type"], e.get("argv"), e.get("path"), e.get("return_code"))
                for e in events]

    assert shape(via) == shape(alone)


def gated(argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
    """A process that waits for a line on stdin before it execs argv: the
    test starts its session first, so everything argv does is recorded."""
    return subprocess.Popen(["sh", "-c", 'read _ && exec "$@"', "sh", *argv],
                            stdin=subprocess.PIPE, **kw)


def release(p: subprocess.Popen[bytes]) -> None:
    assert p.stdin is not None
    p.stdin.write(b"go\n")
    p.stdin.close()
