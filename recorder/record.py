"""`sessrec record`: run one command as a recorded session.

Order matters here, so that nothing the command does is missed and nothing
else is recorded:
  1. load the programs (one program set; `sessions` map starts empty);
  2. create the session cgroup and register its id in the map;
  3. start the command; the child moves itself into the cgroup before it
     execs, so its first exec is already inside the session;
  4. drain the ring on a short timer until the cgroup is empty (processes the
     command left behind are recorded until they exit), or the user stops it;
  5. drain once more, write the trailer, remove the map entry and the cgroup.
The recorder itself never joins the cgroup, so its own activity is not seen.
"""

from __future__ import annotations

import errno
import importlib
import os
import pwd
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from recorder.cgroup import SessionCgroup, cgroup2_mount
from recorder.loader import (
    DEFAULT_RING_PAGES,
    LoadConfig,
    Programs,
    check_privileges,
)
from recorder.ringbuf import BUSY, DISCARD, RingReader
from recorder.ringbuf import HEADER as RING_HEADER
from recorder.writer import SessionWriter, check_writable
from replay.text import printable
from sessrec import __version__, control, records, seal
from sessrec import format as fmt
from sessrec.errors import SessrecError
from sessrec.event import LOST_NAMES, TYPE_BY_NAME, TYPE_NAMES, EventFlag, EventType

if TYPE_CHECKING:
    from recorder import audit

DRAIN_INTERVAL = 0.005  # seconds between ring drains: short, as there are no wake-ups
END_GRACE = 0.05        # after the cgroup empties, for programs still finishing on other CPUs


@dataclass
class RecordOptions:
    command: Sequence[str]
    output: str
    force: bool = False
    wait_leftovers: bool = True       # keep recording processes the command left behind
    wait_timeout: float | None = None  # stop waiting for them after this many seconds
    ring_pages: int = DEFAULT_RING_PAGES
    flush_interval: float = 1.0
    cwd: str | None = None
    seal_key: str | None = None  # seal the file with this node key (sessrec.seal)
    race_check: bool = False  # loader.LoadConfig.race_check


class SessionSink:
    """One session's records: counted by type, and copied, framed as the ring
    framed them (format.RECORD_FRAME), into the writer's records buffer. They
    are decoded when the file is read, not here: the recorder shares the
    machine's CPUs with the session it records, so it does the least it can
    per event (docs/PERFORMANCE.md)."""

    def __init__(self, cgroup_id: int, writer: SessionWriter) -> None:
        self.cgroup_id = cgroup_id
        self.writer = writer
        self.records = writer.begin_records()
        self.per_type = [0] * 256
        self.truncated_argv = 0
        self.truncated_path = 0
        self.tampered = 0
        self.moved_out = 0  # cgroup moves flagged tampered: see escaped()
        self.unknown = 0  # records of a type not known here, or too short: not written

    @property
    def counts(self) -> dict[int, int]:
        """Events per type; an exec's argv parts are part of the exec."""
        return {t: n for t, n in enumerate(self.per_type) if n and t != records.ARGV}

    def count_flags(self, flags: int, type_: int) -> None:
        if flags & EventFlag.ARGV_TRUNCATED:
            self.truncated_argv += 1
        if flags & EventFlag.PATH_TRUNCATED:
            self.truncated_path += 1
        if flags & EventFlag.TAMPERED:
            self.tampered += 1
            self.moved_out += type_ == _CGROUP

    def escaped(self, programs: Programs, inside: Iterable[int]) -> list[int]:
        """The session's processes outside its cgroups (inside: the pids in
        them): moved out by root, and their children. A session follows its
        processes (bpf/common.bpf.h, members), so they keep it going. The
        members map is scanned only after a move out was seen."""
        if not self.moved_out:
            return []
        known = set(inside)
        return [p for p in programs.members_of(self.cgroup_id) if p not in known]


