"""`sessrec export`."""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from sessrec.cli import ExitStatus, Streams, add_command
from sessrec.errors import SessrecError


def register(sub: Any) -> None:
    p = add_command(
        sub, "export",
        help="export a session's events for a SIEM",
        description="Write every event of a session file, one JSON object per line.",
        example_lines=(
            "sessrec export build.srec --format jsonl > build.jsonl",
            "sessrec export build.srec | jq 'select(.type==\"exec\") | .argv'",
        ),
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", default="jsonl", choices=["jsonl"], help="output format")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.jsonl import write_jsonl
    from replay.reader import open_session

    out: TextIO = io.stdout
    f: TextIO | None = None
    if args.output:
        try:
            f = open(args.output, "w", encoding="utf-8")
        except OSError as e:
            raise SessrecError(f"cannot write {args.output}: {e.strerror}") from None
        out = f
    try:
        with open_session(args.file, strict=False) as session:
            write_jsonl(session, out)
            warning = session.damage_warning()
            if warning:
                io.warn(warning)
    finally:
        if f is not None:
            f.close()
    return ExitStatus.OK
