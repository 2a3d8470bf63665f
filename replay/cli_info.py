"""`sessrec info`."""

from __future__ import annotations

import argparse
from typing import Any

from sessrec.cli import ExitStatus, Streams, add_command


def register(sub: Any) -> None:
    p = add_command(
        sub, "info",
        help="summarise a session file",
        description="Show who, what, when and how much: the header and trailer of a "
        "session file, with losses and whether the file is complete.",
        example_lines=("sessrec info build.srec",
                       "sessrec info --json build.srec | jq .counts"),
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.info import format_info, session_info
    from replay.text import json_text

    info = session_info(args.file)
    if args.json:
        io.stdout.write(json_text(info, io.stdout) + "\n")
    else:
        io.stdout.write(format_info(info))
    return ExitStatus.OK
