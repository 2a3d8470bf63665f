"""`sessrec html`."""

from __future__ import annotations

import argparse
import contextlib
import os
import stat
import tempfile
import textwrap

from replay.cli_replay import add_filter_options, filters_from
from sessrec.cli import ExitStatus, Streams, Subparsers, add_command
from sessrec.errors import SessrecError


def register(sub: Subparsers) -> None:
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
            "sessrec html build.srec --failed --since 2m   # a timeline of the failures only",
        ),
        notes="The filters are replay's (sessrec replay --help): they choose the events of "
        "the timeline; the tree and the counts stay the whole session's.",
        func=run,
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="the page to write (default: FILE with .html instead of .srec, "
                   "in the current directory)")
    add_filter_options(p)


def _check_target(out: str) -> None:
    """Refuse to replace what is not a regular file: run as root, `-o
    /dev/full` would replace the device with a page."""
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as e:
        raise SessrecError(f"cannot write {out}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        what = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
                "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise SessrecError(f"cannot write {out}: it is {what}; give a new or regular file")


def _write_new(out: str, page: str) -> None:
    """Write page to out through a new file in out's directory, created with
    O_EXCL | O_NOFOLLOW under a random name (a predictable one, followed
    through a planted symlink, wrote where the planter chose), then renamed
    over out."""
    _check_target(out)
    directory = os.path.dirname(out) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(out)}.",
                                   suffix=".tmp")
    except OSError as e:
        raise SessrecError(f"cannot write {out}: {e.strerror or e}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would have made it
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp, out)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise SessrecError(f"cannot write {out}: {e.strerror or e}") from None


def run(args: argparse.Namespace, io: Streams) -> int:
    from replay.html import report
    from replay.reader import open_session
    from replay.text import printable

    out = args.output
    if not out:
        base = os.path.basename(args.file)
        out = (base[: -len(".srec")] if base.endswith(".srec") else base) + ".html"
    _check_target(out)  # before the work
    with open_session(args.file, strict=False) as session:
        filters = filters_from(args, session.header["clock"]["wall_ns"])
        page, shown = report(session, filters=filters)
        warnings = session.warnings()
    _write_new(out, page)
    for warning in warnings:
        io.warn(printable(warning))
    io.stderr.write(f"sessrec: wrote {printable(out)}: {shown.processes} processes, "
                    f"{shown.events} events\n")
    if shown.events < shown.read:  # a bound on the page's size or the process model
        io.warn(f"the page's timeline shows {shown.events} of the {shown.read} events read; "
                "its warnings say why")
    return ExitStatus.OK
