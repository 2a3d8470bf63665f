"""auditd as the bench's comparison: the real daemon from Debian, with syscall
rules that cover what sessrec records, for one audit session.

For each measured run, `BenchAuditd` (a context manager):
  1. takes an exclusive flock on /run/sessrec-audit.lock (other tests that
     change audit rules take it too);
  2. saves the kernel's audit rules (`auditctl -l`) and settings (`auditctl -s`)
     and notes the running auditd and its command line;
  3. stops that auditd and starts one with a copy of the machine's
     auditd.conf that logs into the bench's own directory and never rotates
     (max_log_file_action = ignore), so no record is rotated away and the
     machine's log is left alone; raises the kernel backlog (`auditctl -b`);
  4. adds the rule for the run's audit session (`watch`); the workload runs
     in a fresh audit session (`timed -a` writes /proc/self/loginuid);
  5. on the way out, always: stops the bench's auditd, starts the machine's
     again with its own command line, deletes every rule, re-adds the saved
     ones, restores the saved settings, and releases the lock.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TextIO

from benchlib.common import BenchError, proc_cpu_ns
from recorder.audit import pid_alive

LOCK_PATH = "/run/sessrec-audit.lock"
KEY = "sessrec-bench"
# What sessrec records, as syscalls: exec, fork (every way to make a process
# or thread), exit, open, connect, and chdir (which sessrec needs for paths).
# clone3, chdir and fchdir are added to the list in issue 5 so the rule
# covers the same activity: glibc's posix_spawn and pthread_create use clone3.
SYSCALLS = ("execve,execveat,open,openat,openat2,creat,connect,"
            "clone,clone3,fork,vfork,exit_group,chdir,fchdir")
# x86_64 syscall numbers -> sessrec's event type names.
SYSCALL_TYPES = {
    59: "exec", 322: "exec",
    2: "open", 257: "open", 437: "open", 85: "open",
    42: "connect",
    56: "fork", 435: "fork", 57: "fork", 58: "fork",
    231: "exit",
    80: "chdir", 81: "chdir",
}
BACKLOG = 65536
# Settings `auditctl -s` shows and the flag that sets each.
_SETTINGS = {"failure": "-f", "rate_limit": "-r", "backlog_limit": "-b",
             "backlog_wait_time": "--backlog_wait_time"}


class Interference(BenchError):
    """Another program changed auditd during a measured run."""


def auditctl(*args: str) -> str:
    r = subprocess.run(["auditctl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"auditctl {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def status() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in auditctl("-s").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def rules() -> list[str]:
    lines = [ln for ln in auditctl("-l").splitlines() if ln.strip()]
    return [] if lines == ["No rules"] else lines


def _kauditd_pid() -> int | None:
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() == "kauditd":
                    return int(p.name)
            except OSError:
                continue
    return None


def available() -> str | None:
    """Why the auditd configuration cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("auditd", "auditctl"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install auditd)"
    try:
        s = status()
    except (BenchError, OSError) as e:
        return f"auditctl -s failed: {e}"
    if s.get("enabled") == 2:
        return "the audit configuration is locked (enabled 2) until reboot"
    return None


@dataclass
class LogCount:
    events: dict[str, int]  # SYSCALL records of the session, per sessrec event type
    syscall_records: int    # the same, all together
    records: int            # every record line written during the run
    bytes: int              # bytes written to the log during the run


