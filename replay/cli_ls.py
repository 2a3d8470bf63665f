"""`sessrec ls`."""

from __future__ import annotations

import argparse
import textwrap

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "ls",
        help="list the sessions in a directory",
        description=textwrap.fill(
            "List the session files (*.srec) under DIR, recursively, oldest first: "
            "session id, user, audit session, start, duration, event counts, and whether each "
            "file is complete, truncated (the recording did not finish) or damaged. Reads an "
            "index kept in DIR/.sessrec-index.sqlite (or under $XDG_CACHE_HOME/sessrec when DIR "
            "is not writable), updated from the files on every run.", width=88),
        example_lines=(
            "sessrec ls /var/log/sessrec",
            "sessrec ls --json /var/log/sessrec | jq '.sessions[] | select(.status != "
            "\"complete\")'",
        ),
        func=run,
    )
    p.add_argument("dir", metavar="DIR", nargs="?", default=".",
                   help="the directory to list (default: the current one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--reindex", action="store_true",
                   help="rebuild the index from the files instead of updating it")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay import listing
    from replay.index import open_index
    from replay.text import json_text

    index, stats = open_index(args.dir, reindex=args.reindex)
    with index:
        rows = index.sessions()
    listing.warn_sync(stats, index.db_path, io)
    listing.warn_sessions(rows, io)
    if args.json:
        doc = {
            "directory": args.dir,
            "index": index.db_path,
            "sessions": [r.as_dict() for r in rows],
            "unreadable": [{"file": n, "error": e} for n, e in stats.unreadable],
        }
        io.stdout.write(json_text(doc, io.stdout) + "\n")
    else:
        io.stdout.write(listing.format_sessions(rows))
    return ExitStatus.OK
