"""`sessrec info`."""

from __future__ import annotations

import argparse

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "info",
        help="summarise a session file",
        description="Show who, what, when and how much: the header and trailer of a "
        "session file, with losses and whether the file is complete. A completed file is "
        "summarised from its header and trailer alone; --check reads its events too, and "
        "exits with status 1 if it finds damage (or the file is cut short).",
        example_lines=("sessrec info build.srec",
                       "sessrec info --check build.srec",
                       "sessrec info --json build.srec | jq .counts"),
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--check", action="store_true",
                   help="read every event, not only the header and trailer, to find damage")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.info import format_info, session_info
    from replay.text import json_text

    info = session_info(args.file, check=args.check)
    if args.json:
        io.stdout.write(json_text(info, io.stdout) + "\n")
    else:
        io.stdout.write(format_info(info))
    if args.check and info["damage"] is not None:
        return ExitStatus.ERROR
    return ExitStatus.OK
