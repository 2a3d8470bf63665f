"""Compile the read side's hot modules with mypyc (replay/compiled.py says
which, and when they are used): `python -m replay.build_compiled`, which
setup.sh runs. Needs mypy (the dev extra), setuptools, a C compiler and
Python's headers."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from replay.compiled import (
    COMPILED,
    DIR,
    GROUP,
    HERE,
    MODULES,
    STAMP_NAME,
    current,
    sources_stamp,
)


def build() -> None:
    """Compile MODULES into DIR, replacing what is there; raise on failure."""
    from mypyc.build import mypycify  # the dev extra's mypy; only here
    from setuptools import setup  # type: ignore[import-untyped]

    stamp = sources_stamp()
    with tempfile.TemporaryDirectory(prefix="sessrec-mypyc-") as tmp:
        t = Path(tmp)
        failed: BaseException | None = None
        # mypy resolves `sessrec` and `replay` from the project's root
        with (t / "log").open("w") as log, contextlib.chdir(HERE.parent), \
                contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                ext = mypycify([str(HERE / f"{m}.py") for m in MODULES],
                               target_dir=str(t / "c"), group_name=GROUP)
                setup(name="sessrec-compiled", ext_modules=ext, script_args=[
                    "build_ext", "--build-lib", str(t / "lib"), "--build-temp", str(t / "o")])
            except (SystemExit, Exception) as e:
                failed = e
        if failed is not None:
            tail = (t / "log").read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"mypyc failed ({failed}): " + " / ".join(tail))
        if sources_stamp() != stamp:
            raise RuntimeError("the sources changed while they were compiled: run it again")
        # Beside DIR, then renamed into place: a reader sees one build or the
        # other. Code, not data: readable by the users who read files.
        new, old = HERE / "_compiled.new", HERE / "_compiled.old"
        for d in (new, old):
            shutil.rmtree(d, ignore_errors=True)
        new.mkdir()
        new.chmod(0o755)
        for so in (t / "lib" / "replay").iterdir():
            shutil.copyfile(so, new / so.name)
            (new / so.name).chmod(0o755)
        (new / STAMP_NAME).write_text(stamp, encoding="ascii")
        (new / STAMP_NAME).chmod(0o644)
        if DIR.exists():
            DIR.rename(old)
        new.rename(DIR)
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    from sessrec.cli import ExitStatus

    p = argparse.ArgumentParser(
        prog="python -m replay.build_compiled",
        description="Compile the read side's hot modules (" + ", ".join(MODULES)
        + ") with mypyc, when they are not compiled from the current sources. "
        "Optional: without them the read side runs as Python, slower.")
    p.add_argument("--force", action="store_true", help="compile even if up to date")
    p.add_argument("--status", action="store_true", help="say whether they are compiled, only")
    args = p.parse_args(argv)
    now = current()
    if args.status:
        print(now)
        return ExitStatus.OK if now == COMPILED else ExitStatus.ERROR
    if now == COMPILED and not args.force:
        print("the read side is compiled from the current sources")
        return ExitStatus.OK
    print(f"compiling {', '.join(MODULES)} with mypyc (about a minute)", flush=True)
    try:
        build()
    except ImportError as e:
        print(f"cannot compile the read side: {e} (pip install mypy setuptools)",
              file=sys.stderr)
        return ExitStatus.ENVIRONMENT
    except (OSError, RuntimeError) as e:
        print(f"cannot compile the read side: {e}", file=sys.stderr)
        return ExitStatus.ERROR
    print(f"compiled {', '.join(MODULES)} into {DIR}")
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
