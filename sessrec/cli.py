"""The sessrec command line. main(argv) -> int is the one place where errors
become messages and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import enum
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TextIO, TypeAlias

from replay import compiled
from replay.text import encodable, printable
from sessrec import __version__
from sessrec.errors import SessrecError, UsageError

# Each command lives in its own module, whose register(subparsers) adds its
# parser (cli_daemon's: daemon and status) and sets func(args, streams) ->
# int; here, in the order --help lists them. Only the chosen command's
# module is imported (the others, the daemon's among them, were a third of
# `info`'s time), and commands import what they need lazily: the replay
# commands must work without BCC or root. tests/unit/test_cli.py checks that
# each module registers the names given here.
COMMANDS: Final[Mapping[str, str]] = {
    "record": "recorder.cli_record",
    "pam": "recorder.cli_pam",
    "daemon": "recorder.cli_daemon",
    "status": "recorder.cli_daemon",
    "config": "sessrec.cli_config",
    "keygen": "recorder.cli_keygen",
    "info": "replay.cli_info",
    "export": "replay.cli_export",
    "replay": "replay.cli_replay",
    "tree": "replay.cli_tree",
    "ls": "replay.cli_ls",
    "search": "replay.cli_search",
    "find": "replay.cli_find",
    "html": "replay.cli_html",
    "verify": "replay.cli_verify",
}


class ExitStatus(enum.IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    ENVIRONMENT = 3
    PRIVILEGE = 4
    # `sessrec verify` (replay/verify.py), one status per verdict:
    TAMPERED = 5    # altered, removed, reordered, forged or damaged
    TRUNCATED = 6   # sealed and intact up to the last seal, the end is missing
    UNSEALED = 7    # recorded without a seal key: checksums only
    UNVERIFIED = 8  # sealed, checked without --key
    WRONG_KEY = 9   # sealed by another node than the key's
    INTERRUPTED = 130


@dataclass
class Streams:
    """Where a command writes; injectable so main() runs in-process in tests."""

    stdout: TextIO
    stderr: TextIO

    def warn(self, message: str) -> None:
        print(f"sessrec: warning: {printable(message)}", file=self.stderr)


Command = Callable[[argparse.Namespace, Streams], int]


class _ParserExit(Exception):
    """--help (or --version) was printed: main() returns this status."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            self._print_message(message, sys.stderr)
        raise _ParserExit(status)


# What each command module's register() receives.
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


def examples(*lines: str) -> str:
    """An epilog of real examples, as BCC's tools end their --help."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def add_command(sub: Subparsers, name: str, *, help: str,
                description: str, example_lines: Sequence[str], func: Command,
                notes: str = "") -> Parser:
    p: Parser = sub.add_parser(
        name, help=help, description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples(*example_lines) + (f"\n\n{notes}" if notes else ""),
    )
    p.set_defaults(func=func)
    return p


def build_parser(command: str | None = None) -> Parser:
    """The parser of every command, or, given a command's name, of that one
    alone (its help and errors are the same)."""
    p = Parser(
        prog="sessrec",
        description="Record what a login session does (every program run, file opened and "
        "connection made, with the process tree) with eBPF, into one compressed file; "
        "then replay, search and export it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=examples(
            "sudo sessrec record -o build.srec -- make -j2",
            "sessrec info build.srec",
            "sessrec export build.srec --format jsonl > build.jsonl",
        ),
    )
    p.add_argument("--version", action="version",
                   version=f"sessrec {__version__} (read side: {compiled.state})")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    if command is not None and command in COMMANDS:
        modules = [COMMANDS[command]]
    else:
        modules = list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(sub)
    return p


def _never_unencodable(stream: TextIO) -> None:
    """A stream that does not take UTF-8 (PYTHONIOENCODING=ascii, a Latin-1
    locale) writes what it cannot encode as \\xNN escapes instead of raising:
    a host name like café must not end a command with a traceback."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and not encodable(stream):
        reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    io = Streams(stdout or sys.stdout, stderr or sys.stderr)
    for stream in (io.stdout, io.stderr):
        _never_unencodable(stream)
    args_list = list(sys.argv[1:] if argv is None else argv)
    # The command is the first argument when there is one (the top level has
    # no option but --help and --version, which need every command's parser).
    parser = build_parser(args_list[0] if args_list else None)
    try:
        try:
            # --help prints to sys.stdout: make that the caller's stdout.
            with contextlib.redirect_stdout(io.stdout):
                args = parser.parse_args(args_list)
        except _ParserExit as e:
            return e.status
        func: Command | None = getattr(args, "func", None)
        if func is None:
            parser.print_help(io.stderr)
            return ExitStatus.USAGE
        status = func(args, io)
        io.stdout.flush()  # here, where a full disk is reported, not at exit
        return status
    except SessrecError as e:
        # File names and reasons can come from a hostile file: escaped,
        # and so on one line.
        print(f"sessrec: error: {printable(str(e))}", file=io.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("sessrec: interrupted", file=io.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # `sessrec export ... | head` is not an error.
        _discard_stdout(io)
        return ExitStatus.OK
    except OSError as e:
        # Mostly writing stdout failed (ENOSPC, EIO, EFBIG): commands turn
        # the errors of their files into a SessrecError.
        _discard_stdout(io)
        where = "" if e.filename is None else f"{printable(os.fsdecode(e.filename))}: "
        print(f"sessrec: error: {where}{e.strerror or e}", file=io.stderr)
        return ExitStatus.ERROR


def _discard_stdout(io: Streams) -> None:
    """Keep the exit-time flush of a stdout that failed from raising again."""
    if io.stdout is sys.stdout:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
