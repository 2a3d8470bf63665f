"""`sessrec find`."""

from __future__ import annotations

import argparse
import os

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command


def _session_number(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n < 4294967295:
        raise argparse.ArgumentTypeError(f"{value!r} is not an audit session id")
    return n


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "find",
        help="list the session files of an audit session",
        description="List the session files (*.srec) under DIR, recursively, whose recording "
        "belongs to audit session N (the `ses=` of auditd's records; `audit_session_id` in "
        "`sessrec info`), one path per line, oldest first. Exits with 1 when there is none. "
        "Reads the index that `sessrec ls` keeps.",
        example_lines=(
            "sessrec find --audit-session 42 /var/log/sessrec",
            "sessrec find --audit-session 42 /var/log/sessrec | xargs -n1 sessrec info",
            "ausearch -m USER_LOGIN -ua alice -i    # the ses= of alice's logins",
        ),
        notes="Audit session ids count up from 1 at every boot, so the same id can name\n"
        "sessions of different boots or hosts: --json shows each one's host and start time.",
        func=run,
    )
    p.add_argument("dir", metavar="DIR", nargs="?", default=".",
                   help="the directory to search (default: the current one)")
    p.add_argument("--audit-session", type=_session_number, required=True, metavar="N",
                   help="the audit session id")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.index import open_index
    from replay.listing import warn_sync
    from replay.text import json_text, printable

    index, stats = open_index(args.dir)
    with index:
        warn_sync(stats, index.db_path, io)
        rows = [r for r in index.sessions() if r.audit_session_id == args.audit_session]
    paths = [os.path.join(args.dir, r.file) for r in rows]
    if args.json:
        doc = {"sessions": [{"path": p, **r.as_dict()} for p, r in zip(paths, rows, strict=True)]}
        io.stdout.write(json_text(doc, io.stdout) + "\n")
    else:
        for path in paths:
            io.stdout.write(printable(path) + "\n")
    return ExitStatus.OK if rows else ExitStatus.ERROR
