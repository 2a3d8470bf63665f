"""`sessrec config check [FILE]`."""

from __future__ import annotations

import argparse
from typing import Any

from sessrec import config
from sessrec.cli import ExitStatus, Parser, Streams, Subparsers, add_command


def register(sub: Subparsers) -> None:
    c: Parser = sub.add_parser(
        "config", help="check the daemon's configuration file",
        description="Work with the daemon's configuration file "
        f"({config.DEFAULT_PATH}).")
    csub = c.add_subparsers(dest="config_command", metavar="SUBCOMMAND", parser_class=Parser)
    chk = add_command(
        csub, "check",
        help="validate a configuration file and print the effective configuration",
        description="Validate FILE (default "
        f"{config.DEFAULT_PATH}) as `sessrec daemon` would at start-up, and print the "
        "effective configuration, defaults included, as TOML. An unknown key, a wrong type "
        "or a bad value is an error that names the file, the line and the key (exit 2).",
        example_lines=(
            "sessrec config check",
            "sessrec config check ./sessrec.toml",
        ),
        func=run_check,
    )
    chk.add_argument("file", nargs="?", metavar="FILE", help="the file to check")
    c.set_defaults(func=_usage(c))


def _usage(p: Parser) -> Any:
    def show(args: argparse.Namespace, io: Streams) -> int:
        p.print_help(io.stderr)
        return ExitStatus.USAGE
    return show


def run_check(args: argparse.Namespace, io: Streams) -> int:
    cfg = config.load(args.file)
    io.stdout.write(config.effective_toml(cfg))
    return ExitStatus.OK
