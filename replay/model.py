"""The process model of a session: who ran what, under which parent, for how
long, and what each process touched.

Built in one pass over the session's events (ProcessModel.build, over
replay.events.with_paths: the events with their resolved paths), or fed
event by event (ProcessModel.feed) by a tool that
streams, such as `sessrec replay --children` or the ECS export. Memory grows with the number of
processes, plus one small record per open and connect when index=True; a
model that keeps no exited process (keep=False, the ECS export's) holds
only the live ones and their ancestors.

How the tree is made:

- A fork creates the child under the forking process. Lineage follows forks:
  a process whose parent exits stays under that parent in the tree, and is
  *orphaned*; the kernel reparents it (to init or a subreaper), which later
  events show as a new ppid, kept in Process.ppids.
- A pid seen without a fork (the session leader, or a process that entered
  the session from outside, or whose fork was lost) is attached to the live
  process of its ppid if there is one, else it is a root.
- A pid used again after its exit (pid reuse) is a new Process.
- Threads (tid != pid) belong to their process: their events count there,
  and their tids are listed in Process.threads.
- An exec replaces the program of the same process: Process.execs is the
  chain, in order, failed attempts included (ExecInfo.ret < 0).

A session file is untrusted, and a small one can hold millions of events, so
what the model keeps is bounded (the constants below): at most MAX_PROCESSES
processes (later ones are counted in forks_left_out and left_out, and
limit_warning() says so), the first MAX_EXECS execs of each process
(Process.program is always its latest successful one), MAX_THREADS tids and
MAX_PPIDS ppid changes per process, and ARGV_BUDGET bytes of argv and exec
paths in all: past it, an exec keeps the first ARGV_KEPT bytes of its argv
and of its paths, marked truncated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from replay.base import Session, no_gc
from replay.events import PathResolver
from sessrec import format as fmt
from sessrec import linux
from sessrec.event import ARGV_TRUNCATED, Chdir, Connect, Event, Exec, Exit, Fork, Open, failed

# What a model keeps at most (see the module docstring). About 1 KB a
# process: MAX_PROCESSES of them and ARGV_BUDGET stay well under 512 MiB.
MAX_PROCESSES = 200_000
MAX_EXECS = 64
MAX_THREADS = 4096
MAX_PPIDS = 64
ARGV_BUDGET = 64 << 20
ARGV_KEPT = 1024


class ExecInfo(NamedTuple):
    """One exec of a process (also a failed attempt)."""

    ts: int
    ret: int  # 0 or -errno
    path: bytes | None  # the executable, resolved; None if unknown
    requested_path: bytes  # as passed
    argv: list[bytes]  # argv[0] included; maybe truncated
    argc: int
    argv_truncated: bool


class FileAccess(NamedTuple):
    """One open() of a process (index=True)."""

    ts: int
    path: bytes | None  # resolved; None if unknown
    requested_path: bytes
    flags: int
    ret: int  # fd or -errno


class Connection(NamedTuple):
    """One connect() of a process (index=True)."""

    ts: int
    family: str  # "inet", "inet6", "unix", "af_N"
    address: str | None
    port: int | None
    protocol: str | None
    ret: int


class Process:
    """One process (thread group) of the session, from its fork (or first
    event) to its exit (or the end of the file). Times are ns since the
    header's clock (event ts)."""

    __slots__ = (
        "children",
        "comm",
        "connections",
        "end_ns",
        "execs",
        "exit_code_raw",
        "files",
        "forked",
        "inherited",
        "last_ns",
        "n_chdirs",
        "n_children",
        "n_connects",
        "n_events",
        "n_execs",
        "n_failed",
        "n_opens",
        "parent",
        "pid",
        "ppid",
        "ppids",
        "program",
        "seq",
        "start_ns",
        "threads",
        "version",
    )

    def __init__(self, seq: int, pid: int, ppid: int, ts: int, comm: bytes, forked: bool):
        self.seq = seq  # order of appearance in the session
        self.pid = pid
        self.ppid = ppid  # the latest ppid seen
        self.ppids: list[tuple[int, int]] = [(ts, ppid)]  # (ts, ppid) at each change
        self.parent: Process | None = None  # lineage: the process that forked it
        self.children: list[Process] = []  # empty in a model that keeps no exited ones
        self.n_children = 0
        self.forked = forked  # its fork is in the file
        self.start_ns = ts
        self.last_ns = ts  # its latest event
        self.end_ns: int | None = None
        self.exit_code_raw: int | None = None
        self.comm = comm
        self.execs: list[ExecInfo] = []  # the first MAX_EXECS
        self.n_execs = 0
        self.program: ExecInfo | None = None  # the latest successful exec
        # The program it runs before it execs: its parent's when it forked.
        self.inherited: ExecInfo | None = None
        self.threads: set[int] = set()
        self.files: list[FileAccess] = []
        self.connections: list[Connection] = []
        self.n_events = 0
        self.n_opens = 0
        self.n_connects = 0
        self.n_chdirs = 0
        self.n_failed = 0
        # Counts changes to what describes it (its program, working
        # directory, comm, ppid, parent, start): a tool may keep its own
        # rendering of the process while this stays the same.
        self.version = 0

    def __repr__(self) -> str:
        return f"<Process {self.pid} {fmt.text(self.comm)!r} seq={self.seq}>"

    @property
    def programs(self) -> list[ExecInfo]:
        """The exec chain: every successful exec kept, in order, and the
        latest one."""
        progs = [ex for ex in self.execs if ex.ret == 0]
        if self.program is not None and (not progs or progs[-1] is not self.program):
            progs.append(self.program)
        return progs

    @property
    def exit_status(self) -> linux.WaitStatus | None:
        return None if self.exit_code_raw is None else linux.decode_exit(self.exit_code_raw)

    @property
    def duration_ns(self) -> int | None:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    @property
    def orphaned(self) -> bool:
        """Its parent exited while it was still running."""
        p = self.parent
        if p is None or p.end_ns is None:
            return False
        return self.end_ns is None or self.end_ns > p.end_ns

    @property
    def reparented(self) -> bool:
        """Its ppid changed during the session (reparenting after orphaning)."""
        return len(self.ppids) > 1

    def ancestors(self) -> Iterator[Process]:
        p = self.parent
        while p is not None:
            yield p
            p = p.parent