class BenchAuditd:
    def __init__(self, workdir: Path, log: TextIO | None = None) -> None:
        self.dir = workdir / "auditd"
        self.log_file = self.dir / "audit.log"
        self._say = log
        self._lock_fd: int | None = None
        self._saved_rules: list[str] = []
        self._saved_status: dict[str, int] = {}
        self._machine_cmd: list[str] | None = None
        self._pid: int | None = None
        self._kauditd = _kauditd_pid()
        self._watched: list[str] = []

    # -- the period in which audit rules and auditd are the bench's ---------

    def __enter__(self) -> BenchAuditd:
        self._lock_fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._saved_rules = rules()
            self._saved_status = status()
            pid = self._saved_status.get("pid", 0)
            if pid and pid_alive(pid):  # not one killed but still registered
                self._machine_cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode() \
                    .rstrip("\0").split("\0")
                self._stop(pid)
            self._start_own()
            auditctl("-b", str(BACKLOG))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Restores everything, each step on its own: one failing (another
        program changed auditd meanwhile) does not stop the others."""
        problems: list[str] = []

        def step(what: str, fn: Callable[..., object], *args: object) -> None:
            try:
                fn(*args)
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                problems.append(f"{what}: {e}")

        try:
            for rule in self._watched:
                step("removing the bench's rule", auditctl, "-d", *shlex.split(rule))
            self._watched.clear()
            if self._pid is not None:
                step("stopping the bench's auditd", self._stop, self._pid)
                self._pid = None
            if self._machine_cmd is not None and not status().get("pid", 0):
                step("restarting the machine's auditd", self._start, self._machine_cmd)
            step("deleting the rules", auditctl, "-D")
            for rule in self._saved_rules:
                step(f"restoring rule {rule!r}", auditctl, *shlex.split(rule))
            args: list[str] = []
            for name, flag in _SETTINGS.items():
                if name in self._saved_status:
                    args += [flag, str(self._saved_status[name])]
            if args:
                step("restoring the settings", auditctl, *args)
            if "enabled" in self._saved_status:
                step("restoring enabled", auditctl, "-e", str(self._saved_status["enabled"]))
            if self.log_file.exists():
                self.log_file.unlink()
        finally:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None
        if problems:
            raise BenchError("restoring the audit configuration: " + "; ".join(problems))

    def _stop(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while pid_alive(pid) or status().get("pid", 0) == pid:
            if time.monotonic() > deadline:
                raise BenchError(f"auditd {pid} did not stop")
            time.sleep(0.05)

    def _start(self, argv: list[str]) -> int:
        # auditd forks into the background once it is ready (unless it was
        # started with -n or -f: then it stays our child, in its own session).
        starter = subprocess.Popen(argv, cwd="/", stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            starter.poll()
            pid = status().get("pid", 0)
            if pid and pid_alive(pid):
                return pid
            if time.monotonic() > deadline:
                raise BenchError(f"{' '.join(argv)} did not start")
            time.sleep(0.05)

    def _start_own(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if self.log_file.exists():
            self.log_file.unlink()
        conf = Path("/etc/audit/auditd.conf").read_text()
        overrides = {"log_file": str(self.log_file), "max_log_file": "100000",
                     "max_log_file_action": "ignore", "num_logs": "0"}
        lines = []
        for line in conf.splitlines():
            key = line.split("=", 1)[0].strip()
            if key in overrides:
                continue
            lines.append(line)
        lines += [f"{k} = {v}" for k, v in overrides.items()]
        path = self.dir / "auditd.conf"
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, 0o640)
        self._pid = self._start(["auditd", "-c", str(self.dir)])

    # -- one measured run ---------------------------------------------------

    def watch(self, ses: int) -> None:
        rule = f"always,exit -F arch=b64 -S {SYSCALLS} -F sessionid={ses} -F key={KEY}"
        auditctl("-a", *shlex.split(rule))
        self._watched.append(rule)

    def unwatch(self) -> None:
        for rule in self._watched:
            auditctl("-d", *shlex.split(rule))
        self._watched.clear()

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def cpu_ns(self) -> int:
        """CPU time of auditd and of the kernel's kauditd thread."""
        self.check()
        pids = [p for p in (self._pid, self._kauditd) if p]
        return sum(proc_cpu_ns(p) for p in pids)

    def check(self) -> None:
        """Raises Interference if the bench's auditd is no longer the one
        registered with the kernel: something else stopped or replaced it."""
        if self._pid is None or not pid_alive(self._pid) or status().get("pid") != self._pid:
            raise Interference("the bench's auditd was stopped or replaced during the run "
                               "(by something that does not take " + LOCK_PATH + ")")

    def drained(self, quiet: float = 0.5, timeout: float = 120.0) -> None:
        """Waits until the kernel's backlog is empty and the log stops growing."""
        deadline = time.monotonic() + timeout
        last, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.log_size()
            if size != last or status().get("backlog", 0):
                last, since = size, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)

    def count(self, offset: int, ses: int) -> LogCount:
        events: dict[str, int] = {}
        records = matched = 0
        ses_field = f" ses={ses} ".encode()
        syscall_re = re.compile(rb" syscall=(\d+) ")
        with open(self.log_file, "rb") as f:
            f.seek(offset)
            for line in f:
                records += 1
                if not line.startswith(b"type=SYSCALL ") or ses_field not in line:
                    continue
                m = syscall_re.search(line)
                if m is None:
                    continue
                kind = SYSCALL_TYPES.get(int(m[1]), "other")
                events[kind] = events.get(kind, 0) + 1
                matched += 1
            end = f.tell()
        return LogCount(events=events, syscall_records=matched, records=records,
                        bytes=end - offset)
