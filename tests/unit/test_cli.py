"""The command line's start-up: only the chosen command's module is
imported and its parser built, with the same help and errors as when every
command's parser is."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pytest
from srec_util import GOLDEN

from sessrec.cli import COMMANDS, build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_each_module_registers_the_names_given() -> None:
    assert list(_subparsers(build_parser())) == list(COMMANDS)
    for name, module in COMMANDS.items():
        alone = _subparsers(build_parser(name))
        assert name in alone
        assert {COMMANDS[n] for n in alone} == {module}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_commands_help_is_the_same_built_alone(name: str) -> None:
    status, text, _ = _run([name, "--help"])
    assert status == 0 and text.startswith(f"usage: sessrec {name} ")
    full = _subparsers(build_parser())[name].format_help()
    assert text == full


def test_the_top_help_lists_every_command() -> None:
    for argv in (["--help"], ["-h"], []):
        status, out, err = _run(argv)
        text = out or err
        assert status == (0 if argv else 2)
        for name in COMMANDS:
            assert f"\n    {name} " in text, (argv, name)


def test_errors_are_the_same_built_alone() -> None:
    status, _, err = _run(["info"])
    assert status == 2 and "sessrec info: the following arguments are required: FILE" in err
    status, _, err = _run(["nosuch"])
    assert status == 2 and "invalid choice: 'nosuch'" in err and "'verify'" in err
    status, _, err = _run(["info", str(GOLDEN), "extra"])
    assert status == 2 and "sessrec: unrecognized arguments: extra" in err


def test_info_imports_no_other_commands_module() -> None:
    """A new process, as `sessrec info FILE` is: the daemon's and the other
    commands' modules stay unimported."""
    code = ("import sys; from sessrec.cli import main; s = main(['info', sys.argv[1]]); "
            "print('MODULES', s, *sorted(m for m in sys.modules if '.cli_' in m "
            "or m.startswith('recorder')))")
    done = subprocess.run([sys.executable, "-c", code, str(GOLDEN)], capture_output=True,
                          text=True, check=True)
    last = done.stdout.splitlines()[-1].split()
    assert last == ["MODULES", "0", "replay.cli_info"]
