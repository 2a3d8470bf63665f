"""`sessrec daemon`: one program set, loaded once, serving every session.

One process, one thread, one non-blocking event loop over the control
socket's connections, with the ring drained between them. Sessions are
started and ended through the control socket (docs/CONTROL.md); each has its
own cgroup, its own ring buffer (loader.Programs) and its own file, so that
a session that floods loses only its own events (docs/PERFORMANCE.md).

What survives the daemon (a restart, a SIGKILL): the session cgroups, and a
state file per session (<socket dir>/sessions/<id>.json). A new daemon finds
them, continues each session's file after its last whole chunk, and writes a
"gap" map: from the last record the file holds to the moment the session is
watched again, events are missing, and the file says so (docs/FORMAT.md).

A `record` session's file is its client's: the client opens it and passes
the descriptor (docs/CONTROL.md), since this daemon may not see the path
(the unit's sandbox, another mount namespace). After a restart the new
daemon continues such a file by its path only when it can open it and it
is the same file; else it waits for the client to hand it again
(`reattach`, which the client does when its connection closes). A client
that is gone, or does not come back within RESUME_WAIT s, leaves a
`resume-failed` line: its session is not continued, its processes go on
unrecorded, and the file ends, without a trailer, where the old daemon left it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import resource
import selectors
import signal
import socket
import stat
import struct
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from recorder import pam
from recorder.cgroup import Mount, SessionCgroup, cgroup2_mount
from recorder.daemonlog import Log
from recorder.enrol_logind import LogindEnrolment, check_logind_root
from recorder.loader import KIND_FILES, PAGE_SIZE, LoadConfig, Programs, check_privileges
from recorder.record import (
    Dispatcher,
    SessionSink,
    _user,
    session_header,
    session_trailer,
    write_lost_stats,
)
from recorder.writer import OutputError, SessionWriter, check_writable
from sessrec import __version__, control, seal
from sessrec import format as fmt
from sessrec.config import Config
from sessrec.errors import SessrecError
from sessrec.event import TYPE_NAMES

if TYPE_CHECKING:
    from recorder import audit

# Rings with records are drained every DRAIN_MIN s; when none has any, the
# loop sleeps DRAIN_MAX s, woken early by a ring that gets half full (the
# programs submit without wake-ups until then); every ring is looked at
# every RING_SWEEP_EVERY s. An idle daemon with 1,000 sessions so wakes 4
# times a second and looks at 1,000 rings once (docs/PERFORMANCE.md).
DRAIN_MIN = 0.005
DRAIN_MAX = 0.25
RING_SWEEP_EVERY = 1.0
END_GRACE = 0.05       # after a cgroup empties, for programs still finishing on other CPUs
FLUSH_EVERY = 0.25     # how often buffered records are looked at (each file flushes every 1 s)
LOSS_EVERY = 1.0
SWEEP_EVERY = 10.0     # a full check that sessions' cgroups are populated
RETENTION_EVERY = 60.0
ENDED_KEPT = 1024      # summaries of ended sessions kept for a late `end`
# Sessions prepared ahead (an empty cgroup with its ring registered): making
# one waits an RCU grace period in the kernel (a map-of-maps update, ~15 ms),
# which a start should not (docs/PERFORMANCE.md).
SPARES = 16
# A PAM login's processes are looked at for its terminal every TTY_EVERY s
# for its first TTY_FOR s (a login without a tty never gets one).
TTY_EVERY = 0.02
TTY_FOR = 30.0
MAX_OUT = 1 << 20      # reply bytes a client may leave unread before it is dropped
# How long a restarted daemon waits for a `record` client to come back:
# to hand again a file the daemon cannot open (`reattach`), or to end its
# resumed session with the command's exit status.
RESUME_WAIT = 60.0
LOGIN_KEYS = {"user": str, "rhost": str, "tty": str, "service": str, "remote_addr": str,
              "uid": int, "remote_port": int}
_UCRED = struct.Struct("3i")


class AlreadyRunning(SessrecError):
    exit_status = 1


@dataclass
class Client:
    sock: socket.socket
    since: float
    pid: int = 0        # SO_PEERCRED's
    buf: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    owns: set[str] = field(default_factory=set)   # record sessions it started
    # Descriptors received and not yet handed to a request: (the offset in
    # the connection's byte stream of the line that carries them, fd); -1
    # stands for ancillary data the kernel cut short.
    fds: list[tuple[int, int]] = field(default_factory=list)
    received: int = 0   # bytes received on the connection
    consumed: int = 0   # bytes of it taken as lines: the stream offset of buf[0]
    waits: int = 0                                 # `end` replies owed to it
    closing: bool = False


@dataclass
class Spare:
    id: str
    cg: SessionCgroup
    ring: Any  # loader._Ring


@dataclass
class Session:
    id: str
    kind: str
    pid: int
    uid: int
    user: str
    file: str
    cg: SessionCgroup
    writer: SessionWriter
    sink: SessionSink
    auditing: audit.AuditSession | None
    started_at: str
    owner: Client | None = None
    state: str = "active"           # "ending" after `end`, "finishing" once it may end
    end_reason: str = ""
    exit_status: int | None = None
    deadline: float = 0.0
    finish_at: float = 0.0
    waiters: list[Client] = field(default_factory=list)
    lost_written: int = 0
    lost_before: dict[str, int] = field(default_factory=dict)  # from before a restart
    dropped: dict[int, int] = field(default_factory=dict)      # the whole session's
    gap_dropped: dict[int, int] = field(default_factory=dict)  # since the last gap map
    drop_first_ts: int | None = None
    drop_last_ts: int = 0
    drop_detail: str = ""
    tty: str | None = None          # a login's terminal, learned from its processes
    tty_next: float = 0.0           # when its processes are next looked at
    tty_until: float = 0.0          # and until when
    gaps: list[dict[str, Any]] = field(default_factory=list)
    # False for a logind scope: systemd's cgroup, never moved out of or removed
    owned: bool = True
    # logind scopes the session's processes were moved into (by systemd, at
    # a PAM login): the session lives on in them (recorder/enrol_logind.py)
    linked: list[SessionCgroup] = field(default_factory=list)
    # The file's (device, inode): a restarted daemon continues that file
    # and no other one of the same name (resume.py).
    file_id: tuple[int, int] | None = None
    passed: bool = False            # the file came from the client (output_fd)
    # A `record` session's client: (pid, start time), so that a restarted
    # daemon knows whether it can still come back (`reattach`), and until
    # when a resumed one waits for it before it may end by itself.
    client: tuple[int, int] | None = None
    reclaim_until: float = 0.0

    def pids(self) -> list[int]:
        """The processes in the session's cgroup and the scopes linked to it."""
        return [p for cg in (self.cg, *self.linked) for p in cg.pids()]

    def populated(self) -> bool:
        return any(cg.populated() for cg in (self.cg, *self.linked))

    def holds_leader(self) -> bool:
        """Whether the leader is still in the session's cgroup or a linked scope."""
        return any(cg.holds(self.pid) for cg in (self.cg, *self.linked))

    def summary(self) -> dict[str, Any]:
        return {"session": self.id, "kind": self.kind, "pid": self.pid, "user": self.user,
                "uid": self.uid, "file": self.file, "cgroup": str(self.cg.path),
                "started_at": self.started_at, "state": "active" if self.state == "active"
                else "ending", "events": sum(self.sink.per_type),
                "lost": self.lost_names(None)}

    def lost_names(self, lost: dict[int, int] | None) -> dict[str, int]:
        out = dict(self.lost_before)
        for t, n in (lost or {}).items():
            name = TYPE_NAMES.get(t, str(t))
            out[name] = out.get(name, 0) + n
        return out