class Dispatcher:
    """Takes the records of the sessions' rings (loader.RingConsumer): a ring
    per session, so one lookup of the session per drain, and then one plain
    loop over the ring's memory; all the per-record work is in drain()."""

    def __init__(self) -> None:
        self.sinks: dict[int, SessionSink] = {}
        self.orphan_records = 0
        # Sessions that recorded an exit since the daemon last looked: only
        # they can have become empty.
        self.exited: set[SessionSink] = set()

    def drain(self, reader: RingReader, cgroup_id: int, limit: int,
              max_bytes: int = 1 << 20) -> int:
        """Each committed record of the ring (at most about limit records and
        max_bytes) is counted by type and copied, with its ring frame, into
        its session's records buffer in one slice. A call per record cost
        more than the record's own work (docs/PERFORMANCE.md)."""
        view, base, mask, cons, end = reader.span(max_bytes)
        sink = self.sinks.get(cgroup_id)
        per_type = sink.per_type if sink is not None else [0] * 256
        out = sink.records if sink is not None else bytearray()
        u32 = _U32
        min_size = _MIN_SIZE
        n = unknown = 0
        exited = False
        while cons < end:
            off = base + (cons & mask)
            length = u32(view, off)[0]
            if length & BUSY:
                break
            size = length & ~(BUSY | DISCARD)
            if not length & DISCARD:
                start = off + _FRAME
                t = view[start]
                if size < min_size[t] or view[start + 1]:  # the type is a u16: high byte 0
                    unknown += 1
                else:
                    per_type[t] += 1
                    if view[start + 2] and sink is not None:  # flags' low byte: truncation
                        sink.count_flags(view[start + 2], t)
                    out += view[off:start + size]
                    exited |= t == _EXIT
            cons += (size + RING_HEADER + 7) & ~7
            n += 1
            if n & _PUBLISH_MASK == 0:
                reader.publish(cons)
                if n >= limit:
                    break
        reader.publish(cons)
        if sink is None:
            self.orphan_records += n  # a ring whose session is gone
        else:
            sink.unknown += unknown
            if exited:
                self.exited.add(sink)
        return n


_FRAME = fmt.RECORD_FRAME.size
_U32 = struct.Struct("<I").unpack_from
# Tell the kernel how far the drain got every so many records (a power of
# two, minus one), so that a long drain frees space for the producers.
_PUBLISH_MASK = 4095
_EXIT = int(EventType.EXIT)
_CGROUP = int(EventType.CGROUP)
# The smallest valid record of each type (header and fixed body); a type the
# decoder does not know can never be long enough.
_MIN_SIZE = [1 << 32] * 256
for _t in records.BODIES:
    _MIN_SIZE[_t] = records.record_size(_t)


class _Signals:
    """SIGINT/SIGTERM policy. While the command runs, Ctrl-C reaches it from
    the terminal and the recorder keeps recording; SIGTERM sent to the recorder
    is passed on to the command. Once the command has exited and only leftover
    processes are being waited for, either signal stops the wait."""

    def __init__(self) -> None:
        self.stop_waiting = False
        self.forward: Callable[[int], None] | None = None
        self.leader_done = False
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            self._old[s] = signal.signal(s, self._handle)

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.leader_done:
            self.stop_waiting = True
        elif signum == signal.SIGTERM and self.forward is not None:
            self.forward(signum)


