"""`sessrec html`."""

from __future__ import annotations

import argparse
import os
import textwrap
from typing import Any

from sessrec.cli import ExitStatus, Streams, add_command
from sessrec.errors import SessrecError


def register(sub: Any) -> None:
    p = add_command(
        sub, "html",
        help="write a self-contained HTML report of a session",
        description=textwrap.fill(
            "Write one HTML page that shows a session: a summary, the process tree, "
            "a timeline with one lane per process (exec, file and network markers), the events, "
            "search and type filters, and a warning when events were lost or the file is "
            "damaged. The page holds all its data and loads nothing from the network, so it can "
            "be mailed or attached to a ticket and opened offline.", width=88),
        example_lines=(
            "sessrec html build.srec -o build.html",
            "sessrec html /var/log/sessrec/6f1c2a9e.srec -o /tmp/incident.html && "
            "xdg-open /tmp/incident.html",
        ),
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="the page to write (default: FILE with .html instead of .srec, "
                   "in the current directory)")


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.html import report
    from replay.reader import open_session
    from replay.text import printable

    out = args.output
    if not out:
        base = os.path.basename(args.file)
        out = (base[: -len(".srec")] if base.endswith(".srec") else base) + ".html"
    with open_session(args.file, strict=False) as session:
        page, summary = report(session)
        warning = session.damage_warning()
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, out)
    except OSError as e:
        raise SessrecError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if warning:
        io.warn(printable(warning))
    io.stderr.write(f"sessrec: wrote {printable(out)}: {summary['processes']} processes, "
                    f"{summary['events']} events\n")
    return ExitStatus.OK