class Daemon:
    def __init__(self, cfg: Config, log: Log) -> None:
        self.cfg = cfg
        self.log = log
        self.sock_path = cfg.control_socket
        self.run_dir = Path(self.sock_path).parent
        self.state_dir = self.run_dir / "sessions"
        self.sessions: dict[str, Session] = {}
        self.by_cg: dict[int, Session] = {}
        self.ending: set[str] = set()  # sessions after `end`, until finished
        self.tty_pending: set[str] = set()  # PAM logins whose terminal is not known yet
        # Sessions a restart left whose file only their client can hand
        # again: (state file, its state, until when it may), by session id.
        self.waiting: dict[str, tuple[Path, dict[str, Any], float]] = {}
        self.buffered: set[str] = set()  # sessions with records not yet flushed
        self.ended: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.clients: dict[int, Client] = {}
        self.sel = selectors.DefaultSelector()
        self.stop = False
        self.started_mono = time.monotonic()
        self.started_at = fmt.rfc3339_us(time.time_ns())
        self.sessions_total = 0
        self.dropped_total = 0
        self.rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._lock_fd = -1
        self._listener: socket.socket | None = None
        self.programs: Programs | None = None
        self.logind: LogindEnrolment | None = None
        self.dispatcher = Dispatcher()
        self.mount: Mount | None = None
        self.files = tuple(KIND_FILES[k] for k in cfg.events)
        self.spares: deque[Spare] = deque()
        self.retired: deque[tuple[int, Any]] = deque()  # (cgroup id, ring) to unregister
        self._want_spares = threading.Event()
        self._spare_thread: threading.Thread | None = None

    # --- start-up and shutdown ---

    def run(self) -> int:
        check_privileges("sudo sessrec daemon")
        # A session holds its file open: 1,000 sessions need more than the
        # usual soft limit of 1,024 descriptors.
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        self._take_lock()
        from recorder import audit

        # Forked before BCC grows this process (see audit.Sender).
        self.audit_sender = audit.Sender()
        try:
            self._prepare_dirs()
            self.mount = cgroup2_mount()
            if self.cfg.enrolment == "logind":
                check_logind_root(self.mount.path / self.cfg.logind_root)
            level = SessionCgroup.session_level(self.mount, self.cfg.cgroup_root)
            t0 = time.monotonic()
            self.programs = Programs.load(LoadConfig(
                session_level=level, ring_pages=self.cfg.ring_size // PAGE_SIZE,
                program_files=self.files, race_check=self.cfg.race_check))
            self.programs.open_ring(self.dispatcher)
            self.log("programs-loaded", seconds=round(time.monotonic() - t0, 3),
                     programs=len(self.programs.bpf.tracepoint_fds),
                     ring_size=self.cfg.ring_size, events=list(self.cfg.events))
            self._resume_sessions()
            self._watch_scopes()
            self._spare_thread = threading.Thread(target=self._make_spares, daemon=True)
            self._spare_thread.start()
            self._listen()
            for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(s, self._on_signal)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
            self.log("started", pid=os.getpid(), version=__version__, socket=self.sock_path,
                     config=self.cfg.source, sessions=len(self.sessions))
            sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=serving")
            self._loop()
            sd_notify("STOPPING=1")
            self._shutdown()
            return 0
        finally:
            self.stop = True
            self._drop_spares()
            if self._listener is not None:
                self._listener.close()
                with contextlib.suppress(OSError):
                    os.unlink(self.sock_path)
            if self.logind is not None:
                self.logind.close()
            if self.programs is not None:
                self.programs.close()
            self.audit_sender.close()
            os.close(self._lock_fd)

    def _watch_scopes(self) -> None:
        """systemd-logind's scopes: adopted with enrolment = "logind"; else,
        where logind runs, watched to follow PAM logins into them."""
        root = self.mount.path / self.cfg.logind_root if self.mount is not None else None
        adopt = self.cfg.enrolment == "logind"
        if not adopt and (root is None or not root.is_dir()):
            return
        self.logind = LogindEnrolment(self, adopt)
        self.sel.register(self.logind, selectors.EVENT_READ, self.logind)
        self.log("logind-watch", root=str(self.logind.root), adopt=adopt)
        self.logind.poll(time.monotonic())

    def _make_spares(self) -> None:
        """The spare-session thread: keeps SPARES sessions prepared."""
        assert self.programs is not None and self.mount is not None
        while not self.stop:
            while self.retired:
                self.programs.unregister(*self.retired.popleft())
            while len(self.spares) < SPARES and not self.stop:
                sid = str(uuid.uuid4())
                try:
                    cg = SessionCgroup.create(sid, self.mount, self.cfg.cgroup_root)
                    try:
                        ring = self.programs.prepare_session(cg.id)
                    except SessrecError:
                        cg.remove()
                        raise
                except SessrecError as e:
                    self.log("spare-failed", level="error", error=str(e))
                    break
                self.spares.append(Spare(sid, cg, ring))
            self._want_spares.wait(1.0)
            self._want_spares.clear()

    def _drop_spares(self) -> None:
        self._want_spares.set()
        if self._spare_thread is not None:
            self._spare_thread.join(timeout=30)
        while self.retired and self.programs is not None:
            self.programs.unregister(*self.retired.popleft())
        while self.spares and self.programs is not None:
            s = self.spares.popleft()
            self.programs.adopt(s.cg.id, s.ring)
            self.programs.remove_session(s.cg.id)
            s.cg.remove()

    def _take_lock(self) -> None:
        """One daemon per socket: a lock on <socket>.pid, held for life. The
        lock, not the socket file, decides: a killed daemon's socket file is
        stale and is taken over."""
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        path = self.sock_path + ".pid"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyRunning(f"another sessrec daemon is running (pid {pid}) on "
                                 f"{self.sock_path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _prepare_dirs(self) -> None:
        out = Path(self.cfg.output_dir)
        try:
            out.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.state_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise SessrecError(f"cannot create {e.filename}: {e.strerror}") from None

    def _listen(self) -> None:
        if os.path.lexists(self.sock_path):
            self.log("stale-socket-removed", socket=self.sock_path)
            os.unlink(self.sock_path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            s.bind(self.sock_path)
        finally:
            os.umask(old)
        os.chmod(self.sock_path, 0o600)
        s.listen(128)
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ, None)
        self._listener = s

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop = True

    def _shutdown(self) -> None:
        """Stopping leaves the sessions running: their files get what was
        drained, without a trailer, and the next daemon continues them."""
        assert self.programs is not None
        self.programs.consume_all()
        for sess in self.sessions.values():
            with contextlib.suppress(OutputError):
                sess.writer.flush()
        for c in list(self.clients.values()):
            self._close(c)
        self.log("stopped", sessions_left=len(self.sessions),
                 note="sessions continue when a daemon starts again")

    # --- the loop ---

    def _loop(self) -> None:
        assert self.programs is not None
        interval = DRAIN_MIN
        next_flush = next_loss = next_idle = next_rings = 0.0
        next_sweep = time.monotonic() + SWEEP_EVERY
        next_retention = time.monotonic() + 5.0
        active: set[int] = set()  # sessions whose ring had records at its last drain
        while not self.stop:
            woke: set[int] = set()
            scopes = False
            for key, mask in self.sel.select(interval):
                if key.data is None:
                    self._accept()
                elif isinstance(key.data, int):
                    woke.add(key.data)  # a ring more than half full
                elif isinstance(key.data, LogindEnrolment):
                    scopes = True
                else:
                    self._service(key.data, mask)
            now = time.monotonic()
            if self.logind is not None and (scopes or self.logind.pending or
                                            self.logind.gone):
                self.logind.poll(now)
            if now >= next_rings:  # every ring, now and then; the busy ones each time
                next_rings = now + RING_SWEEP_EVERY
                targets: set[int] = set(self.by_cg)
            else:
                targets = active | woke
            n = 0
            active = set()
            for cg in targets:
                m = self.programs.consume_session(cg)
                if m:
                    n += m
                    active.add(cg)
                    # A chunk at most about a drain more than max_chunk_bytes,
                    # however fast the records come (readers cap a chunk).
                    sess = self.by_cg.get(cg)
                    if sess is not None:
                        self.buffered.add(sess.id)
                        if len(sess.writer.records) >= sess.writer.max_chunk_bytes:
                            self._guarded(sess, sess.writer.flush)
            interval = self._interval(active, now)
            if n:
                self.rate.append((now, n))
                self._note_exits()
            self._learn_ttys(now)
            if now >= next_flush:
                next_flush = now + FLUSH_EVERY
                self._flush_buffered(now)
            if now >= next_loss:
                next_loss = now + LOSS_EVERY
                self._check_losses()
            if now >= next_sweep:
                next_sweep = now + SWEEP_EVERY
                for sess in list(self.sessions.values()):
                    self._maybe_empty(sess, now)
            if now >= next_idle:
                next_idle = now + 1.0
                self._drop_idle(now)
            if now >= next_retention and (self.cfg.retention_max_age is not None or
                                          self.cfg.retention_max_total_size is not None):
                next_retention = now + RETENTION_EVERY
                self._retention()
            self._advance_endings(now)
            if self.waiting:
                self._expire_waiting(now)

    def _flush_buffered(self, now: float) -> None:
        """Sessions with records drained or dropped since their last flush:
        only they are looked at, not every idle session 4 times a second."""
        for sid in list(self.buffered):
            sess = self.sessions.get(sid)
            if sess is not None and (sess.writer.records or sess.drop_first_ts is not None):
                self._guarded(sess, sess.writer.maybe_flush, now)
            if sess is None or not (sess.writer.records or sess.drop_first_ts is not None):
                self.buffered.discard(sid)

    def _interval(self, active: set[int], now: float) -> float:
        """How long the loop may sleep: briefly while rings are busy (0 while
        one holds more than a batch), longer when all are quiet (a quiet
        ring that fills up wakes the loop), and never past an ending
        session's next step."""
        assert self.programs is not None
        if any(self.programs.pending_session(cg) for cg in active):
            return 0.0
        interval = DRAIN_MIN if active else DRAIN_MAX
        if self.tty_pending:
            interval = min(interval, TTY_EVERY)
        scopes = self.logind.timer(now) if self.logind is not None else None
        if scopes is not None:
            interval = min(interval, scopes)
        for sid in self.ending:
            sess = self.sessions[sid]
            at = sess.deadline if sess.state == "ending" else sess.finish_at
            interval = min(interval, max(0.0, at - now))
        return interval

    def _note_exits(self) -> None:
        """A session whose cgroup may have emptied has recorded an exit."""
        now = time.monotonic()
        exited = self.dispatcher.exited
        while exited:
            sess = self.by_cg.get(exited.pop().cgroup_id)
            if sess is not None:
                self._maybe_empty(sess, now)

    def _learn_ttys(self, now: float) -> None:
        """A PAM login's terminal: PAM_TTY is "ssh" at sshd's open_session,
        before the pty exists, so look at the session's processes on a short
        timer for a while. Not on its records: a quiet session's ring is
        drained only every DRAIN_MAX s, and a short login can be over by then."""
        for sid in list(self.tty_pending):
            sess = self.sessions[sid]
            if now >= sess.tty_next:
                sess.tty = next(filter(None, map(pam.tty_of, sess.pids())), None)
                sess.tty_next = now + TTY_EVERY
            if sess.tty is not None or now >= sess.tty_until:
                self.tty_pending.discard(sid)

    def _maybe_empty(self, sess: Session, now: float) -> None:
        """An active session whose processes are all gone ends by itself,
        except a `record` session that its client still watches."""
        if sess.state == "finishing" or (sess.state == "active" and sess.kind == "record"
                                         and (sess.owner is not None
                                              or now < sess.reclaim_until)):
            return
        # A PAM login's cgroup empties when systemd moves it into its logind
        # scope: link the scopes seen meanwhile before calling it over. What
        # root moved elsewhere is still the session's.
        if not sess.populated() and (self.logind is None or not self.logind.settle()
                                     or not sess.populated()) and not self._escaped(sess):
            if sess.state == "active":
                self._begin_end(sess, "cgroup-empty", None, 0.0)
            sess.deadline = now
        elif not sess.owned and sess.state == "active" and not sess.holds_leader():
            # A logind scope's leader (sshd's [priv], login) exits when the
            # login closes: as at a PAM close, linger bounds what is left.
            self._begin_end(sess, "leader-exited", None, self.cfg.linger)

    def _advance_endings(self, now: float) -> None:
        for sess in [self.sessions[sid] for sid in self.ending]:
            if sess.state == "ending" and now >= sess.deadline:
                sess.state = "finishing"
                sess.finish_at = now + END_GRACE
            elif sess.state == "finishing" and now >= sess.finish_at:
                self._finish(sess)

    def _guarded(self, sess: Session, fn: Any, *args: Any) -> None:
        """Calls a writer method; an output error is logged and counted, and
        the session goes on (its writer drops what it cannot write)."""
        try:
            fn(*args)
        except OutputError as e:
            if not sess.drop_detail:
                self.log("output-error", level="error", session=sess.id, file=sess.file,
                         error=str(e))
            sess.drop_detail = str(e)
        else:
            if sess.drop_detail and sess.drop_first_ts is not None:
                self._write_drop_gap(sess)

    def _on_drop(self, sess: Session, kind: fmt.ChunkKind, raw: bytes) -> None:
        if kind != fmt.ChunkKind.RECORDS:
            return
        at, frame, end = 0, fmt.RECORD_FRAME.size, len(raw)
        origin = sess.writer.header["clock"]["mono_ns"]
        while at + frame <= end:
            length = int.from_bytes(raw[at:at + 4], "little")
            start = at + frame
            t = raw[start]
            ts = int.from_bytes(raw[start + 8:start + 16], "little") - origin
            sess.dropped[t] = sess.dropped.get(t, 0) + 1
            sess.gap_dropped[t] = sess.gap_dropped.get(t, 0) + 1
            sess.sink.per_type[t] -= 1
            if sess.drop_first_ts is None:
                sess.drop_first_ts = ts
                self.buffered.add(sess.id)
            sess.drop_last_ts = max(sess.drop_last_ts, ts)
            self.dropped_total += 1
            at = start + length

    def _write_drop_gap(self, sess: Session) -> None:
        assert sess.drop_first_ts is not None
        gap = {"ts": sess.drop_first_ts, "end": sess.drop_last_ts, "reason": "output-error",
               "detail": sess.drop_detail,
               "dropped": {TYPE_NAMES.get(t, str(t)): n for t, n in sess.gap_dropped.items()}}
        try:
            sess.writer.add_map("gap", gap)
        except OutputError:
            return
        sess.gaps.append(gap)
        self.log("output-recovered", session=sess.id, file=sess.file,
                 dropped=sum(sess.gap_dropped.values()))
        sess.drop_first_ts = None
        sess.drop_detail = ""
        sess.gap_dropped = {}

    def _check_losses(self) -> None:
        assert self.programs is not None
        lost_all = self.programs.lost_all()
        for sess in self.sessions.values():
            lost = lost_all.get(sess.cg.id)
            if not lost:
                continue
            total = sum(lost.values())
            if total > sess.lost_written:
                if sess.lost_written == 0:
                    self.log("events-lost", level="warning", session=sess.id,
                             lost=sess.lost_names(lost))
                self._guarded(sess, _stats, sess, lost)
                sess.lost_written = total

    def _drop_idle(self, now: float) -> None:
        for c in list(self.clients.values()):
            if not c.owns and not c.waits and now - c.since > control.IDLE_TIMEOUT:
                self._close(c)

    # --- connections ---

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # EMFILE and the like: keep serving the others
                self.log("accept-failed", level="error", error=e.strerror)
                return
            sock.setblocking(False)
            c = Client(sock, time.monotonic())
            self.clients[sock.fileno()] = c
            self.sel.register(sock, selectors.EVENT_READ, c)
            c.pid, uid = _peer_cred(sock)
            if uid != 0:
                self.log("client-refused", level="warning", uid=uid)
                self._reply(c, control.error_reply(
                    control.E_PERMISSION, f"only root may use the control socket (uid {uid})"))
                c.closing = True
                self._flush_out(c)

    def _service(self, c: Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush_out(c)
        if not mask & selectors.EVENT_READ or c.closing:
            return
        try:
            data, fds, cut = control.recv_with_fds(c.sock, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, fds, cut = b"", [], False
        c.received += len(data)
        c.fds += [(c.received - 1, fd) for fd in fds + [-1] * cut]
        if not data:
            self._close(c)
            return
        c.buf += data
        while not c.closing:
            nl = c.buf.find(b"\n")
            if nl < 0:
                # Descriptors wait for their line's end: a few at most.
                why = (f"a request line is at most {control.MAX_LINE} bytes"
                       if len(c.buf) > control.MAX_LINE else
                       f"more than {control.RECV_FDS} descriptors came before a request "
                       "line ended" if len(c.fds) > control.RECV_FDS else "")
                if why:
                    self._reply(c, control.error_reply(control.E_TOO_LARGE, why))
                    c.closing = True
                    c.buf.clear()
                    self._flush_out(c)
                return
            if nl > control.MAX_LINE:
                self._reply(c, control.error_reply(
                    control.E_TOO_LARGE, f"a request line is at most {control.MAX_LINE} bytes"))
                c.closing = True
                self._flush_out(c)
                return
            line = bytes(c.buf[:nl])
            del c.buf[:nl + 1]
            end = c.consumed + nl
            c.consumed = end + 1
            fds = [fd for off, fd in c.fds if off <= end]
            c.fds = [(off, fd) for off, fd in c.fds if off > end]
            c.since = time.monotonic()
            reply = self._handle(c, line, fds)
            if reply is not None:
                self._reply(c, reply)

    def _reply(self, c: Client, obj: dict[str, Any]) -> None:
        c.out += control.encode(obj)
        if len(c.out) > MAX_OUT:
            self._close(c)
            return
        self._flush_out(c)

    def _flush_out(self, c: Client) -> None:
        if c.sock.fileno() < 0:
            return
        try:
            while c.out:
                n = c.sock.send(c.out)
                del c.out[:n]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(c)
            return
        if c.closing and not c.out:
            self._close(c)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.out else 0)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(c.sock, want, c)

    def _close(self, c: Client) -> None:
        fd = c.sock.fileno()
        if fd < 0:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(c.sock)
        self.clients.pop(fd, None)
        c.sock.close()
        _close_fds([f for _, f in c.fds])
        c.fds.clear()
        for sid in c.owns:
            sess = self.sessions.get(sid)
            if sess is not None and sess.state == "active":
                # A `record` client that went away without `end`: the
                # session ends like a PAM one, when its processes do.
                self.log("client-gone", session=sid)
                sess.owner = None
                self._begin_end(sess, "client-gone", None, self.cfg.linger)
        for sess in self.sessions.values():
            if c in sess.waiters:
                sess.waiters.remove(c)

    # --- requests ---

    def _handle(self, c: Client, line: bytes, fds: list[int]) -> dict[str, Any] | None:
        """One request line and the descriptors that came with it: a request
        takes what it uses out of fds; the rest are closed here."""
        try:
            req = control.decode(line)
            op = req.get("op")
            _check_fds(req, fds)
            if op == "status":
                return {"ok": True, **self.status()}
            if op == "list":
                return {"ok": True, "sessions": [s.summary() for s in self.sessions.values()]}
            if op == "start":
                return self._op_start(c, req, fds)
            if op == "end":
                return self._op_end(c, req)
            if op == "reattach":
                return self._op_reattach(c, req, fds)
            raise control.ControlError(control.E_UNKNOWN_OP, f"unknown op {op!r} (ops: "
                                       + ", ".join(control.OPS) + ")")
        except control.ControlError as e:
            return control.error_reply(e.code, str(e).removeprefix("sessrec daemon: ")
                                       .removesuffix(f" ({e.code})"))
        except Exception as e:  # a bug must cost one request, not the daemon
            self.log("request-failed", level="error", error=repr(e))
            return control.error_reply(control.E_FAILED, f"internal error: {e!r}")
        finally:
            _close_fds(fds)

    def status(self) -> dict[str, Any]:
        assert self.programs is not None
        now = time.monotonic()
        recent = sum(n for t, n in self.rate if now - t <= 10.0)
        lost_all = self.programs.lost_all()
        return {
            "pid": os.getpid(), "version": __version__, "started_at": self.started_at,
            "uptime_s": round(now - self.started_mono, 3), "config": self.cfg.source,
            "programs": [f"{c}:{e}" for c, e in _attached(self.programs)],
            "events": list(self.cfg.events), "ring_size": self.cfg.ring_size,
            "race_check": self.programs.cfg.race_check,  # off on a kernel without it
            "sessions_active": len(self.sessions), "sessions_total": self.sessions_total,
            "events_total": sum(sum(s.sink.per_type) for s in self.sessions.values())
            + sum(int(e.get("events", 0)) for e in self.ended.values()),
            "events_per_second": round(recent / 10.0, 1),
            "lost_total": sum(sum(v.values()) for v in lost_all.values()),
            "dropped_total": self.dropped_total,
            "orphan_records": self.dispatcher.orphan_records,
            "output_dir": self.cfg.output_dir,
        }

    def _op_start(self, c: Client, req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        assert self.programs is not None and self.mount is not None
        pid = _field(req, "pid", int)
        kind = _field(req, "kind", str)
        if kind not in control.KINDS:
            raise _bad(f"kind must be one of {', '.join(control.KINDS)}, not {kind!r}")
        if pid <= 1:
            raise _bad("pid must be a process other than init")
        command = _field(req, "command", list, required=False) or []
        if not all(isinstance(a, str) for a in command) or len(command) > 4096:
            raise _bad("command must be a list of strings")
        cwd = _field(req, "cwd", str, required=False)
        output = _field(req, "output", str, required=False)
        force = _field(req, "force", bool, required=False) or False
        sealing = _field(req, "seal", bool, required=False) is not False
        passed = _field(req, "output_fd", bool, required=False) or False
        login = _login(req.get("login"))
        unknown = set(req) - {"v", "op", "pid", "kind", "command", "cwd", "output", "force",
                              "login", "seal", "output_fd"}
        if unknown:
            raise _bad(f"unknown field {sorted(unknown)[0]!r}")
        if output is not None and not output.startswith("/"):
            raise _bad("output must be an absolute path")
        if passed and (output is None or kind != "record"):
            raise _bad("output_fd is for a record session, with its output path")
        real_uid = _proc_uid(pid)
        if real_uid is None:
            raise control.ControlError(control.E_NOT_FOUND, f"no process {pid}")
        uid = login.get("uid", real_uid)
        assert isinstance(uid, int)
        name = login.get("user")
        user = name if isinstance(name, str) else _user(uid)
        if not self.cfg.enabled:
            return {"ok": True, "recorded": False, "reason": "recording is disabled "
                    "(enabled = false)"}
        if not self.cfg.records_user(user, uid):
            return {"ok": True, "recorded": False,
                    "reason": f"user {user} (uid {uid}) is not recorded ([users])"}
        stream: BinaryIO | None = None
        if passed:  # checked before a spare is taken: a refusal costs nothing
            try:
                stream = _passed_output(fds.pop())
            except SessrecError as e:
                raise _bad(str(e)) from None
        spare = self.spares.popleft() if self.spares else None
        self._want_spares.set()
        session_id = spare.id if spare is not None else str(uuid.uuid4())
        wall_ns = time.time_ns()
        if output is None:
            output = self.default_output(user, uid, session_id, wall_ns)
        if stream is None:
            try:
                check_writable(output, force)
            except SessrecError as e:
                if spare is not None:
                    self.spares.appendleft(spare)
                raise control.ControlError(control.E_FAILED, str(e)) from None
        if cwd is None:
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = "/"
        try:
            if spare is not None:
                cg = spare.cg
                self.programs.adopt(cg.id, spare.ring)
            else:
                cg = SessionCgroup.create(session_id, self.mount, self.cfg.cgroup_root)
        except SessrecError as e:
            if stream is not None:
                stream.close()
            raise control.ControlError(control.E_FAILED, str(e)) from None

        def join() -> None:
            try:
                cg.procs_file.write_text(str(pid))
            except OSError as e:
                raise control.ControlError(
                    control.E_NOT_FOUND if e.errno == errno.ESRCH else control.E_FAILED,
                    f"cannot move process {pid} into the session: {e.strerror}") from None

        try:
            sess = self.open_session(
                session_id=session_id, kind=kind, pid=pid, uid=uid, user=user, cg=cg,
                output=output, force=force, sealing=sealing, command=command, cwd=cwd,
                login=login, wall_ns=wall_ns, owner=c if kind == "record" else None,
                join=join, stream=stream)
        except control.ControlError:
            raise
        except SessrecError as e:
            raise control.ControlError(control.E_FAILED, str(e)) from None
        if sess.owner is not None:
            c.owns.add(session_id)
        return {"ok": True, "recorded": True, "session": session_id, "file": output,
                "cgroup": str(cg.path), "cgroup_id": cg.id}

    def _op_reattach(self, c: Client, req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        """A `record` client whose daemon went away hands its session file to
        the new one: the session continues in it (resume.py), or, continued
        already (the daemon could open the file), is the client's again."""
        from recorder import resume

        sid = _field(req, "session", str)
        unknown = set(req) - {"v", "op", "session"}
        if unknown:
            raise _bad(f"unknown field {sorted(unknown)[0]!r}")
        done = self.ended.get(sid)
        if done is not None:
            return {"ok": True, **done, "already_ended": True}
        sess = self.sessions.get(sid)
        if sess is None:
            if sid not in self.waiting:
                raise control.ControlError(control.E_NOT_FOUND, f"no session {sid!r}")
            path, st, _ = self.waiting[sid]
            try:
                stream = _passed_output(fds.pop(), resume.file_id(st))
            except SessrecError as e:
                raise _bad(str(e)) from None
            try:
                sess = resume.resume(self, path, stream)
            except (OSError, ValueError, KeyError, SessrecError) as e:
                self._give_up(path, st, str(e))
                raise control.ControlError(control.E_FAILED, f"session {sid} cannot be "
                                           f"continued: {e}") from None
            self.waiting.pop(sid, None)
            if sess is None:
                raise control.ControlError(control.E_NOT_FOUND, f"session {sid} is over "
                                           "(its cgroup is gone, or its file complete)")
            sess.owner = c
            self._adopt_resumed(sess)
        elif sess.kind != "record" or sess.state != "active":
            raise _bad(f"session {sid} is not an active record session")
        else:
            try:  # the same file, or refused
                _passed_output(fds.pop(), sess.file_id).close()
            except SessrecError as e:
                raise _bad(str(e)) from None
        sess.owner = c
        c.owns.add(sid)
        self.log("client-back", session=sid, file=sess.file)
        return {"ok": True, "session": sid, "file": sess.file, "cgroup": str(sess.cg.path),
                "cgroup_id": sess.cg.id}

    def default_output(self, user: str, uid: int, session_id: str, wall_ns: int) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", user)[:64] or str(uid)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall_ns // 10**9))
        return os.path.join(self.cfg.output_dir, f"{stamp}-{safe}-{session_id}.srec")

    def open_session(self, *, session_id: str, kind: str, pid: int, uid: int, user: str,
                     cg: SessionCgroup, output: str, force: bool, sealing: bool,
                     command: list[str], cwd: str, login: dict[str, str | int], wall_ns: int,
                     owner: Client | None, join: Callable[[], None],
                     owned: bool = True, stream: BinaryIO | None = None) -> Session:
        """Starts recording a session in cg (its ring registered), whose
        processes join() puts in it: a move into the daemon's own cgroup, or
        (a logind scope, owned=False) an adoption of those already there.
        stream: the file its client opened and passed (closed here on
        failure, and then its client removes it), else output is created.
        On failure nothing is left, but a cgroup that is not the daemon's."""
        from recorder import audit

        assert self.programs is not None
        writer: SessionWriter | None = None
        try:
            # The ring first: records of processes adopted already wait in
            # it while the file is made, rather than being lost.
            self.programs.add_session(cg.id)
            auditing = audit.AuditSession(session_id, output, pid, sender=self.audit_sender)
            header = session_header(
                session_id=session_id, cg=cg, leader_pid=pid, uid=uid, command=command,
                cwd=cwd, clock=(wall_ns, time.monotonic_ns()),
                audit_header=auditing.start(),
                extra={"kind": kind, **({"login": login} if login else {}),
                       **self.programs.header_fields()})
            self.expect_login_scope(cg.id, kind, uid, header["audit_session_id"])
            key = seal.seal_key_path(None) if sealing else None
            sealer = None if key is None else seal.start_file(key)
            writer = SessionWriter(output, header, force=force, sealer=sealer, stream=stream)
            st = os.fstat(writer.fileno())
            start = proc_start(owner.pid) if owner is not None else None
            sess = Session(id=session_id, kind=kind, pid=pid, uid=uid, user=user, file=output,
                           cg=cg, writer=writer, sink=SessionSink(cg.id, writer),
                           auditing=auditing, started_at=header["started_at"],
                           owner=owner, tty_until=time.monotonic() + TTY_FOR, owned=owned,
                           file_id=(st.st_dev, st.st_ino), passed=stream is not None,
                           client=None if start is None or owner is None
                           else (owner.pid, start))
            writer.on_drop = lambda k, raw: self._on_drop(sess, k, raw)
            self.dispatcher.sinks[cg.id] = sess.sink
            self.sel.register(self.programs.ring_fd(cg.id), selectors.EVENT_READ, cg.id)
            join()
        except BaseException:
            self.dispatcher.sinks.pop(cg.id, None)
            self._unwatch_ring(cg.id)
            self.programs.remove_session(cg.id)
            if owned:
                cg.remove()
            if writer is not None:
                with contextlib.suppress(SessrecError):
                    writer.close(None)
                if stream is None:
                    with contextlib.suppress(OSError):
                        os.unlink(output)
            if stream is not None:
                stream.close()
            raise
        self.sessions[session_id] = sess
        self.by_cg[cg.id] = sess
        if kind == "pam" or not owned:
            self.tty_pending.add(session_id)
        self.sessions_total += 1
        self._save_state(sess)
        self.log("session-start", session=session_id, kind=kind, user=user, uid=uid, pid=pid,
                 audit_session=header["audit_session_id"], login_uid=header["login_uid"],
                 file=output, cgroup=str(cg.path))
        return sess

    def expect_login_scope(self, cgroup_id: int, kind: str, uid: int,
                           audit_session: int | None) -> None:
        """Where logind runs, pam_systemd has systemd move a PAM login into
        user-UID.slice/session-N.scope (N its audit session id) right after
        the hook: the programs do not flag that one move tampered."""
        assert self.programs is not None and self.mount is not None
        root = self.mount.path / self.cfg.logind_root
        if kind != "pam" or audit_session is None or not root.is_dir():
            return
        scope = root / f"user-{uid}.slice" / f"session-{audit_session}.scope"
        path = "/" + str(scope.relative_to(self.mount.path))
        if not self.programs.set_login_scope(cgroup_id, path):
            self.log("login-scope-too-long", level="warning", scope=path,
                     note="its move will show as tampered")

    def _op_end(self, c: Client, req: dict[str, Any]) -> dict[str, Any] | None:
        sid = _field(req, "session", str)
        reason = _field(req, "reason", str, required=False) or "ended"
        if not re.fullmatch(r"[a-z0-9-]{1,32}", reason):
            raise _bad("reason must be 1 to 32 of a-z, 0-9 and '-'")
        status = _field(req, "exit_status", int, required=False)
        linger = req.get("linger")
        if linger is not None and (type(linger) not in (int, float) or not
                                   0 <= linger <= 86400 * 7):
            raise _bad("linger must be a number of seconds from 0 to 604800")
        wait = _field(req, "wait", bool, required=False)
        sess = self.sessions.get(sid)
        if sess is None:
            done = self.ended.get(sid)
            if done is None:
                raise control.ControlError(control.E_NOT_FOUND, f"no session {sid!r}")
            return {"ok": True, **done, "already_ended": True}
        if linger is None:
            linger = 0.0 if sess.kind == "record" else self.cfg.linger
        if sess.state == "active":
            self._begin_end(sess, reason, status, float(linger))
            self._maybe_empty(sess, time.monotonic())
        if wait is False:
            return {"ok": True, "session": sid, "ending": True}
        sess.waiters.append(c)
        c.waits += 1
        return None

    def _begin_end(self, sess: Session, reason: str, status: int | None,
                   linger: float) -> None:
        sess.state = "ending"
        sess.end_reason = reason
        sess.exit_status = status
        sess.deadline = time.monotonic() + linger
        self.ending.add(sess.id)

    def _finish(self, sess: Session) -> None:
        """The end of a session: drain, move leftovers out, trailer, cleanup."""
        assert self.programs is not None
        self.programs.consume_all()
        lost = self.programs.lost(sess.cg.id)
        reason = sess.end_reason
        escaped = self._escaped(sess)
        if not sess.populated() and not escaped:
            reason = "cgroup-empty" if reason != "client-gone" else reason
        # Left running: moved out of the daemon's cgroup, left in systemd's
        # scopes or where root moved them; recorded no more either way.
        left = sess.cg.remove() if sess.owned else sess.cg.pids()
        left += escaped
        left += [p for cg in sess.linked for p in cg.pids()]
        self.programs.remove_members(left)
        self._unwatch_ring(sess.cg.id)
        ring = self.programs.retire(sess.cg.id)
        if ring is not None:  # unregistered by the spare thread: it waits for RCU
            self.retired.append((sess.cg.id, ring))
            self._want_spares.set()
        self.programs.forget_lost(sess.cg.id)
        self.dispatcher.sinks.pop(sess.cg.id, None)
        if sess.drop_first_ts is not None:
            self._guarded(sess, sess.writer.flush)  # and the gap map, if it can
        extra: dict[str, Any] = {"left_running": left}
        if sess.tty is not None:
            extra["tty"] = sess.tty
        if sess.gaps:
            extra["gaps"] = sess.gaps
        if sess.dropped:
            extra["dropped"] = {TYPE_NAMES.get(t, str(t)): n for t, n in sess.dropped.items()}
        trailer = session_trailer(sess.sink, lost, sess.exit_status, reason, sess.auditing,
                                  extra)
        trailer["lost"] = sess.lost_names(lost)
        complete = True
        try:
            sess.writer.close(trailer)
        except OutputError as e:
            complete = False
            self.log("output-error", level="error", session=sess.id, file=sess.file,
                     error=str(e), note="the file has no trailer")
            with contextlib.suppress(SessrecError):
                sess.writer.close(None)
        del self.sessions[sess.id]
        del self.by_cg[sess.cg.id]
        self.ending.discard(sess.id)
        self.tty_pending.discard(sess.id)
        with contextlib.suppress(OSError):
            (self.state_dir / f"{sess.id}.json").unlink()
        discarded = complete and sess.kind == "pam" and self._no_user_program(sess)
        summary = {"session": sess.id, "file": sess.file, "end_reason": reason,
                   "counts": trailer["counts"], "lost": trailer["lost"], "left_running": left,
                   "events": sum(trailer["counts"].values()), "complete": complete,
                   **({"discarded": True} if discarded else {})}
        self.ended[sess.id] = summary
        while len(self.ended) > ENDED_KEPT:
            self.ended.popitem(last=False)
        self.log("session-end", session=sess.id, kind=sess.kind, user=sess.user, pid=sess.pid,
                 audit_session=sess.writer.header["audit_session_id"], file=sess.file,
                 end_reason=reason, events=summary["events"],
                 lost=sum(trailer["lost"].values()), dropped=sum(sess.dropped.values()),
                 left_running=left, discarded=discarded)
        if sess.owner is not None:
            sess.owner.owns.discard(sess.id)
        for w in sess.waiters:
            w.waits -= 1
            self._reply(w, {"ok": True, **summary})

    def _escaped(self, sess: Session) -> list[int]:
        assert self.programs is not None
        return sess.sink.escaped(self.programs, sess.pids())

    def _unwatch_ring(self, cgroup_id: int) -> None:
        assert self.programs is not None
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(self.programs.ring_fd(cgroup_id))

    def _no_user_program(self, sess: Session) -> bool:
        """A PAM login whose user side ran no program (a port forwarding
        without a shell: docs/NODE.md) is no session: its file is removed."""
        try:
            if pam.user_side_ran(sess.file):
                return False
            os.unlink(sess.file)
        except (OSError, SessrecError) as e:
            self.log("output-error", level="error", session=sess.id, file=sess.file,
                     error=str(e), note="kept: cannot tell whether the login ran a program")
            return False
        self.log("session-discarded", session=sess.id, user=sess.user, file=sess.file,
                 reason="no program ran on the login's side (a port forwarding without a shell)")
        return True

    # --- restart ---

    def _save_state(self, sess: Session) -> None:
        state = {"session": sess.id, "kind": sess.kind, "pid": sess.pid, "uid": sess.uid,
                 "user": sess.user, "file": sess.file, "cgroup": str(sess.cg.path),
                 "owned": sess.owned, "linked": [str(cg.path) for cg in sess.linked],
                 "file_id": sess.file_id, "passed": sess.passed, "client": sess.client}
        path = self.state_dir / f"{sess.id}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(state, f)

    def _resume_sessions(self) -> None:
        """Continues the sessions an earlier daemon left (module docstring)."""
        from recorder import resume

        assert self.programs is not None and self.mount is not None
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                sess = resume.resume(self, path)
            except resume.FileUnreachable as e:
                self._wait_for_client(path, e)
                continue
            except (OSError, ValueError, KeyError, SessrecError) as e:
                self.log("resume-failed", level="error", state=str(path), error=str(e))
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            if sess is not None:
                self._adopt_resumed(sess)
        # The spare sessions an earlier daemon left: empty cgroups, no state.
        root = self.mount.path / self.cfg.cgroup_root
        for d in root.iterdir() if root.is_dir() else ():
            if d.is_dir() and d.name not in self.sessions and d.name not in self.waiting:
                with contextlib.suppress(OSError):
                    d.rmdir()  # a cgroup with processes stays

    def _adopt_resumed(self, sess: Session) -> None:
        assert self.programs is not None
        now = time.monotonic()
        if sess.kind == "record" and sess.owner is None and _alive(sess.client):
            sess.reclaim_until = now + RESUME_WAIT  # its client's exit status is due
        self.sessions[sess.id] = sess
        self.by_cg[sess.cg.id] = sess
        self.sessions_total += 1
        self.sel.register(self.programs.ring_fd(sess.cg.id), selectors.EVENT_READ, sess.cg.id)
        self._maybe_empty(sess, now)

    def _wait_for_client(self, path: Path, e: SessrecError) -> None:
        """A session whose file its client passed (`record -o`), at a path
        this daemon cannot open: continued when the client hands the file
        again (`reattach`), given up when the client is gone, or after
        RESUME_WAIT s."""
        from recorder import resume

        st = resume.read_state(path)
        sid = str(st["session"])
        client = st.get("client")
        if not _alive(client):
            self._give_up(path, st, f"{e}; its client ({_who(client)}) is gone, and no one "
                          "else can hand the file again")
            return
        self.waiting[sid] = (path, st, time.monotonic() + RESUME_WAIT)
        self.log("resume-waiting", session=sid, file=st["file"], why=str(e),
                 client=_who(client), wait_s=RESUME_WAIT)

    def _give_up(self, path: Path, st: dict[str, Any], why: str) -> None:
        """A session that cannot be continued: its processes go on, unrecorded,
        and the file keeps what it holds, without a trailer."""
        assert self.mount is not None
        self.waiting.pop(str(st["session"]), None)
        cg_path = Path(st["cgroup"])
        left: list[int] = []
        if st.get("owned", True) and cg_path.is_dir():
            left = SessionCgroup.existing(cg_path, self.mount).remove()
        with contextlib.suppress(OSError):
            path.unlink()
        self.log("resume-failed", level="error", session=st["session"], file=st["file"],
                 error=why, left_running=left,
                 note="not continued: the file ends where the last daemon left it, "
                 "without a trailer")

    def _expire_waiting(self, now: float) -> None:
        for path, st, until in list(self.waiting.values()):
            if now >= until:
                self._give_up(path, st, f"cannot open {st['file']}, and its client did not "
                              f"hand the file again within {RESUME_WAIT:g} s")

    # --- retention ---

    def _retention(self) -> None:
        """Removes old session files, oldest first; never an active one."""
        active = {s.file for s in self.sessions.values()}
        files: list[tuple[float, int, Path]] = []
        for p in Path(self.cfg.output_dir).glob("*.srec"):
            if str(p) in active:
                continue
            with contextlib.suppress(OSError):
                st = p.stat()
                files.append((st.st_mtime, st.st_size, p))
        files.sort()
        total = sum(size for _, size, _ in files)
        now = time.time()
        for mtime, size, p in files:
            old = (self.cfg.retention_max_age is not None
                   and now - mtime > self.cfg.retention_max_age)
            big = (self.cfg.retention_max_total_size is not None
                   and total > self.cfg.retention_max_total_size)
            if not (old or big):
                continue
            try:
                p.unlink()
            except OSError as e:
                self.log("retention-failed", level="error", file=str(p), error=e.strerror)
                continue
            total -= size
            self.log("retention-removed", file=str(p), bytes=size,
                     why="max_age" if old else "max_total_size")


def _stats(sess: Session, lost: dict[int, int]) -> None:
    write_lost_stats(sess.writer, lost)


def _attached(programs: Programs) -> list[tuple[str, str]]:
    from recorder.loader import tracepoints

    return tracepoints(files=programs.cfg.program_files)


def _bad(msg: str) -> control.ControlError:
    return control.ControlError(control.E_BAD_REQUEST, msg)


def _field(req: dict[str, Any], name: str, typ: type, required: bool = True) -> Any:
    v = req.get(name)
    if v is None:
        if required:
            raise _bad(f"field {name!r} is missing")
        return None
    if type(v) is not typ:
        raise _bad(f"field {name!r} must be {typ.__name__}")
    return v


def _login(v: object) -> dict[str, str | int]:
    """The `login` map of a start request: untrusted (PAM items from the
    client side of an SSH connection), so each value is checked."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad("login must be an object")
    out: dict[str, str | int] = {}
    for k, val in v.items():
        want = LOGIN_KEYS.get(k)
        if want is None:
            raise _bad(f"login has an unknown key {k!r} (keys: {', '.join(LOGIN_KEYS)})")
        if val is None:
            continue
        if type(val) is not want:
            raise _bad(f"login.{k} must be {want.__name__}")
        if isinstance(val, int):
            if k == "uid" and not 0 <= val < 2**32 - 1:
                raise _bad("login.uid must be from 0 to 4294967294")
            if k == "remote_port" and not 0 <= val <= 65535:
                raise _bad("login.remote_port must be from 0 to 65535")
        elif not isinstance(val, str):
            raise _bad(f"login.{k} must be {want.__name__}")
        elif len(val) > 256 or any(ord(ch) < 32 or ord(ch) == 127 for ch in val):
            raise _bad(f"login.{k} must be at most 256 characters, without control characters")
        out[k] = val
    return out


def _check_fds(req: dict[str, Any], fds: list[int]) -> None:
    """A request carries the descriptors it says it does, and no other."""
    if -1 in fds:
        raise _bad(f"too much ancillary data: a request carries at most one descriptor "
                   f"(more than {control.RECV_FDS} came, and were closed)")
    op = req.get("op")
    want = int(op == "reattach" or (op == "start" and req.get("output_fd") is True))
    if len(fds) != want:
        raise _bad(f"the request carries {len(fds)} descriptor(s) (SCM_RIGHTS) and needs "
                   f"{want}" + ("" if not want else ": output_fd says the session file comes "
                                "with it" if op == "start" else ": the session file"))


def _passed_output(fd: int, file_id: tuple[int, int] | None = None) -> BinaryIO:
    """The session file a client opened and passed: a regular file, open for
    writing, not for appending (the writer cuts a failed write back to the
    last whole chunk); empty, or with file_id (a `reattach`) that file.
    Raises SessrecError, with fd closed."""
    try:
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        why = ("is not a regular file" if not stat.S_ISREG(st.st_mode)
               else "is not open for writing"
               if flags & os.O_ACCMODE not in (os.O_WRONLY, os.O_RDWR)
               else "is open for appending" if flags & os.O_APPEND
               else "is not the session's file"
               if file_id is not None and (st.st_dev, st.st_ino) != file_id
               else f"is not empty ({st.st_size} bytes)" if st.st_size and file_id is None
               else "")
    except OSError as e:
        why = f"cannot be used ({e.strerror})"
    if why:
        os.close(fd)
        raise SessrecError(f"the descriptor passed for the session file {why}")
    return os.fdopen(fd, "wb", buffering=0)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
    fds.clear()


def _alive(client: object) -> bool:
    """Whether a client saved as [pid, start time] still runs."""
    if not isinstance(client, (list, tuple)) or len(client) != 2:
        return False
    return proc_start(int(client[0])) == int(client[1])


def _who(client: object) -> str:
    if isinstance(client, (list, tuple)) and client:
        return f"`sessrec record`, pid {client[0]}"
    return "unknown"


def _proc_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _peer_cred(sock: socket.socket) -> tuple[int, int]:
    """The peer's (pid, uid)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, _ = _UCRED.unpack(raw)
    return int(pid), int(uid)


def proc_start(pid: int) -> int | None:
    """A process's start time (clock ticks after boot), which with its pid
    names it across pid reuse; None when it is gone."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_bytes()
        return int(stat_line[stat_line.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def sd_notify(message: str) -> None:
    """Tells systemd (Type=notify) how the daemon is doing: a datagram on
    $NOTIFY_SOCKET, no library. Nothing to do without systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    addr = "\0" + path[1:] if path.startswith("@") else path
    with contextlib.suppress(OSError), socket.socket(
            socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(message.encode(), addr)