class ProcessModel:
    """The processes of a session, as a forest.

    processes: every process in order of appearance; roots: those without a
    parent in the session; by_pid: the latest process of each pid.
    index=False keeps counts only (no per-process lists of files and
    connections).

    keep=False, for a tool that streams (the ECS export): the model keeps
    no process once it has exited, but as the parent or program of one
    alive; processes and children stay empty, by_pid holds the live
    processes, and its memory is theirs. It makes the same processes,
    with the same seq, as a model that keeps them."""

    def __init__(self, leader_pid: int | None = None, *, index: bool = True,
                 keep: bool = True):
        self.leader_pid = leader_pid
        self.index = index
        self.keep = keep
        self.made = 0  # processes made (their seq), at most MAX_PROCESSES
        self._first: Process | None = None
        self.processes: list[Process] = []
        self.roots: list[Process] = []
        self.by_pid: dict[int, Process] = {}
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.events = 0
        self._leader: Process | None = None  # the first process of leader_pid
        self.left_out = 0  # events of processes past MAX_PROCESSES
        self.forks_left_out = 0  # forks of processes past MAX_PROCESSES
        self._argv_bytes = 0  # argv kept, against ARGV_BUDGET

    @classmethod
    def build(
        cls, session: Session, *, index: bool = True, resolver: PathResolver | None = None
    ) -> ProcessModel:
        """Read the whole session once. session.damage tells whether it ended early."""
        model = cls(session.header["leader_pid"], index=index)
        feed = model.feed
        with no_gc():
            resolve = (resolver or PathResolver.for_session(session)).apply
            for ev in session.records():
                path = resolve(ev)
                feed(ev, path)
        return model

    @property
    def leader(self) -> Process | None:
        """The session's first process: the leader (header leader_pid) if it
        appears in the file, else the first process seen."""
        return self._first if self._leader is None else self._leader

    # --- building -----------------------------------------------------------

    def release(self) -> None:
        """Break the parent/child cycles, so that the model, once dropped, is
        freed by reference counting: a pass of the cyclic collector over a
        model built with it paused (no_gc) cost `tree` a tenth of its time.
        The model is not usable afterwards."""
        for proc in self.processes:
            proc.children = []
        self.roots = []

    def limit_warning(self) -> str | None:
        """The warning to print when the session had more processes than
        the model keeps, else None."""
        if not self.left_out and not self.forks_left_out:
            return None
        return (f"more than {MAX_PROCESSES} processes: later ones are left out of the "
                f"process model ({self.forks_left_out} forks; {self.left_out} events shown "
                "without their process)")

    def _new(self, pid: int, ppid: int, ts: int, comm: bytes, forked: bool) -> Process | None:
        """A new process, or None past MAX_PROCESSES."""
        if self.made >= MAX_PROCESSES:
            return None
        proc = Process(self.made, pid, ppid, ts, comm, forked)
        self.made += 1
        if self.keep:
            self.processes.append(proc)
        if self._first is None:
            self._first = proc
        self.by_pid[pid] = proc
        if pid == self.leader_pid and self._leader is None:
            self._leader = proc
        return proc

    def _exec_info(self, ev: Exec, path: bytes | None) -> ExecInfo:
        argv = ev.argv
        requested = ev.requested_path
        truncated = bool(ev.flags & ARGV_TRUNCATED)
        # (a file's paths may be 1 MiB: counted with the argv)
        size = sum(map(len, argv)) + len(argv) + len(requested) + len(path or b"")
        if self._argv_bytes + size > ARGV_BUDGET:
            kept: list[bytes] = []
            left = ARGV_KEPT
            for a in argv:
                if left <= 0:
                    break
                kept.append(a[:left])
                left -= len(a) + 1
            argv, truncated, size = kept, True, 3 * ARGV_KEPT
            requested = requested[:ARGV_KEPT]
            path = None if path is None else path[:ARGV_KEPT]
        self._argv_bytes += size
        return ExecInfo(ev.ts, ev.ret, path, requested, argv, ev.argc, truncated)

    def _attach(self, proc: Process, parent: Process | None) -> None:
        proc.parent = parent
        if parent is None:
            self.roots.append(proc)
        else:
            parent.n_children += 1
            if self.keep:
                parent.children.append(proc)

    def _arrive(self, pid: int, ppid: int, ts: int, comm: bytes) -> Process:
        """A pid not (or no longer) alive in the model: a new process,
        attached to the live process of its ppid if there is one."""
        parent = self.by_pid.get(ppid)  # before _new: pid may equal ppid
        proc = self._new(pid, ppid, ts, comm, False)
        if proc is None:  # past MAX_PROCESSES: one not kept, for this event only
            self.left_out += 1
            return Process(-1, pid, ppid, ts, comm, False)
        self._attach(proc, parent if parent is not None and parent.end_ns is None else None)
        return proc

    def feed(self, ev: Event, path: bytes | None = None) -> Process:
        """Apply one event with its resolved path (replay.events.with_paths
        gives both); return the process it belongs to (for a fork, the
        parent). The hot path of every model-based tool."""
        ts = ev.ts
        pid = ev.pid
        ppid = ev.ppid
        if self.first_ns is None:
            self.first_ns = ts
        self.last_ns = ts
        self.events += 1
        proc = self.by_pid.get(pid)
        if proc is None or proc.end_ns is not None:
            proc = self._arrive(pid, ppid, ts, ev.comm)
        elif ppid != proc.ppid:
            proc.ppid = ppid
            proc.version += 1
            if len(proc.ppids) < MAX_PPIDS:
                proc.ppids.append((ts, ppid))
        if ev.comm != proc.comm:
            proc.comm = ev.comm
            proc.version += 1
        proc.n_events += 1
        proc.last_ns = ts
        if ev.tid != pid and len(proc.threads) < MAX_THREADS:
            proc.threads.add(ev.tid)
        # n_failed counts failed(ev), but exits (an exit is its status, shown
        # apart), tested per type: a call per event was a tenth of `tree`.
        if type(ev) is Open:
            proc.n_opens += 1
            if ev.ret < 0:  # failed(ev), for an open
                proc.n_failed += 1
            if self.index:
                proc.files.append(FileAccess(ts, path, ev.requested_path, ev.open_flags, ev.ret))
        elif type(ev) is Exec:
            proc.n_execs += 1
            if ev.ret < 0:  # failed(ev), for an exec
                proc.n_failed += 1
            keep = len(proc.execs) < MAX_EXECS
            if keep or ev.ret == 0:
                info = self._exec_info(ev, path)
                if keep:
                    proc.execs.append(info)
                if ev.ret == 0:
                    proc.program = info
                    proc.version += 1
        elif type(ev) is Fork:
            self._fork(proc, ev.child_pid, ts)
        elif type(ev) is Exit:
            proc.end_ns = ts
            proc.exit_code_raw = ev.exit_code_raw
            if not self.keep and self.by_pid.get(pid) is proc:
                del self.by_pid[pid]  # an exited pid is a new process when it comes again
        elif type(ev) is Connect:
            proc.n_connects += 1
            if failed(ev):
                proc.n_failed += 1
            if self.index:
                a = linux.decode_sockaddr(ev.sockaddr)
                proto = linux.protocol_name(a.family, ev.sock_type, ev.protocol)
                proc.connections.append(
                    Connection(ts, a.family_name, a.address, a.port, proto, ev.ret)
                )
        elif type(ev) is Chdir:
            proc.n_chdirs += 1
            proc.version += 1
            if failed(ev):
                proc.n_failed += 1
        return proc

    def _fork(self, parent: Process, cpid: int, ts: int) -> None:
        early = self.by_pid.get(cpid)
        if (
            early is not None
            and early.end_ns is None
            and not early.forked
            and early.ppid == parent.pid
            and early is not parent
        ):
            # The child's first event came before its fork (a lost or late
            # fork event). It stays where it is unless it is the newest
            # root, which moves under its parent (never under itself).
            early.forked = True
            early.version += 1
            early.start_ns = min(early.start_ns, ts)
            early.inherited = parent.program or parent.inherited
            if early.parent is None and self.roots[-1] is early and _not_above(early, parent):
                self.roots.pop()
                self._attach(early, parent)
            return
        child = self._new(cpid, parent.pid, ts, parent.comm, True)
        if child is None:
            self.forks_left_out += 1
            return
        child.inherited = parent.program or parent.inherited  # what it runs until it execs
        self._attach(child, parent)

    # --- queries ------------------------------------------------------------

    def walk(self, roots: list[Process] | None = None) -> Iterator[tuple[int, Process]]:
        """(depth, process) in tree order, depth first; iterative, so a deep
        chain of forks cannot exhaust the stack."""
        stack = [(0, p) for p in reversed(self.roots if roots is None else roots)]
        while stack:
            depth, proc = stack.pop()
            yield depth, proc
            stack.extend((depth + 1, c) for c in reversed(proc.children))

    def descendants(self, proc: Process) -> Iterator[Process]:
        """The processes below proc (not proc itself)."""
        for _depth, p in self.walk(proc.children):
            yield p

    def find(self, pid: int) -> list[Process]:
        """Every process that had this pid (more than one after pid reuse)."""
        return [p for p in self.processes if p.pid == pid]


def _not_above(proc: Process, other: Process, steps: int = 256) -> bool:
    """Whether proc is certainly not an ancestor of other. Past `steps`
    levels the answer is no: the walk is bounded, as a hostile file can make
    a chain of any depth."""
    if not proc.n_children:
        return True
    for n, p in enumerate(other.ancestors()):
        if p is proc or n >= steps:
            return False
    return True


def running_program(proc: Process, at: int | None = None) -> ExecInfo | None:
    """What proc runs at time at (default: its last event): its latest
    successful exec before then, or, if it had not exec'd, the program its
    parent ran when it forked it (Process.inherited). None if no exec of its
    lineage is in the file."""
    prog = proc.program
    if prog is None:
        return proc.inherited
    if at is None or prog.ts <= at:
        return prog
    for ex in reversed(proc.execs):  # an exec out of time order: at most MAX_EXECS
        if ex.ret == 0 and ex.ts <= at:
            return ex
    return proc.inherited
