"""One run of a prepared workload under one configuration.

unrecorded  the workload alone;
floor       the workload outside any session while a `sessrec record -- sleep`
            runs: the programs are loaded, so every syscall pays the in-kernel
            filter, but nothing is recorded;
sessrec     `sessrec record --no-daemon -- <workload>`: loads its own programs;
daemon      `sessrec record -- <workload>` through a `sessrec daemon` started
            for the sample and stopped after it (its CPU is the recorder's);
bpftrace    the peer: bench/peers/session.bt, the exec, open and connect
            events of the workload's cgroup printed to a file by bpftrace;
auditd      the workload in a fresh audit session, with auditd's syscall rule
            for that session (see benchlib.auditd).

Every workload runs under `timed`, which waits at a gate until the
configuration is ready, so only the workload itself is timed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from benchlib import auditd
from benchlib.common import (
    REPO,
    SESSREC,
    BenchError,
    Gate,
    Timing,
    build,
    cgroup2_path,
    children_cpu_ns,
    info,
    parse_timed,
    proc_cpu_ns,
    timed_argv,
    total,
)
from benchlib.workloads import Prepared

CONFIGS = ("unrecorded", "floor", "sessrec", "race", "daemon", "bpftrace", "auditd")
# Run unless --configs names them: "race" is `sessrec record --race-check`.
DEFAULT_CONFIGS = tuple(c for c in CONFIGS if c != "race")
# Events the configuration sees besides the workload's own: under sessrec the
# `timed` wrapper is exec'd inside the session; under auditd it starts the new
# audit session only after its exec.
# (bpftrace: `timed` is moved into the cgroup after its exec.)
WRAPPER_EVENTS = {"sessrec": {"exec": 1}, "race": {"exec": 1}, "daemon": {"exec": 1},
                  "bpftrace": {}}
PEER_SCRIPT = REPO / "bench" / "peers" / "session.bt"


@dataclass
class Sample:
    """One run of one workload under one configuration."""

    wall_s: float
    workload_cpu_s: float
    true: dict[str, int]                       # what the workload did, per event type
    recorded: dict[str, int] | None = None     # what the recorder wrote, per event type
    events: int | None = None                  # every event it wrote
    lost: int | None = None                    # what it says it lost
    bytes: int | None = None                   # on disk for this run
    recorder_cpu_s: float | None = None        # its CPU time during the run
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Runner:
    def __init__(self, tmp: Path, log: TextIO) -> None:
        self.tmp = tmp
        self.log = log
        self.timed = build("timed")
        self._daemon_proc: subprocess.Popen[bytes] | None = None
        self.daemon_sock = str(tmp / "daemon-run" / "control.sock")

    def close(self) -> None:
        """Stops the bench's daemon, if one was started."""
        if self._daemon_proc is not None:
            self._daemon_proc.send_signal(signal.SIGTERM)
            self._daemon_proc.wait(timeout=60)
            self._daemon_proc = None

    def run(self, config: str, prep: Prepared) -> Sample:
        if prep.reset is not None:
            prep.reset()
        if config == "unrecorded":
            return self._unrecorded(prep)
        if config == "floor":
            return self._floor(prep)
        if config == "sessrec":
            return self._sessrec(prep)
        if config == "race":
            return self._sessrec(prep, race=True)
        if config == "daemon":
            return self._sessrec(prep, daemon=True)
        if config == "bpftrace":
            return self._bpftrace(prep)
        if config == "auditd":
            for attempt in range(3):
                try:
                    return self._auditd(prep)
                except auditd.Interference as e:
                    print(f"bench: {e}; running it again", file=self.log)
                    time.sleep(5 * (attempt + 1))
                    if prep.reset is not None:
                        prep.reset()
            return self._auditd(prep)
        raise BenchError(f"unknown configuration {config!r}")

    # -- plumbing -----------------------------------------------------------

    def _files(self) -> tuple[Path, Path]:
        return self.tmp / "work.out", self.tmp / "work.err"

    def _popen(self, argv: list[str], prep: Prepared) -> subprocess.Popen[bytes]:
        out, err = self._files()
        with open(out, "wb") as o, open(err, "wb") as e:
            return subprocess.Popen(argv, cwd=prep.cwd, env=prep.env, stdin=subprocess.DEVNULL,
                                    stdout=o, stderr=e)

    def _finish(self, proc: subprocess.Popen[bytes], what: str) -> tuple[Timing, str]:
        rc = proc.wait()
        out, err = (p.read_text(errors="replace") for p in self._files())
        timing = parse_timed(err)
        if rc != 0 or timing.status != 0:
            raise BenchError(f"{what} failed (exit {rc}); stderr:\n{err[-2000:]}")
        return timing, out

    def _sample(self, timing: Timing, true: dict[str, int], **kw: Any) -> Sample:
        return Sample(wall_s=timing.wall_ns / 1e9, workload_cpu_s=timing.cpu_ns / 1e9,
                      true=true, **kw)

    # -- the configurations -------------------------------------------------

    def _unrecorded(self, prep: Prepared, around: int | None = None) -> Sample:
        gate = Gate(self.tmp)
        proc = self._popen(timed_argv(self.timed, gate, prep.argv, copies=prep.copies), prep)
        fd = gate.wait_reader(proc)
        cpu0 = proc_cpu_ns(around) if around else 0
        Gate.open_(fd)
        timing, out = self._finish(proc, "workload")
        sample = self._sample(timing, prep.truth(out))
        if around:
            sample.recorder_cpu_s = (proc_cpu_ns(around) - cpu0) / 1e9
        return sample

    def _floor(self, prep: Prepared) -> Sample:
        out = self.tmp / "floor.srec"
        err = self.tmp / "floor.err"
        with open(err, "wb") as e:
            rec = subprocess.Popen([*SESSREC, "record", "-f", "-o", str(out), "--", "sleep",
                                    "3600"], cwd=REPO, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=e)
        try:
            deadline = time.monotonic() + 60
            while not out.exists() or out.stat().st_size == 0:
                if time.monotonic() > deadline or rec.poll() is not None:
                    raise BenchError("the floor's recorder did not start: "
                                     + err.read_text(errors="replace")[-2000:])
                time.sleep(0.05)
            return self._unrecorded(prep, around=rec.pid)
        finally:
            rec.send_signal(signal.SIGTERM)  # passed on to sleep; then the recorder ends
            rec.wait(timeout=60)
            out.unlink(missing_ok=True)

    def start_daemon(self) -> int:
        """The bench's daemon, started for a sample: its own config, socket
        and output directory in the bench's temp directory."""
        if self._daemon_proc is None:
            run_dir = self.tmp / "daemon-run"
            cfg = self.tmp / "daemon.toml"
            cfg.write_text(f'output_dir = "{self.tmp / "daemon-out"}"\n'
                           f'control_socket = "{self.daemon_sock}"\n'
                           f'cgroup_root = "sessrec-bench-{os.getpid()}"\n'
                           # The ring `sessrec record` has (32 MiB), so the two
                           # configurations differ by the daemon alone.
                           'ring_size = "32MiB"\n')
            log = open(self.tmp / "daemon.log", "wb")
            self._daemon_proc = subprocess.Popen(
                [*SESSREC, "daemon", "--config", str(cfg)], cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            deadline = time.monotonic() + 180
            while not (run_dir / "control.sock").exists():
                if time.monotonic() > deadline or self._daemon_proc.poll() is not None:
                    raise BenchError("the bench's daemon did not start: "
                                     + (self.tmp / "daemon.log").read_text()[-2000:])
                time.sleep(0.1)
        return self._daemon_proc.pid

    def _sessrec(self, prep: Prepared, daemon: bool = False, race: bool = False) -> Sample:
        out = self.tmp / "session.srec"
        gate = Gate(self.tmp)
        argv = [*SESSREC, "record", "-f", "-o", str(out),
                *(["--control-socket", self.daemon_sock] if daemon else ["--no-daemon"]),
                *(["--race-check"] if race else []),
                "--", *timed_argv(self.timed, gate, prep.argv, copies=prep.copies)]
        daemon_pid = self.start_daemon() if daemon else None
        before = children_cpu_ns()
        proc = self._popen(argv, prep)
        fd = gate.wait_reader(proc)
        startup_cpu = proc_cpu_ns(proc.pid)
        daemon_cpu0 = proc_cpu_ns(daemon_pid) if daemon_pid else 0
        Gate.open_(fd)
        timing, stdout = self._finish(proc, "sessrec record")
        daemon_cpu = proc_cpu_ns(daemon_pid) - daemon_cpu0 if daemon_pid else 0
        # Stopped after each sample: a daemon left running kept its programs
        # loaded under every other configuration's runs (their floor).
        self.close()
        # The recorder's CPU from the gate to its exit: all of it, less what it
        # spent starting (loading the programs), less its children (timed and
        # the workload, which timed measured). Through the daemon: the
        # daemon's CPU meanwhile, and the client's.
        recorder_cpu = children_cpu_ns() - before - startup_cpu - timing.cpu_ns
        recorder_cpu += daemon_cpu
        i = info(out)
        counts = {k: int(v) for k, v in dict(i["counts"]).items()}
        true = prep.truth(stdout)
        for kind, n in WRAPPER_EVENTS["sessrec"].items():
            if kind in true:
                true[kind] += n
        sample = self._sample(timing, true, recorded=counts, events=sum(counts.values()),
                              lost=total(i["lost"]), bytes=out.stat().st_size,
                              recorder_cpu_s=max(recorder_cpu, 0) / 1e9)
        out.unlink()
        return sample

    def _bpftrace(self, prep: Prepared) -> Sample:
        cg = cgroup2_path() / f"sessrec-bench-bt-{os.getpid()}"
        cg.mkdir(exist_ok=True)
        script = self.tmp / "peer.bt"
        script.write_text(PEER_SCRIPT.read_text().replace("CGROUP", str(cg)))
        out, err = self.tmp / "peer.out", self.tmp / "peer.err"
        try:
            with open(err, "wb") as e:
                bt = subprocess.Popen(["bpftrace", "-o", str(out), str(script)],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=e)
            # bpftrace buffers what it prints to a file, so its BEGIN cannot
            # say it is ready: its probes are attached once it holds a perf
            # event for each (it says how many first).
            deadline = time.monotonic() + 120
            while _perf_events(bt.pid) < _probes(out) - 2:
                if time.monotonic() > deadline or bt.poll() is not None:
                    raise BenchError("bpftrace did not start: "
                                     + err.read_text(errors="replace")[-2000:])
                time.sleep(0.05)
            time.sleep(0.5)
            gate = Gate(self.tmp)
            proc = self._popen(timed_argv(self.timed, gate, prep.argv, copies=prep.copies),
                               prep)
            fd = gate.wait_reader(proc)
            (cg / "cgroup.procs").write_text(str(proc.pid))
            cpu0 = proc_cpu_ns(bt.pid)
            Gate.open_(fd)
            timing, stdout = self._finish(proc, "workload")
            time.sleep(0.5)  # what is still in bpftrace's buffers
            cpu = proc_cpu_ns(bt.pid) - cpu0
            _stop_bpftrace(bt)
        finally:
            for _ in range(100):
                try:
                    cg.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
        counts = {"exec": 0, "open": 0, "connect": 0}
        lost = 0
        with open(out, "rb") as f:
            for line in f:
                kind = line.split(b" ", 1)[0].decode(errors="replace")
                if kind in counts:
                    counts[kind] += 1
                elif kind == "Lost":  # bpftrace says it in its output
                    m = re.match(rb"Lost (\d+) events", line)
                    lost += int(m.group(1)) if m else 0
        lost += sum(int(n) for n in re.findall(r"Lost (\d+) events",
                                                err.read_text(errors="replace")))
        true = prep.truth(stdout)
        for kind, n in WRAPPER_EVENTS["bpftrace"].items():
            if kind in true:
                true[kind] += n
        sample = self._sample(timing, true, recorded=counts, events=sum(counts.values()),
                              lost=lost, bytes=out.stat().st_size, recorder_cpu_s=cpu / 1e9)
        out.unlink()
        return sample

    def _auditd(self, prep: Prepared) -> Sample:
        with auditd.BenchAuditd(self.tmp) as ad:
            gate = Gate(self.tmp)
            proc = self._popen(timed_argv(self.timed, gate, prep.argv, copies=prep.copies,
                                               audit_session=True), prep)
            fd = gate.wait_reader(proc)
            ses = int(Path(f"/proc/{proc.pid}/sessionid").read_text())
            ad.watch(ses)
            s0 = auditd.status()
            offset, cpu0 = ad.log_size(), ad.cpu_ns()
            Gate.open_(fd)
            backlog_max = 0
            while proc.poll() is None:
                backlog_max = max(backlog_max, auditd.status().get("backlog", 0))
                time.sleep(0.25)
            timing, stdout = self._finish(proc, "workload")
            ad.drained()
            s1 = auditd.status()
            cpu = ad.cpu_ns() - cpu0
            ad.unwatch()
            counted = ad.count(offset, ses)
        return self._sample(
            timing, prep.truth(stdout), recorded=counted.events,
            events=counted.syscall_records, lost=s1.get("lost", 0) - s0.get("lost", 0),
            bytes=counted.bytes, recorder_cpu_s=cpu / 1e9,
            extra={"audit_session": ses, "backlog_max": backlog_max,
                   "backlog_limit": s1.get("backlog_limit"), "log_records": counted.records,
                   # How long the workload's syscalls were held waiting for
                   # room in the backlog (the kernel's counter, in jiffies).
                   "backlog_wait_jiffies": s1.get("backlog_wait_time_actual", 0)
                   - s0.get("backlog_wait_time_actual", 0)},
        )


def _probes(out: Path) -> int:
    """N of bpftrace's "Attaching N probes..." (a large number until then)."""
    m = re.search(rb"Attaching (\d+) probe", out.read_bytes()[:200]) if out.exists() else None
    return int(m.group(1)) if m else 1 << 30


def _stop_bpftrace(bt: subprocess.Popen[bytes]) -> None:
    """SIGINT until bpftrace exits: seen here, Debian's 0.17 sometimes lets
    the first SIGINT pass while draining a busy perf buffer, and then waits
    for ever; a second one stops it, its output flushed."""
    deadline = time.monotonic() + 120
    while True:
        bt.send_signal(signal.SIGINT)
        try:
            bt.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                bt.kill()
                bt.wait()
                raise BenchError("bpftrace did not stop on SIGINT within 120 s") from None


def _perf_events(pid: int) -> int:
    n = 0
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                n += os.readlink(fd) == "anon_inode:[perf_event]"
            except OSError:
                pass
    except OSError:
        pass
    return n


def rate_prepared(prep: Prepared, copies: int) -> Prepared:
    """`copies` open storms in parallel in one session: the rate ladder."""

    def truth(out: str) -> dict[str, int]:
        return {"open": sum(int(n) for n in re.findall(r"\bopens=(\d+)", out))}

    return dataclasses.replace(prep, truth=truth, copies=copies)