def _text(arg: str) -> str:
    """A command-line argument as valid UTF-8 text for the header (undecodable
    bytes escaped); the exact bytes are in the exec event."""
    return os.fsencode(arg).decode("utf-8", "backslashreplace")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class Leader:
    """The recorded command's first process. Started with fork and exec here,
    not subprocess.Popen, so that its pid is known even when exec fails: the
    failed exec is part of the session, and its process is the leader. Like
    a shell, a command that is not found exits 127, and one that cannot be
    executed 126."""

    def __init__(self, command: list[str], cwd: str, procs_file: str | None) -> None:
        """procs_file: the child joins that cgroup itself before it execs.
        None: the child waits for release() (a byte on a pipe) instead, while
        the daemon moves it into its session."""
        r, w = os.pipe2(os.O_CLOEXEC)
        gate_r = gate_w = ready_r = ready_w = -1
        if procs_file is None:
            gate_r, gate_w = os.pipe2(os.O_CLOEXEC)
            # The child says when its chdir is done: the daemon must not move
            # it in before, or the chdir is recorded (and not without a daemon).
            ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child
            code = 127
            try:
                os.close(r)
                # The command must not inherit the recorder's descriptors (BPF
                # programs and maps, the session file): keep stdio and the pipes.
                keep = sorted({w, gate_r, ready_w} - {-1})
                lo = 3
                for fd in keep:
                    os.closerange(lo, fd)
                    lo = fd + 1
                os.closerange(lo, 1 << 20)
                step = b"chdir"
                os.chdir(cwd)
                # Join the session last, so that only the exec is recorded:
                # "0" is this process.
                step = b"cgroup"
                if procs_file is not None:
                    with open(procs_file, "w") as f:
                        f.write("0")
                elif os.write(ready_w, b"1") != 1 or os.read(gate_r, 1) != b"1":
                    os.write(w, b"gate 0")
                    os._exit(code)
                step = b"exec"
                os.execvp(command[0], command)
            except OSError as e:
                if step == b"exec" and e.errno != errno.ENOENT:
                    code = 126
                os.write(w, step + b" %d" % (e.errno or 0))
            finally:
                os._exit(code)
        self._gate = gate_w
        self._failure_pipe = r
        os.close(w)
        self.pid = pid
        self.returncode: int | None = None
        if procs_file is None:
            os.close(gate_r)
            os.close(ready_w)
            os.read(ready_r, 1)  # b"1", or b"" if the child failed (reported at release)
            os.close(ready_r)
            return
        self._check_started()

    def release(self) -> None:
        """Lets a gated child exec (after it was moved into its session);
        raises SessrecError as the constructor does when it could not."""
        os.write(self._gate, b"1")
        os.close(self._gate)
        self._gate = -1
        self._check_started()

    def abandon(self) -> None:
        """A gated child that must not run: it exits without exec."""
        if self._gate >= 0:
            os.close(self._gate)
            self._gate = -1
        os.close(self._failure_pipe)
        self.wait()

    def _check_started(self) -> None:
        r = self._failure_pipe
        with os.fdopen(r, "rb") as pipe:
            failure = pipe.read()  # EOF at a successful exec (close-on-exec)
        if failure and not failure.startswith(b"exec"):
            self.wait()
            step, _, num = failure.partition(b" ")
            raise SessrecError(f"cannot start the command: {step.decode()} failed: "
                               f"{os.strerror(int(num or 0))}")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# How long after the command's exit its leftovers are named: most children
# of a shell end within milliseconds of it, and need no notice.
WAIT_NOTICE_AFTER = 0.5
_NAMED = 5  # leftover processes named in the notice, at most


