"""`sessrec html`: one self-contained HTML page for a session.

The page (replay/html_assets/report.{html,css,js}, inlined here) loads nothing
from the network: a Content-Security-Policy forbids it, and everything it
needs is in the file. It shows a summary, a warning when events were lost or
the file is damaged, the process tree, a timeline with one lane per process
(canvas, drawing only the lanes and pixels in view, so that sessions of
millions of events stay usable), the list of events, and the details of what
is clicked, with a search box and type filters.

The session is embedded as JSON in a <script type="application/json">
element. The JSON is ASCII with "<", ">" and "&" written as \\u escapes, so
no text from the file (an argv holding "</script>", U+2028) can end the
element early or be read as markup; the page's script parses it with
JSON.parse and inserts text with textContent only.

Layout of the data (columns rather than objects, to keep a million events
small and fast to parse): strings are interned in `strings`; events are
parallel arrays in file order: `t` type, `dt` time since the previous event
in microseconds (delta-coded), `p` process index, `s` string (detail), `c`
string (comm), `r` return value, `x` type-specific (open flags, exit status, child pid, or the
executable's string for exec). Processes are parallel arrays in tree order.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import NamedTuple

from replay.base import Session, describe_gap, no_gc
from replay.cache import Budget
from replay.events import PathResolver
from replay.model import ProcessModel
from replay.summary import Tally
from replay.text import printable, show
from replay.timeline import (
    READ_FAILED_NOTE,
    EventFilter,
    Filters,
    address_text,
    argv_text,
    exit_text,
)
from sessrec import __version__, linux
from sessrec.event import (
    READ_FAILED,
    TAMPERED,
    TYPE_NAMES,
    Cgroup,
    Chdir,
    Connect,
    Exec,
    Exit,
    Fork,
    Open,
    failed,
)
from sessrec.linux import ERRNO_NAMES

ASSETS = "html_assets"
_HERE = os.path.dirname(os.path.abspath(__file__))
_DATA_MARK = "<!--sessrec:data-->"
_STYLE_MARK = "/*sessrec:style*/"
_SCRIPT_MARK = "/*sessrec:script*/"

# The page's timeline holds at most this many events: each costs about 190
# bytes while the page is built (a million: 190 MB, a 24 MB page), and a
# small file can hold hundreds of millions.
MAX_PAGE_EVENTS = 1_000_000

CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:"
)


# The page's distinct texts hold at most this many characters: a small file
# can make every path 4 KiB and new (a 600 MB page, and more than the 512 MiB
# every read command keeps to while it is built).
MAX_PAGE_TEXT = 32 << 20
TEXT_LEFT_OUT = (f"[text left out: the page holds {MAX_PAGE_TEXT >> 20} MiB of text; "
                 "`sessrec replay` shows it]")


class _Strings:
    """Interned strings: each distinct text once, referred to by index; past
    MAX_PAGE_TEXT characters, a new text is TEXT_LEFT_OUT (counted)."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.items: list[str] = []
        self.size = 0
        self.left_out = 0

    def __call__(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            if self.size + len(text) > MAX_PAGE_TEXT and text != TEXT_LEFT_OUT:
                self.left_out += 1
                return self(TEXT_LEFT_OUT)
            self.size += len(text)
            i = self.index[text] = len(self.items)
            self.items.append(text)
        return i


def _path(path: bytes | None, requested: bytes | None) -> str:
    if path is not None:
        return show(path)
    if requested:
        return show(requested) + " (unresolved)"
    return "?"


def _us(ns: int) -> int:
    return ns // 1000


class Shown(NamedTuple):
    """What a page shows, against what was read."""

    processes: int
    events: int  # in the timeline
    read: int  # events read


def report_data(session: Session, name: str, filters: Filters | None = None) -> dict[str, object]:
    """The JSON document the page shows, read from session in one pass.
    filters (replay's): the timeline's events; the tree and the counts are
    the whole session's."""
    return _report_data(session, name, filters)[0]


def _report_data(session: Session, name: str,
                 filters: Filters | None) -> tuple[dict[str, object], Shown]:
    header = session.header
    keep = None if filters in (None, Filters()) else EventFilter(filters, header["leader_pid"])
    filtered_out = 0
    model = ProcessModel(header["leader_pid"], index=False)
    feed = model.feed
    strings = _Strings()
    # Caches: the same paths, argv, flags and addresses come back again and again.
    # (Each within a Budget: a hostile file's keys can be many and 1 MiB long.)
    path_idx: dict[tuple[bytes | None, bytes | None], int] = {}
    argv_idx: dict[tuple[bytes, ...], int] = {}
    flag_idx: dict[int, int] = {}
    addr_idx: dict[tuple[bytes, int, int], int] = {}
    comm_idx: dict[bytes, int] = {}
    path_kept, argv_kept, flag_kept, addr_kept, comm_kept = (
        Budget(), Budget(), Budget(4096), Budget(), Budget())

    def path_s(path: bytes | None, requested: bytes | None) -> int:
        key = (path, requested)
        i = path_idx.get(key)
        if i is None:
            i = path_kept.keep(path_idx, key, strings(_path(path, requested)),
                               len(path or b"") + len(requested or b""))
        return i

    t_col: list[int] = []
    dt_col: list[int] = []
    p_col: list[int] = []
    s_col: list[int] = []
    c_col: list[int] = []
    r_col: list[int] = []
    x_col: list[int] = []
    f_col: list[int] = []
    prev = 0
    tally = Tally(header)
    add = tally.add
    exit_texts: dict[int, int] = {}  # exit_code_raw -> its text's string
    exits_kept = Budget(4096)
    not_shown = 0  # events past MAX_PAGE_EVENTS
    # Everything built here lives until the page is written: the garbage
    # collector's passes over the growing heap would find nothing.
    with no_gc():
        resolver = PathResolver.for_session(session)
        resolve = resolver.apply
        for ev in session.records():
            path = resolve(ev)
            proc = feed(ev, path)
            add(ev)
            # (the filter sees every event: its own model for --children must)
            if keep is not None and not keep(ev, path):
                filtered_out += 1
                continue
            if proc.seq < 0:  # past the model's MAX_PROCESSES: left out (a warning says)
                continue
            if len(t_col) >= MAX_PAGE_EVENTS:  # still in the tree and the counts
                not_shown += 1
                continue
            s = -1
            r = 0
            x = 0
            if type(ev) is Open:
                s = path_s(path, ev.requested_path)
                r = ev.ret
                flags = ev.open_flags
                x = flag_idx.get(flags, -1)
                if x < 0:
                    x = flag_kept.keep(flag_idx, flags,
                                      strings("|".join(linux.open_flag_names(flags))), 0)
            elif type(ev) is Exec:
                argv = tuple(ev.argv)
                s = argv_idx.get(argv, -1)
                if s < 0:
                    s = argv_kept.keep(argv_idx, argv, strings(
                        argv_text(list(argv)) if argv else "''"), sum(map(len, argv)))
                x = path_s(path, ev.requested_path)
                r = ev.ret
            elif type(ev) is Connect:
                key = (ev.sockaddr, ev.sock_type, ev.protocol)
                s = addr_idx.get(key, -1)
                if s < 0:
                    a = linux.decode_sockaddr(key[0])
                    s = addr_kept.keep(addr_idx, key, strings(
                        address_text(a, linux.protocol_name(a.family, key[1], key[2]))),
                        len(key[0]))
                r = ev.ret
            elif type(ev) is Chdir:
                fd = ev.fd
                if fd == -1:
                    s = path_s(path, ev.requested_path)
                else:
                    s = strings(f"{_path(path, None)} (fd {fd})")
                r = ev.ret
            elif type(ev) is Exit:
                x = ev.exit_code_raw
                s = exit_texts.get(x, -1)
                if s < 0:
                    s = exits_kept.keep(exit_texts, x, strings(exit_text(x)), 0)
            elif type(ev) is Fork:
                x = ev.child_pid
            elif type(ev) is Cgroup:
                s = strings(f"pid {ev.moved_pid} moved to cgroup {show(ev.dst_path)}")
            if ev.flags & READ_FAILED and s >= 0:
                s = strings(f"{strings.items[s]} {READ_FAILED_NOTE}")
            if ev.flags & TAMPERED:  # replay/trust.py: shown on the event's text
                s = strings(strings.items[s] + "  [TAMPERED]" if s >= 0 else "[TAMPERED]")
            us = ev.ts // 1000
            t_col.append(ev.type)
            dt_col.append(us - prev)
            prev = us
            p_col.append(proc.seq)
            s_col.append(s)
            r_col.append(r)
            x_col.append(x)
            f_col.append(1 if failed(ev) else 0)
            c = comm_idx.get(ev.comm)
            if c is None:
                c = comm_kept.keep(comm_idx, ev.comm, strings(show(ev.comm)), len(ev.comm))
            c_col.append(c)

    order = [p for _depth, p in model.walk()]
    depth = {p.seq: d for d, p in model.walk()}
    seq_to_row = {p.seq: i for i, p in enumerate(order)}
    procs: dict[str, list[object]] = {k: [] for k in (
        "pid", "ppid", "parent", "depth", "start", "end", "last", "exit", "exit_text",
        "exit_short", "comm", "execs", "events", "opens", "connects", "failed", "orphaned",
        "threads")}
    for p in order:
        procs["pid"].append(p.pid)
        procs["ppid"].append(p.ppid)
        procs["parent"].append(-1 if p.parent is None else seq_to_row[p.parent.seq])
        procs["depth"].append(depth[p.seq])
        procs["start"].append(_us(p.start_ns))
        procs["end"].append(-1 if p.end_ns is None else _us(p.end_ns))
        procs["last"].append(_us(p.last_ns))
        procs["exit"].append(p.exit_code_raw)
        raw = p.exit_code_raw
        procs["exit_text"].append(-1 if raw is None else strings(exit_text(raw)))
        procs["exit_short"].append(-1 if raw is None else strings(exit_text(raw, short=True)))
        procs["comm"].append(strings(show(p.comm)))
        procs["execs"].append([
            [_us(e.ts), e.ret, strings(argv_text(e.argv) if e.argv else "''"),
             strings(_path(e.path, e.requested_path))]
            for e in p.execs
        ])
        procs["events"].append(p.n_events)
        procs["opens"].append(p.n_opens)
        procs["connects"].append(p.n_connects)
        procs["failed"].append(p.n_failed)
        procs["orphaned"].append(int(p.orphaned))
        procs["threads"].append(len(p.threads))
    p_col = [seq_to_row[s] for s in p_col]

    sm = tally.summary(session)
    damage = sm.damage
    lost = sm.lost
    end_us = prev if model.last_ns is None else _us(model.last_ns)
    wall_ns: int = header["clock"]["wall_ns"]
    summary = {
        "file": printable(name),
        "session_id": printable(header["session_id"]),
        "user": printable(header["user"]),
        "uid": header["uid"],
        "login_uid": header["login_uid"],
        "audit_session_id": header["audit_session_id"],
        "hostname": printable(header["hostname"]),
        "kernel": printable(header["kernel"]),
        "command": [printable(c) for c in header["command"]],
        "cwd": show(header["cwd"]),
        "started_at": printable(header["started_at"]),
        "ended_at": None if sm.ended_at is None else printable(sm.ended_at),
        "end_reason": None if sm.end_reason is None else printable(sm.end_reason),
        "duration_ns": sm.duration_ns,
        "exit_status": sm.exit_status,
        "counts": {printable(k): v for k, v in sm.counts.items()},
        "lost": {printable(k): v for k, v in lost.items() if v},
        "truncated": sm.truncated,
        "tampered": sm.tampered,
        "unknown_types": sm.unknown_types,
        "complete": sm.complete,
        "status": sm.status,
        "damage": None if damage is None else {
            "offset": damage.offset, "reason": printable(damage.reason),
            "truncated": damage.truncated,
        },
        "format_version": session.format_version,
        "events": len(t_col),
        "processes": len(order),
    }
    warnings = []
    if sm.tampered:
        warnings.append(f"{sm.tampered} events are flagged TAMPERED: the kernel's objects "
                        "contradict what the process passed, or a process moved out of its "
                        "session's cgroup (the kernel's version is the one shown)")
    if damage is not None:
        warnings.append(printable(damage.warning(name, len(t_col))))
    limit = model.limit_warning()
    model.release()
    if limit:
        warnings.append(limit + ".")
    forgot = resolver.limit_warning()
    if forgot:
        warnings.append(forgot[0].upper() + forgot[1:] + ".")
    if strings.left_out:
        warnings.append(f"{strings.left_out} texts (paths, argv) are left out of the page, "
                        f"which holds {MAX_PAGE_TEXT >> 20} MiB of distinct text; "
                        "`sessrec replay` shows them.")
    if filtered_out:
        warnings.append(f"The timeline shows the events that match the filters given; "
                        f"{filtered_out} others are in the tree and the counts only.")
    if not_shown:
        warnings.append(f"The timeline shows the first {len(t_col)} events; {not_shown} later "
                        "ones are in the tree and the counts only (`sessrec replay` shows all).")
    lost_total = sm.lost_total
    if lost_total:
        per = ", ".join(f"{v} {printable(k)}" for k, v in lost.items() if v > 0)
        warnings.append(f"{lost_total} events were lost during the recording ({per}): the "
                        "process tree and timeline may miss processes and events.")
    warnings += [printable(describe_gap(gap)) + "." for gap in session.gaps]
    if sm.unknown_types:
        warnings.append(f"{sm.unknown_types} events of types this sessrec does not "
                        "know were skipped.")
    shown = Shown(len(order), len(t_col), sum(sm.counts.values()))
    return {
        "version": 1,
        "generator": f"sessrec {__version__}",
        "generated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_ms": wall_ns / 1e6,
        "end_us": end_us,
        "summary": summary,
        "warnings": warnings,
        "strings": strings.items,
        "procs": procs,
        "ev": {"t": t_col, "dt": dt_col, "p": p_col, "s": s_col, "c": c_col, "r": r_col,
               "x": x_col, "f": f_col},
        "errno": {str(k): v for k, v in ERRNO_NAMES.items() if v != "-"},
        # Index: the type number; "" where there is none.
        "type_names": [TYPE_NAMES.get(t, "") for t in range(max(TYPE_NAMES) + 1)],
    }, shown


def script_json(data: object) -> str:
    """JSON that is safe inside <script type="application/json">: ASCII only
    (U+2028 and U+2029 escaped too), and "<", ">", "&" as \\u escapes, so that
    neither "</script>" nor "<!--" can appear in it."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    # Next to this module (package data, see pyproject.toml); not through
    # importlib.resources, which an editable install can confuse.
    with open(os.path.join(_HERE, ASSETS, name), encoding="utf-8") as f:
        return f.read()


def render(data: dict[str, object]) -> str:
    """The whole page."""
    page = _asset("report.html")
    style = _asset("report.css")
    script = _asset("report.js")
    for mark in (_DATA_MARK, _STYLE_MARK, _SCRIPT_MARK):
        if page.count(mark) != 1:
            raise AssertionError(f"report.html must hold {mark} exactly once")
    if "</script" in script.lower() or "</style" in style.lower():
        raise AssertionError("an asset would end its own element")
    page = page.replace("{{CSP}}", CSP)
    # Substitute in one pass, by position, so nothing inserted is searched again.
    pieces = {_STYLE_MARK: style, _SCRIPT_MARK: script, _DATA_MARK: script_json(data)}
    out = []
    pos = 0
    for at, mark in sorted((page.index(m), m) for m in pieces):
        out += [page[pos:at], pieces[mark]]
        pos = at + len(mark)
    out.append(page[pos:])
    return "".join(out)


def report(session: Session, name: str | None = None,
           filters: Filters | None = None) -> tuple[str, Shown]:
    """(the page, what it shows) for session; filters: report_data's."""
    data, shown = _report_data(session, name or os.path.basename(session.path), filters)
    return render(data), shown
