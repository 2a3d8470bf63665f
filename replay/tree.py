"""The process tree of `sessrec tree`, as text.

    1000 -bash (/bin/bash)  [exit 3, 25.0 ms, 4 files, 0 connections, 2 failed]
    ├── 1001 env 'A=1\\nB=2' (/usr/bin/env)  [killed by SIGKILL, ...]
    └── 2001…2300 /bin/true x300  [exit 0, 0.31 ms each, 0 files, 0 connections]

Consecutive sibling leaves that ran the same argv with the same outcome
collapse into one line with their count (after a multiplication sign). Box
drawing when the output takes UTF-8, ASCII otherwise. All text from the
file goes through replay.text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from replay.model import ExecInfo, Process, ProcessModel, running_program
from replay.text import duration_text, show
from replay.timeline import Style, argv_text, exit_text


@dataclass(frozen=True)
class Glyphs:
    tee: str
    last: str
    pipe: str
    blank: str
    times: str
    ellipsis: str
    arrow: str


# Deeper than this, lines are indented no further and say their depth: a
# hostile file's chain of 20,000 forks would otherwise draw 2.4 GB.
MAX_DRAWN_DEPTH = 64

UNICODE = Glyphs("├── ", "└── ", "│   ", "    ", "\u00d7", "…", "→")
ASCII = Glyphs("|-- ", "`-- ", "|   ", "    ", "x", "...", "->")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _program_text(prog: ExecInfo | None, proc: Process, limit: int | None, g: Glyphs) -> str:
    if prog is None:
        return f"[{show(proc.comm)}]"  # no exec of its lineage in the file
    text = argv_text(prog.argv) if prog.argv else "''"
    if limit is not None and len(text) > limit:
        text = text[:limit] + g.ellipsis
    argv0 = prog.argv[0] if prog.argv else None
    shown = prog.path if prog.path is not None else prog.requested_path
    if shown != argv0:
        text += f" ({show(shown)})"
    return text


def _chain(proc: Process, g: Glyphs) -> str | None:
    progs = proc.programs
    if len(progs) < 2:
        return None
    names = [show((p.path or p.requested_path).rsplit(b"/", 1)[-1]) for p in progs]
    return f"exec {f' {g.arrow} '.join(names)}"


def _status(proc: Process, style: Style) -> str:
    raw = proc.exit_code_raw
    if raw is None:
        return "no exit seen"
    st = exit_text(raw)
    if st.startswith("code "):
        st = "exit " + st[5:]
    return style.fail(st) if raw else st


def _facts(proc: Process, style: Style, g: Glyphs, leader_pid: int | None) -> list[str]:
    facts = [_status(proc, style)]
    d = proc.duration_ns
    if d is not None:
        facts.append(duration_text(d))
    facts.append(_plural(proc.n_opens, "file"))
    facts.append(_plural(proc.n_connects, "connection"))
    if proc.n_failed:
        facts.append(style.fail(f"{proc.n_failed} failed"))
    chain = _chain(proc, g)
    if chain:
        facts.append(chain)
    if proc.threads:
        facts.append(_plural(len(proc.threads) + 1, "thread"))
    if proc.orphaned:
        facts.append("orphaned")
    if proc.reparented:
        facts.append(f"reparented to {proc.ppid}")
    if not proc.forked and proc.parent is None:
        if proc.pid == leader_pid:
            facts.append("session leader")
        else:
            facts.append(f"entered from ppid {proc.ppids[0][1]}")
    return facts


class _Group:
    """A run of identical sibling leaves."""

    __slots__ = ("procs",)

    def __init__(self, procs: list[Process]):
        self.procs = procs


def _key(proc: Process) -> tuple[object, ...] | None:
    """What makes two leaves identical; None for a process that never collapses."""
    if proc.children or proc.threads or proc.reparented or proc.n_failed:
        return None
    prog = running_program(proc)
    if prog is None:
        return (proc.comm, proc.exit_code_raw, proc.parent is None)
    return (tuple(prog.argv), prog.path, proc.exit_code_raw, proc.parent is None, proc.orphaned)


def _items(procs: list[Process], min_run: int | None) -> list[Process | _Group]:
    """procs, with runs of at least min_run identical leaves as groups."""
    if min_run is None or len(procs) < min_run:
        return list(procs)
    out: list[Process | _Group] = []
    i = 0
    n = len(procs)
    while i < n:
        key = _key(procs[i])
        j = i + 1
        if key is not None:
            while j < n and _key(procs[j]) == key:
                j += 1
        if j - i >= min_run:
            out.append(_Group(procs[i:j]))
        else:
            out.extend(procs[i:j])
        i = j
    return out


class TreeFormatter:
    """Renders a ProcessModel; see the module docstring."""

    def __init__(
        self,
        *,
        unicode: bool = True,
        style: Style | None = None,
        collapse: int | None = 3,
        argv_limit: int | None = 200,
    ):
        self.g = UNICODE if unicode else ASCII
        self.style = style or Style(False)
        self.collapse = collapse
        self.argv_limit = argv_limit
        self._programs: dict[tuple[object, ...], str] = {}

    def _program(self, proc: Process) -> str:
        """The program text of proc, cached: thousands of processes often
        run the same argv."""
        prog = running_program(proc)
        if prog is None:
            return _program_text(None, proc, self.argv_limit, self.g)
        key = (tuple(prog.argv), prog.path, prog.requested_path)
        text = self._programs.get(key)
        if text is None:
            if len(self._programs) > 4096:
                self._programs.clear()
            text = self._programs[key] = _program_text(prog, proc, self.argv_limit, self.g)
        return text

    def label(self, proc: Process, leader_pid: int | None = None) -> str:
        text = f"{proc.pid} {self._program(proc)}"
        return f"{text}  [{', '.join(_facts(proc, self.style, self.g, leader_pid))}]"

    def group_label(self, group: _Group) -> str:
        procs = group.procs
        first = procs[0]
        g = self.g
        text = f"{first.pid}{g.ellipsis}{procs[-1].pid} {self._program(first)}"
        text += f" {g.times}{len(procs)}"
        facts = [_status(first, self.style)]
        durations = [d for d in (p.duration_ns for p in procs) if d is not None]
        if durations:
            facts.append(f"{duration_text(sum(durations) // len(durations))} each")
        facts.append(_plural(sum(p.n_opens for p in procs), "file"))
        facts.append(_plural(sum(p.n_connects for p in procs), "connection"))
        if first.orphaned:
            facts.append("orphaned")
        return f"{text}  [{', '.join(facts)}]"

    def lines(self, model: ProcessModel, roots: list[Process] | None = None) -> Iterator[str]:
        """The tree, one line at a time (iterative: any depth)."""
        g = self.g
        collapse = self.collapse
        # (prefix for this line, prefix for its children, item, depth)
        stack: list[tuple[str, str, Process | _Group, int]] = []
        top = _items(model.roots if roots is None else roots, collapse)
        for item in reversed(top):
            stack.append(("", "", item, 0))
        while stack:
            prefix, child_prefix, item, depth = stack.pop()
            if isinstance(item, _Group):
                yield prefix + self.group_label(item)
                continue
            yield prefix + self.label(item, model.leader_pid)
            kids = _items(item.children, collapse)
            deep = depth + 1 > MAX_DRAWN_DEPTH
            for k, kid in reversed(list(enumerate(kids))):
                last = k == len(kids) - 1
                if deep:
                    line = f"{child_prefix}[depth {depth + 1}] {g.last if last else g.tee}"
                    stack.append((line, child_prefix, kid, depth + 1))
                    continue
                stack.append(
                    (
                        child_prefix + (g.last if last else g.tee),
                        child_prefix + (g.blank if last else g.pipe),
                        kid,
                        depth + 1,
                    )
                )


def summary(model: ProcessModel) -> str:
    """'3 processes, 1 orphaned' for the end of the tree."""
    procs = model.processes
    parts = [_plural(len(procs), "process", "processes")]
    orphans = sum(1 for p in procs if p.orphaned)
    if orphans:
        parts.append(f"{orphans} orphaned")
    running = sum(1 for p in procs if p.end_ns is None)
    if running:
        parts.append(f"{running} without an exit")
    return ", ".join(parts)