def _cmdline(pid: int) -> str:
    """What a process runs, as ps shows it: its argv, else [comm]."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read(4096).rstrip(b"\0").split(b"\0")
        if argv != [b""]:
            return printable(" ".join(a.decode("utf-8", "backslashreplace") for a in argv))
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f"[{printable(f.read().strip().decode('utf-8', 'backslashreplace'))}]"
    except OSError:
        return "(exited)"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def waiting_notice(pids: list[int], timeout: float | None) -> str:
    """The one line record prints when the command has exited but left
    processes running, which it goes on recording."""
    shown = ", ".join(f"{pid} {_short(_cmdline(pid))}" for pid in pids[:_NAMED])
    more = f" and {len(pids) - _NAMED} more" if len(pids) > _NAMED else ""
    limit = "" if timeout is None else f" (at most {timeout:g} s)"
    return (f"sessrec: the command exited; recording goes on while what it left runs{limit}: "
            f"{shown}{more}. Ctrl-C stops the wait.")


def session_header(*, session_id: str, cg: SessionCgroup, leader_pid: int, uid: int,
                   command: list[str], cwd: str, clock: tuple[int, int],
                   audit_header: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The header of a session file, the same for `sessrec record` and the
    daemon: the login uid and audit session id are read from /proc here."""
    from recorder import audit

    login_uid, audit_session = audit.ids(leader_pid)
    wall_ns, mono_ns = clock
    return {
        "session_id": session_id,
        "hostname": socket.gethostname(),
        "kernel": os.uname().release,
        "user": _user(uid),
        "uid": uid,
        "login_uid": login_uid,
        "audit_session_id": audit_session,
        "command": command,
        "cwd": os.fsencode(cwd),
        "leader_pid": leader_pid,
        "started_at": fmt.rfc3339_us(wall_ns),
        "clock": {"wall_ns": wall_ns, "mono_ns": mono_ns},
        "cgroup": str(cg.path),
        "cgroup_id": cg.id,
        "recorder": {"version": __version__, "pid": os.getpid()},
        "limits": {"argv_max": records.ARGV_MAX, "path_max": records.PATH_MAX},
        "abi_version": records.ABI_VERSION,
        "audit": audit_header,
        **(extra or {}),
    }


