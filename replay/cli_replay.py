"""`sessrec replay`."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command
from sessrec.errors import UsageError

if TYPE_CHECKING:
    from replay.timeline import Filters


def _positive(value: str) -> float:
    try:
        f = float(value)
    except ValueError:
        f = -1.0
    if not f > 0 or f == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return f


def add_color_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--color", choices=["auto", "always", "never"], default="auto",
        help="colour failures: auto (default) on a terminal unless NO_COLOR is set",
    )


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """The event filters of `replay` and `html` (replay/terms.py's terms)."""
    p.add_argument("--type", action="append", default=[], metavar="TYPE[,TYPE]",
                   help="only these event types: fork, exec, exit, open, connect, chdir "
                   "(repeat or separate with commas)")
    p.add_argument("--pid", type=int, metavar="PID", help="only events of this process")
    p.add_argument("--children", action="store_true",
                   help="with --pid: also the events of its descendants")
    p.add_argument("--path", metavar="GLOB", help="only opens, execs and chdirs of matching paths")
    p.add_argument("--dest", action="append", default=[], metavar="ADDR[:PORT]",
                   help="only connects to this destination: 10.0.0.5, 10.0.0.5:443, "
                   "[2001:db8::1]:443, :53, 10.0.0.0/8, /run/x.sock (repeat for any of them)")
    p.add_argument("--failed", action="store_true",
                   help="only failures: errors, non-zero exits and signals")
    p.add_argument("--since", metavar="TIME", help="only events at or after TIME")
    p.add_argument("--until", metavar="TIME", help="only events at or before TIME")


def filters_from(args: argparse.Namespace, wall_ns: int) -> Filters:
    """The Filters of add_filter_options' options; wall_ns: the header's
    clock, for times given since the start."""
    from replay.terms import parse_dest, parse_when
    from replay.timeline import Filters, parse_types

    if args.children and args.pid is None:
        raise UsageError("--children needs --pid")
    return Filters(
        types=parse_types(args.type) if args.type else None,
        pid=args.pid,
        children=args.children,
        path=args.path,
        dests=tuple(parse_dest(d) for d in args.dest),
        failed=args.failed,
        since=None if args.since is None else parse_when(args.since, wall_ns, "--since"),
        until=None if args.until is None else parse_when(args.until, wall_ns, "--until"),
    )


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "replay",
        help="show a session as a timeline, one line per event",
        description="Show every event of a session file in order: time since the start, pid "
        "and program, event type, and details (argv of an exec; path, flags and result of an "
        "open; destination and result of a connect; exit code or signal). Failures stand out. "
        "Control characters in argv, paths and names are shown escaped (\\x1b), never sent "
        "to the terminal. Filters combine: an event is shown when it matches all of them.",
        example_lines=(
            "sessrec replay build.srec",
            "sessrec replay build.srec --failed",
            "sessrec replay build.srec --type exec,connect --pid 4242 --children",
            "sessrec replay build.srec --path '/etc/*' --since 2m --until 2026-11-21T11:20:00Z",
            "sessrec replay build.srec --dest 10.0.0.5 --dest '[2001:db8::1]:443'",
            "sessrec replay build.srec --speed 4 --max-gap 2",
            "sessrec replay live.srec --follow",
            "sessrec replay build.srec --audit-log   # with auditd's records of its audit session",
        ),
        notes="Times: --since/--until take seconds since the start of the recording (1.5, "
        "500ms, 2m, 1h) or an RFC 3339 time with a zone. --path matches the resolved path "
        "and the path as passed, as a glob where * also matches '/'.",
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    add_filter_options(p)
    p.add_argument("--speed", type=_positive, metavar="N",
                   help="play back at the original pace, N times faster (1 = real time)")
    p.add_argument("--max-gap", type=_positive, default=5.0, metavar="SECONDS",
                   help="with --speed: wait at most this long between two events (default 5)")
    p.add_argument("--follow", "-f", action="store_true",
                   help="keep reading a session that is still being recorded, until it ends")
    p.add_argument("--audit-log", nargs="?", const="/var/log/audit/audit.log", metavar="PATH",
                   help="interleave auditd's records of the session's audit session from PATH "
                   "and its rotated files PATH.1, PATH.2, ... (default /var/log/audit/audit.log; "
                   "docs/AUDIT.md)")
    add_color_option(p)


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.reader import open_session
    from replay.terms import parse_dest
    from replay.text import use_color
    from replay.timeline import Pacer, Style, write_timeline

    if args.children and args.pid is None:
        raise UsageError("--children needs --pid")
    if args.audit_log is not None and args.follow:
        raise UsageError("--audit-log reads the audit log once: it cannot --follow")
    for d in args.dest:  # a bad term fails before the file is opened
        parse_dest(d)
    with open_session(args.file, strict=False) as session:
        filters = filters_from(args, session.header["clock"]["wall_ns"])
        style = Style(use_color(args.color, io.stdout, os.environ))
        pacer = None if args.speed is None else Pacer(args.speed, args.max_gap)
        if args.audit_log is not None:
            from replay.audit_timeline import write_merged_timeline
            from replay.auditlog import audit_events_of

            audit = audit_events_of(session, args.audit_log, warn=io.warn)
            write_merged_timeline(session, io.stdout, audit, filters=filters, style=style,
                                  pacer=pacer)
        else:
            write_timeline(session, io.stdout, filters=filters, style=style, pacer=pacer,
                           follow=args.follow)
        io.stdout.flush()
        for warning in session.warnings():
            io.warn(warning)
    return ExitStatus.OK

