"""The sessrec command line. main(argv) -> int is the only place where errors
become messages and exit codes."""

from __future__ import annotations

import argparse
import enum
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from sessrec import __version__
from sessrec.errors import SessrecError, UsageError


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    ENVIRONMENT = 3
    PRIVILEGE = 4
    INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="sessrec",
        description="Record what a login session does (every program run, file opened and "
        "connection made, with the process tree) with eBPF, into one compressed file; "
        "then replay, search and export it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples(
            "sudo sessrec record -o build.srec -- make -j2",
            "sessrec info build.srec",
            "sessrec export build.srec --format jsonl > build.jsonl",
        ),
    )
    p.add_argument("--version", action="version", version=f"sessrec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser(
        "record",
        help="run a command as a recorded session (root)",
        description="Run CMD in a new session cgroup and record every exec, fork, exit, "
        "open and connect of it and of every process it starts, until the last of them "
        "has exited. Exits with CMD's exit status (127 if CMD is not found).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples(
            "sudo sessrec record -o build.srec -- make -j2",
            "sudo sessrec record --no-wait -- ./start-daemon.sh   # stop when it exits",
            "sudo sessrec record --ebpf                           # print the BPF program",
        )
        + "\n\nCtrl-C goes to the command as usual. If the command has exited and the\n"
        "recorder is waiting for processes it left behind, Ctrl-C stops waiting.",
    )
    r.add_argument("-o", "--output", metavar="FILE",
                   help="session file to write (default: session-<time>.srec)")
    r.add_argument("-f", "--force", action="store_true", help="overwrite FILE if it exists")
    r.add_argument("--no-wait", dest="wait_leftovers", action="store_false",
                   help="stop when the command exits, not when its last process does")
    r.add_argument("--wait-timeout", type=_positive_float, metavar="SECONDS",
                   help="stop waiting for leftover processes after SECONDS")
    r.add_argument("--ring-pages", type=_ring_pages, metavar="N",
                   help="ring buffer size in 4 KiB pages, a power of two (default 8192)")
    r.add_argument("-C", "--cwd", metavar="DIR", help="run the command in DIR")
    r.add_argument("--ebpf", action="store_true",
                   help="print the BPF program source and exit")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    r.set_defaults(func=_cmd_record)

    i = sub.add_parser(
        "info",
        help="summarise a session file",
        description="Show who, what, when and how much: the header and trailer of a session "
        "file, with losses and whether the file is complete.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples("sessrec info build.srec", "sessrec info --json build.srec | jq .counts"),
    )
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=_cmd_info)

    e = sub.add_parser(
        "export",
        help="export a session's events (jsonl)",
        description="Write every event of a session file, one JSON object per line.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_examples(
            "sessrec export build.srec --format jsonl > build.jsonl",
            "sessrec export build.srec | jq 'select(.type==\"exec\") | .argv'",
        ),
    )
    e.add_argument("file", metavar="FILE")
    e.add_argument("--format", default="jsonl", choices=["jsonl"], help="output format")
    e.add_argument("-o", "--output", metavar="OUT", help="write here instead of stdout")
    e.set_defaults(func=_cmd_export)
    return p


def _positive_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return v


def _ring_pages(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {s!r}") from None
    if v < 1 or v & (v - 1):
        raise argparse.ArgumentTypeError(f"{v} is not a power of two")
    return v


class Streams:
    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr


def _cmd_record(args: argparse.Namespace, io: Streams) -> int:
    if args.ebpf:
        from recorder.loader import program_text

        io.stdout.write(program_text())
        return ExitStatus.OK
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise UsageError("sessrec record: no command given (usage: sessrec record [-o FILE] -- CMD [ARGS...])")
    from recorder import record as rec

    output = args.output or _default_output()
    opts = rec.RecordOptions(
        command=cmd,
        output=output,
        force=args.force,
        wait_leftovers=args.wait_leftovers,
        wait_timeout=args.wait_timeout,
        cwd=args.cwd,
    )
    if args.ring_pages:
        opts.ring_pages = args.ring_pages
    status = rec.record(opts, stderr=io.stderr)
    print(f"sessrec: session written to {output}", file=io.stderr)
    return status


def _default_output() -> str:
    import time

    return time.strftime("session-%Y%m%dT%H%M%S.srec")


def _cmd_info(args: argparse.Namespace, io: Streams) -> int:
    from replay.info import format_info, session_info

    info = session_info(args.file)
    if args.json:
        json.dump(info, io.stdout, indent=2, ensure_ascii=False)
        io.stdout.write("\n")
    else:
        io.stdout.write(format_info(info))
    return ExitStatus.OK


def _cmd_export(args: argparse.Namespace, io: Streams) -> int:
    from replay.jsonl import write_jsonl
    from replay.reader import open_session

    out = io.stdout
    close: Callable[[], None] | None = None
    if args.output:
        try:
            f = open(args.output, "w", encoding="utf-8")
        except OSError as e:
            raise SessrecError(f"cannot write {args.output}: {e.strerror}") from None
        out, close = f, f.close
    try:
        with open_session(args.file, strict=False) as session:
            write_jsonl(session, out)
            if session.damage is not None:
                _warn_damage(io, args.file, session.damage)
    finally:
        if close:
            close()
    return ExitStatus.OK


def _warn_damage(io: Streams, path: str, damage: object) -> None:
    print(f"sessrec: warning: {path}: {damage}", file=io.stderr)


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    io = Streams(stdout or sys.stdout, stderr or sys.stderr)
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        if not getattr(args, "func", None):
            parser.print_help(io.stderr)
            return ExitStatus.USAGE
        func: Callable[[argparse.Namespace, Streams], int] = args.func
        return func(args, io)
    except SessrecError as e:
        print(f"sessrec: error: {e}", file=io.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("sessrec: interrupted", file=io.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # `sessrec export ... | head`: not an error; silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