def session_trailer(sink: SessionSink, lost: dict[int, int], status: int | None,
                    end_reason: str, auditing: audit.AuditSession | None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The trailer of a session file (and its audit end record), the same for
    `sessrec record` and the daemon."""
    counts = {TYPE_NAMES[t]: n for t, n in sorted(sink.counts.items())}
    lost_names = {LOST_NAMES.get(t, str(t)): n for t, n in lost.items()}
    trailer = {
        "ended_at": fmt.rfc3339_us(time.time_ns()),
        "counts": counts,
        "lost": lost_names,
        "truncated": {"argv": sink.truncated_argv, "path": sink.truncated_path},
        "tampered": sink.tampered,
        "unknown_types": sink.unknown,
        "exit_status": status,
        "end_reason": end_reason,
        **(extra or {}),
    }
    if auditing is not None:
        trailer["audit"] = auditing.end(counts, lost_names, end_reason, status)
    return trailer


def write_lost_stats(writer: SessionWriter, lost: dict[int, int]) -> None:
    """A stats map with the session's cumulative ring losses, when they grew."""
    writer.add_stats({
        "ts": time.monotonic_ns() - writer.header["clock"]["mono_ns"],
        "lost": {LOST_NAMES.get(t, str(t)): n for t, n in lost.items()},
    })


def _warn(stderr: TextIO, msg: str) -> None:
    print(f"sessrec: warning: {msg}", file=stderr)


def lost_summary(lost: dict[int, int]) -> str:
    return ", ".join(f"{LOST_NAMES.get(t, t)} {n}" for t, n in sorted(lost.items()))


def record(opts: RecordOptions, stderr: TextIO = sys.stderr) -> int:
    """Records opts.command; returns its exit status as a shell reports it."""
    check_privileges()
    check_writable(opts.output, opts.force)
    if opts.seal_key is not None:
        seal.seal_key_status(opts.seal_key)  # usable? fail before the command starts
    if opts.cwd is not None and not os.path.isdir(opts.cwd):
        raise SessrecError(f"cannot run the command in {opts.cwd}: no such directory")
    mount = cgroup2_mount()
    # Importing the audit module (pyroute2: ~0.15 s) overlaps the BPF compile,
    # which runs in C without the GIL: start-up is a target (< 1.5 s).
    warm = threading.Thread(target=importlib.import_module, args=("recorder.audit",))
    warm.start()
    programs = Programs.load(
        LoadConfig(session_level=SessionCgroup.session_level(mount), ring_pages=opts.ring_pages,
                   race_check=opts.race_check)
    )
    warm.join()
    from recorder import audit
    session_id = str(uuid.uuid4())
    cg = SessionCgroup.create(session_id, mount)
    sigs = _Signals()
    proc: Leader | None = None
    writer: SessionWriter | None = None
    auditing: audit.AuditSession | None = None
    sink: SessionSink | None = None
    try:
        programs.add_session(cg.id)
        dispatcher = Dispatcher()
        programs.open_ring(dispatcher)
        wall_ns, mono_ns = time.time_ns(), time.monotonic_ns()
        cwd = os.path.abspath(opts.cwd) if opts.cwd else os.getcwd()
        sigs.install()
        proc = Leader(list(opts.command), cwd, str(cg.procs_file))
        leader_pid = proc.pid
        sigs.forward = proc.send_signal
        auditing = audit.AuditSession(session_id, opts.output, leader_pid)
        header = session_header(
            session_id=session_id, cg=cg, leader_pid=leader_pid, uid=os.getuid(),
            command=[_text(a) for a in opts.command], cwd=cwd,
            clock=(wall_ns, mono_ns), audit_header=auditing.start(),
            extra={"kind": "record", **programs.header_fields()})
        try:
            sealer = None if opts.seal_key is None else seal.start_file(opts.seal_key)
            writer = SessionWriter(
                opts.output, header, force=opts.force, flush_interval=opts.flush_interval,
                sealer=sealer,
            )
        except BaseException:
            if proc is not None:
                proc.kill()
                proc.wait()
            raise
        sink = SessionSink(cg.id, writer)
        dispatcher.sinks[cg.id] = sink

        def escaped() -> list[int]:
            return sink.escaped(programs, cg.pids())

        end_reason = _drain_until_done(programs, cg, proc, sigs, writer, opts, stderr, escaped)
        status = _shell_status(proc.wait())
        time.sleep(END_GRACE)
        programs.consume_all()

        lost = programs.lost(cg.id)
        if lost:
            _warn(stderr, f"{sum(lost.values())} events lost (ring buffer full): "
                  f"{lost_summary(lost)}; a larger --ring-pages helps")
        trailer = session_trailer(sink, lost, status, end_reason, auditing)
        writer.close(trailer)
        writer = None
        return status
    finally:
        sigs.restore()
        if auditing is not None:
            auditing.abort()  # a failed end record, if the end was not reached
        if writer is not None:  # an error on the way: keep what we have
            try:
                writer.close(None)
            except SessrecError:
                pass
        moved = sink.escaped(programs, cg.pids()) if sink is not None else []
        programs.remove_session(cg.id)
        programs.forget_lost(cg.id)
        left = cg.remove() + moved
        if left:
            _warn(stderr, f"stopped recording {len(left)} process(es) still running: "
                  + " ".join(map(str, left)))
        programs.close(background=True)


def record_via_daemon(opts: RecordOptions, conn: control.Connection,
                      stderr: TextIO = sys.stderr) -> int:
    """Records opts.command through a running daemon (docs/CONTROL.md): the
    daemon moves the command's process into a new session before it execs
    and writes the file; this process runs the command and waits as
    record() does, then ends the session with the exit status. The file is
    the one record() writes, but for the recorder's pid (the daemon's)."""
    check_privileges()
    check_writable(opts.output, opts.force)
    if opts.cwd is not None and not os.path.isdir(opts.cwd):
        raise SessrecError(f"cannot run the command in {opts.cwd}: no such directory")
    cwd = os.path.abspath(opts.cwd) if opts.cwd else os.getcwd()
    sigs = _Signals()
    sigs.install()
    try:
        proc = Leader(list(opts.command), cwd, None)
        try:
            reply = conn.request("start", pid=proc.pid, kind="record",
                                 command=[_text(a) for a in opts.command], cwd=cwd,
                                 output=os.path.abspath(opts.output), force=opts.force,
                                 seal=opts.seal_key is not None)
            if not reply.get("recorded"):
                raise SessrecError(f"the daemon does not record this: {reply.get('reason')}")
        except BaseException:
            proc.abandon()
            raise
        session = str(reply["session"])
        try:
            proc.release()
        except SessrecError:
            conn.request("end", session=session, reason="error", linger=0)
            raise
        sigs.forward = proc.send_signal
        cg = SessionCgroup(path=Path(reply["cgroup"]), id=int(reply["cgroup_id"]), level=-1,
                           mount=cgroup2_mount())
        end_reason = _wait_done(cg, proc, sigs, opts, stderr)
        status = _shell_status(proc.wait())
        conn.settimeout(None)  # the end waits for the last drain, however long
        summary = conn.request("end", session=session, reason=end_reason, exit_status=status,
                               linger=0)
    finally:
        sigs.restore()
    lost = {TYPE_BY_NAME.get(k, 0): n for k, n in summary["lost"].items()}
    if lost:
        _warn(stderr, f"{sum(lost.values())} events lost (ring buffer full): "
              f"{lost_summary(lost)}; the daemon's ring_size is too small")
    left = summary.get("left_running") or []
    if left:
        _warn(stderr, f"stopped recording {len(left)} process(es) still running: "
              + " ".join(map(str, left)))
    return status


class _EndWatch:
    """When a recorded command's session is over, and why: the one rule of
    both ways of recording (here, or through the daemon)."""

    def __init__(self, cg: SessionCgroup, proc: Leader, sigs: _Signals,
                 opts: RecordOptions, stderr: TextIO,
                 escaped: Callable[[], list[int]] = list) -> None:
        self.cg, self.proc, self.sigs, self.opts = cg, proc, sigs, opts
        self.escaped = escaped  # the session's processes moved out of cg
        self.stderr = stderr  # told once what is waited for
        self.leader_exit_at: float | None = None
        self.told_waiting = False

    def reason(self, now: float) -> str | None:
        if self.leader_exit_at is None and self.proc.poll() is not None:
            self.leader_exit_at = now
            self.sigs.leader_done = True
        if self.leader_exit_at is None:
            return None
        if not self.cg.populated() and not self.escaped():
            return "cgroup-empty"
        if not self.opts.wait_leftovers:
            return "leader-exited"
        if self.sigs.stop_waiting:
            return "interrupted"
        timeout = self.opts.wait_timeout
        if timeout is not None and now - self.leader_exit_at >= timeout:
            return "wait-timeout"
        if not self.told_waiting and now - self.leader_exit_at >= WAIT_NOTICE_AFTER:
            self.told_waiting = True
            print(waiting_notice(self.cg.pids() + self.escaped(), timeout), file=self.stderr)
        return None


def _wait_done(cg: SessionCgroup, proc: Leader, sigs: _Signals, opts: RecordOptions,
               stderr: TextIO) -> str:
    """_drain_until_done's waiting, for a session the daemon drains."""
    watch = _EndWatch(cg, proc, sigs, opts, stderr)
    while (reason := watch.reason(time.monotonic())) is None:
        time.sleep(DRAIN_INTERVAL)
    return reason


def _shell_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _drain_until_done(
    programs: Programs,
    cg: SessionCgroup,
    proc: Leader,
    sigs: _Signals,
    writer: SessionWriter,
    opts: RecordOptions,
    stderr: TextIO,
    escaped: Callable[[], list[int]],
) -> str:
    watch = _EndWatch(cg, proc, sigs, opts, stderr, escaped)
    warned_lost = 0
    next_loss_check = 0.0
    while True:
        programs.consume()
        busy = programs.pending()  # a batch ends at DRAIN_BATCH records or about 1 MiB
        now = time.monotonic()
        writer.maybe_flush(now)
        if now >= next_loss_check:
            next_loss_check = now + 1.0
            lost = programs.lost(cg.id)
            total = sum(lost.values())
            if total > warned_lost:
                write_lost_stats(writer, lost)
                if warned_lost == 0:
                    _warn(stderr, "events are being lost (ring buffer full); recording goes on")
                warned_lost = total
        reason = watch.reason(now)
        if reason is not None:
            return reason
        if not busy:
            time.sleep(DRAIN_INTERVAL)
