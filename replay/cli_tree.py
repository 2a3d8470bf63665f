"""`sessrec tree`."""

from __future__ import annotations

import argparse
import os

from replay.cli_replay import add_color_option
from sessrec.cli import ExitStatus, Streams, Subparsers, add_command
from sessrec.errors import UsageError


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "tree",
        help="show the process tree of a session",
        description="Show who ran what under which parent: for each process its argv, exit "
        "code or signal, duration, and how many files it opened and connections it made. "
        "Consecutive identical sibling processes that ran nothing themselves collapse into "
        "one line (/bin/true x300). A process whose parent exited first is marked orphaned; "
        "one that the kernel then gave another parent, reparented.",
        example_lines=(
            "sessrec tree build.srec",
            "sessrec tree build.srec --pid 4242",
            "sessrec tree build.srec --no-collapse --full | less -R",
        ),
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--pid", type=int, metavar="PID", help="only the subtree of this process")
    p.add_argument("--no-collapse", action="store_true",
                   help="show every process, also runs of identical ones")
    p.add_argument("--full", action="store_true", help="do not shorten long argv")
    p.add_argument("--ascii", action="store_true",
                   help="draw with ASCII even when the output takes UTF-8")
    add_color_option(p)


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.base import no_gc

    with no_gc():
        return _run(args, io)


def _run(args: argparse.Namespace, io: Streams) -> int:
    from replay.model import ProcessModel
    from replay.reader import open_session
    from replay.text import ascii_safe, encodable, use_color
    from replay.timeline import Style
    from replay.tree import TreeFormatter, summary

    with open_session(args.file, strict=False) as session:
        model = ProcessModel.build(session, index=False)
        warnings = session.warnings()
    limit = model.limit_warning()
    roots = None
    if args.pid is not None:
        roots = model.find(args.pid)
        if not roots:
            raise UsageError(f"no process {args.pid} in {args.file}")
    utf8 = encodable(io.stdout)
    fmt = TreeFormatter(
        unicode=utf8 and not args.ascii,
        style=Style(use_color(args.color, io.stdout, os.environ)),
        collapse=None if args.no_collapse else 3,
        argv_limit=None if args.full else 200,
    )
    out = io.stdout
    for line in fmt.lines(model, roots):
        out.write((line if utf8 else ascii_safe(line)) + "\n")
    out.write(summary(model) + "\n")
    model.release()
    out.flush()
    for w in (*warnings, limit):
        if w:
            io.warn(w)
    return ExitStatus.OK
