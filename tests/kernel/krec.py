"""Helpers of the kernel tier (its fixtures, in conftest.py, use them).

Recordings are made for real (BPF, a cgroup, the command's processes)
through the CLI, in process, and read back through the CLI too, as a user
would: `sessrec export --format jsonl` and `sessrec info --json`.

A Recording unpacks as (exit status, jsonl events, info dict) and also
carries stderr, the file's header and its path. check_invariants() holds for
any session (one session id, the recorder itself never traced, counts match
the export); the tests then assert their exact events.

progs/*.c are small C programs, built static so that they make no system
call the test does not expect (a dynamic binary opens ld.so.cache and libc
first).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from replay.reader import open_session
from sessrec.cli import main

PROGS_DIR = Path(__file__).resolve().parent / "progs"
REPO = Path(__file__).resolve().parents[2]
SESSREC = str(REPO / ".venv" / "bin" / "sessrec")
PYTHON = sys.executable
# Set by vagrant/kernel-matrix in an emulated (TCG) guest, where a BCC
# compile takes minutes, not seconds: it scales the tier's deadlines for
# work that compiles or waits on a daemon, never what the tests assert.
TIMEOUT_FACTOR = float(os.environ.get("SESSREC_TEST_TIMEOUT_FACTOR") or 1)
RFC3339_NS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
CONTROL = re.compile(r"[\x00-\x1f]")
Event = dict[str, Any]


@dataclass
class Recording:
    status: int
    events: list[Event]
    info: dict[str, Any]
    stderr: str
    header: dict[str, Any]
    path: Path

    def __iter__(self) -> Iterator[Any]:
        return iter((self.status, self.events, self.info))

    def of_type(self, typ: str, pid: int | None = None) -> list[Event]:
        return [e for e in self.events if e["type"] == typ and (pid is None or e["pid"] == pid)]

    def pid_of_exec(self, path: str) -> int:
        """The pid of the one successful exec of path."""
        pids = [e["pid"] for e in self.of_type("exec") if e["path"] == path
                and e["return_code"] == 0]
        assert len(pids) == 1, f"{path} exec'd {len(pids)} times"
        return pids[0]


class Recorder(Protocol):
    def __call__(self, cmd: Sequence[str | os.PathLike[str]], *flags: str,
                 name: str = ...) -> Recording: ...


def run_cli(*argv: str | os.PathLike[str]) -> tuple[int, str, str]:
    """sessrec.cli.main in process: (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = main([os.fspath(a) for a in argv], stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def export(path: str | os.PathLike[str]) -> tuple[list[Event], str]:
    """The jsonl export of a session file: (events, stderr)."""
    status, out, err = run_cli("export", path, "--format", "jsonl")
    assert status == 0, err
    # Whatever the programs passed, the export holds no control character
    # but the line ends: escape sequences in argv must not reach a terminal.
    assert not CONTROL.search(out.replace("\n", "")), "raw control character in the export"
    return [json.loads(line) for line in out.splitlines()], err


def info(path: str | os.PathLike[str]) -> dict[str, Any]:
    status, out, err = run_cli("info", path, "--json")
    assert status == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def header(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open_session(path, strict=False) as session:
        return dict(session.header)


def check_invariants(rec: Recording) -> None:
    """What holds for every recording, whatever the command did."""
    sid = rec.info["session_id"]
    me = os.getpid()
    for e in rec.events:
        assert e["session_id"] == sid
        assert RFC3339_NS.match(e["time"]), e["time"]
        assert e["pid"] != me, f"the recorder's own activity was recorded: {e}"
    if rec.info["complete"]:
        by_type: dict[str, int] = {}
        for e in rec.events:
            by_type[e["type"]] = by_type.get(e["type"], 0) + 1
        assert {k: v for k, v in rec.info["counts"].items() if v} == by_type


def record_into(directory: Path, cmd: Sequence[str | os.PathLike[str]], *flags: str,
                name: str = "session") -> Recording:
    """Records cmd into directory/<name>.srec through `sessrec record`, reads
    it back and checks the invariants."""
    path = directory / f"{name}.srec"
    status, _, err = run_cli("record", *flags, "-o", path, "--", *cmd)
    assert path.exists(), f"record wrote no file: {err}"
    events, _ = export(path)
    rec = Recording(status, events, info(path), err, header(path), path)
    check_invariants(rec)
    # Nothing left behind: record removes the session's cgroup.
    assert not Path(rec.header["cgroup"]).exists(), "the session cgroup is still there"
    return rec


def write_script(path: Path, text: str) -> Path:
    """A Python script for the venv interpreter."""
    path.write_text(text)
    return path


def kill_cgroup(cgroup: Path) -> None:
    """Ends what a killed recorder left running, and removes its cgroup."""
    if not cgroup.exists():
        return
    if (cgroup / "cgroup.kill").exists():
        (cgroup / "cgroup.kill").write_text("1")
    else:  # before 5.14: one process at a time
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while True:
        try:
            cgroup.rmdir()
            return
        except OSError:
            assert time.monotonic() < deadline, f"cannot remove {cgroup}"
            time.sleep(0.02)


@contextlib.contextmanager
def live_recording(out: Path, marker: Path, cmd: Sequence[str], *flags: str
                   ) -> Iterator[subprocess.Popen[bytes]]:
    """`sessrec record [flags] -o out -- cmd` in a process of its own, once
    the file has its header and the command has created marker. At the end
    the recorder is killed if it still runs, and the session's cgroup (left
    behind by a killed recorder) emptied and removed."""
    recorder = subprocess.Popen([SESSREC, "record", *flags, "-o", str(out), "--", *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cgroup: Path | None = None
    try:
        while not (out.exists() and out.stat().st_size > 0 and marker.exists()):
            assert recorder.poll() is None, recorder.communicate()
            time.sleep(0.05)
        cgroup = Path(header(out)["cgroup"])
        yield recorder
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        if cgroup is not None:
            kill_cgroup(cgroup)


# An unprivileged euid: uid 65534 in a new user namespace. Unlike the real
# nobody, files are still reached as their owner outside, so the test does
# not depend on the permissions of the directory the repository is in (a CI
# clone may sit in a 0700 temporary directory); SO_PEERCRED still sees root.
NOBODY = ["unshare", "--user", "--map-user=65534", "--map-group=65534"]


def run_as_nobody(code: str, *, with_sessrec: bool = False,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Python `code` run by the real user nobody (uid 65534 in the host's
    namespace, so that file modes and SO_PEERCRED apply), with the system's
    interpreter and, when asked, a copy of the sessrec package (its client
    side needs only the standard library) readable by all: the checkout may
    sit under a directory nobody cannot enter (a CI clone in a 0700
    temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="sessrec-nobody-", dir="/tmp") as d:
        os.chmod(d, 0o755)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
        if with_sessrec:
            shutil.copytree(REPO / "sessrec", Path(d) / "sessrec",
                            ignore=shutil.ignore_patterns("__pycache__"))
            for root, dirs, files in os.walk(d):
                for name in dirs + files:
                    os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
            env["PYTHONPATH"] = d
        return subprocess.run(["runuser", "-u", "nobody", "--", os.path.realpath(PYTHON),
                               "-c", code], capture_output=True, text=True, cwd="/",
                              timeout=timeout, env=env)
