"""`sessrec search`."""

from __future__ import annotations

import argparse
import textwrap
import time
from typing import TYPE_CHECKING

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command
from sessrec.errors import UsageError

NOTES = """\
Terms of different options must all match (AND): --path /etc/shadow --user bob finds
bob's sessions that touched /etc/shadow. A repeated option matches any of its values
(OR): --dest 10.0.0.5 --dest 10.0.0.6. With --any, the event options (--path, --cmd,
--dest) match when any of them does; --user, --since and --until still must.

GLOB: * matches any run of characters, "/" included; ? one character; [abc] a set.
--path matches the paths of exec, open and chdir events: the kernel's (the file
opened, symlinks followed) where the session has them, else resolved to absolute
paths where the session allows; --cmd matches an exec's argv joined with spaces, its
executable's path, or its base name. --dest matches where the kernel connected (else
the address passed), and takes ADDR, ADDR:PORT, [IPV6]:PORT, :PORT, a network
(10.0.0.0/8), or a unix socket path or @name (a GLOB). --tampered matches events
flagged tampered (see `sessrec info`). --since and --until take a duration ago (90s,
30m, 12h, 7d, 2w), a date (2026-11-14) or a time (2026-11-14T10:00:00Z); times without
a zone are UTC. Failed attempts match too: the result is shown."""

if TYPE_CHECKING:
    from replay.index_query import Query


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "search",
        help="find sessions and events across session files",
        description=textwrap.fill(
            "Find the sessions under DIR (recursively) whose events match, and show "
            "the matching events: time, pid, program, type and details. Uses the same index as "
            "`sessrec ls`, updated from the files on every run.", width=88),
        example_lines=(
            "sessrec search /var/log/sessrec --path /etc/shadow --since 7d",
            "sessrec search /var/log/sessrec --any --path /etc/shadow --dest 10.0.0.5 --since 7d",
            "sessrec search /var/log/sessrec --cmd 'curl *' --user alice --sessions-only",
            "sessrec search /var/log/sessrec --dest 10.0.0.0/8:22 --json | jq '.sessions[].file'",
            "sessrec search /var/log/sessrec --tampered --since 30d",
        ),
        notes=NOTES,
        func=run,
    )
    p.add_argument("dir", metavar="DIR", help="the directory of session files")
    p.add_argument("--path", action="append", default=[], metavar="GLOB",
                   help="a file or executable path (repeatable)")
    p.add_argument("--cmd", action="append", default=[], metavar="GLOB",
                   help="a command line, executable path or name (repeatable)")
    p.add_argument("--dest", action="append", default=[], metavar="ADDR[:PORT]",
                   help="a connect destination (repeatable)")
    p.add_argument("--tampered", action="store_true",
                   help="events flagged tampered: the kernel's object contradicts what the "
                        "process passed, or a process moved out of its session's cgroup")
    p.add_argument("--user", action="append", default=[], metavar="NAME",
                   help="the recorded user, by name or uid (repeatable)")
    p.add_argument("--since", metavar="WHEN", help="events (or sessions) from this time on")
    p.add_argument("--until", metavar="WHEN", help="events (or sessions) before this time")
    p.add_argument("--any", action="store_true",
                   help="match when any event option matches, not all of them")
    p.add_argument("--sessions-only", action="store_true",
                   help="list the matching sessions without their events")
    p.add_argument("--max-events", type=int, default=20, metavar="N",
                   help="matching events shown per session (default 20; 0: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--reindex", action="store_true",
                   help="rebuild the index from the files instead of updating it")


def build_query(args: argparse.Namespace, now_ns: int) -> Query:
    from replay.index_query import Query
    from replay.terms import parse_dest, parse_time

    for option in ("path", "cmd", "user"):
        if any(not v for v in getattr(args, option)):
            raise UsageError(f"--{option} needs a non-empty value")
    if args.max_events < 0:
        raise UsageError("--max-events must be 0 or more")
    since = None if args.since is None else parse_time(args.since, now_ns, "--since")
    until = None if args.until is None else parse_time(args.until, now_ns, "--until")
    return Query(
        paths=list(args.path), cmds=list(args.cmd), dests=[parse_dest(d) for d in args.dest],
        users=list(args.user), since_ns=since, until_ns=until, any_kind=args.any,
        tampered=args.tampered,
    )


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay import listing
    from replay.index import open_index
    from replay.text import json_text

    query = build_query(args, time.time_ns())
    max_events = None if args.max_events == 0 else args.max_events
    index, stats = open_index(args.dir, reindex=args.reindex)
    with index:
        matches = index.search(query, max_events=max_events,
                               with_events=not args.sessions_only)
    listing.warn_sync(stats, index.db_path, io)
    listing.warn_sessions([m.session for m in matches], io)
    if args.json:
        doc = {
            "directory": args.dir,
            "index": index.db_path,
            "sessions": [m.as_dict() for m in matches],
        }
        if args.sessions_only:
            for s in doc["sessions"]:
                del s["events"]
        io.stdout.write(json_text(doc, io.stdout) + "\n")
    else:
        io.stdout.write(listing.format_matches(matches, max_events=max_events))
        if not matches:
            io.stderr.write("sessrec: no session matches\n")
    return ExitStatus.OK
