"""`sessrec export`."""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
from collections.abc import Callable
from typing import TextIO

from sessrec.cli import ExitStatus, Streams, Subparsers, add_command
from sessrec.errors import SessrecError

FORMATS = ("jsonl", "teleport", "ecs")
# A text file hands what it was given to its binary file every 8 KiB (its
# _CHUNK_SIZE): a write system call per four ECS documents. With 256 KiB a
# document's write cost a third as much to a regular file, half to /dev/null
# (docs/PERFORMANCE.md).
_CHUNK_SIZE = 1 << 18


def _in_large_writes(out: TextIO) -> None:
    """Let out write in large pieces, unless it is line buffered (a terminal)."""
    if isinstance(out, io.TextIOWrapper) and not out.line_buffering:
        out._CHUNK_SIZE = _CHUNK_SIZE  # type: ignore[attr-defined]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub, "export",
        help="export a session's events for a SIEM",
        description="Write every event of a session file, one JSON object per line: "
        "sessrec's own JSON lines (jsonl, the default; docs/FORMAT.md), Teleport audit events "
        "(teleport: session.start, session.command, session.disk, session.network, "
        "session.process_exit, session.end), or Elastic Common Schema documents (ecs, ECS "
        "8.x, with the process fields Elastic's Session View uses). docs/EXPORTS.md has the "
        "mappings. A long export draws a progress bar on stderr when it is a terminal.",
        example_lines=(
            "sessrec export build.srec --format jsonl > build.jsonl",
            "sessrec export build.srec | jq 'select(.type==\"exec\") | .argv'",
            "sessrec export build.srec --format teleport -o build.teleport.json",
            "sessrec export build.srec --format ecs | curl -s -H 'Content-Type: "
            "application/x-ndjson' --data-binary @- ...",
        ),
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", default="jsonl", choices=FORMATS, help="output format")
    p.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.base import Session
    from replay.ecs import write_ecs
    from replay.jsonl import write_jsonl
    from replay.progress import with_progress
    from replay.reader import open_session
    from replay.teleport import write_teleport

    writers: dict[str, Callable[[Session, TextIO], int]] = {
        "jsonl": write_jsonl, "teleport": write_teleport,
        "ecs": functools.partial(write_ecs, warn=io.warn),
    }
    writer = writers[args.format]
    out: TextIO = io.stdout
    f: TextIO | None = None
    if args.output:
        try:
            f = open(args.output, "w", encoding="utf-8")
        except OSError as e:
            raise SessrecError(f"cannot write {args.output}: {e.strerror}") from None
        out = f
    _in_large_writes(out)
    try:
        with open_session(args.file, strict=False) as session:
            writer(with_progress(session, io.stderr, out), out)
            if f is not None:
                f.flush()  # so that close() has nothing left that could fail
            for warning in session.warnings():
                io.warn(warning)
    except OSError as e:
        if f is None:
            raise  # stdout: main() says so
        raise SessrecError(f"cannot write {args.output}: {e.strerror or e}") from None
    finally:
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    return ExitStatus.OK
