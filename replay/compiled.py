"""The read side's hot modules, compiled with mypyc, and used only when they
were built from these very sources.

The read commands spend their time in a few modules' loops: the path
resolver, the process model, the caches, the formatters of the exports,
the tree and the timeline. mypyc compiles them, as the typed Python they
are, to one C extension: a quarter fewer instructions for the exports and
the tree, and the ECS export past 250,000 events/s (docs/PERFORMANCE.md).

They are optional. `python -m replay.build_compiled` builds them (setup.sh does)
into _compiled/ beside this file, with a stamp of the sources they came
from. When replay is imported, activate() puts that directory first on the
package's __path__ only while the stamp matches the sources, so an edited
module is never shadowed by an older build: the read side runs as Python
until it is built again. SESSREC_PURE_PYTHON=1 runs the Python sources regardless.
"""

from __future__ import annotations

import importlib
import os
import sys
import zlib
from pathlib import Path
from typing import Final

# The modules compiled, in replay: one group, whose calls between them are C
# calls. Not the readers (v1, v2) nor base: interpreted classes derive from
# base.Session, and mypyc's classes cannot be derived from by Python's.
MODULES: Final = ("cache", "events", "model", "jsonl", "ecs", "teleport", "tree", "timeline",
                   "export_ids", "trust", "text")
GROUP: Final = "replay.hot"  # its shared library: replay/hot__mypyc.*.so
HERE: Final = Path(__file__).resolve().parent
DIR: Final = HERE / "_compiled"
STAMP_NAME: Final = "SOURCES"  # in DIR
OFF: Final = "SESSREC_PURE_PYTHON"
COMPILED: Final = "compiled with mypyc"

# What activate() found, for `sessrec --version` and the benchmarks.
state = "not looked at"


def sources_stamp() -> str:
    """The Python the build is for, and the size and CRC-32 of each source
    in replay and sessrec: not only the compiled ones, as mypyc writes the
    values of the Final constants they import into the code. It tells an
    edited source from the one built, at each start: a CRC, not a
    cryptographic hash, whose import (OpenSSL's) cost 4 ms a start; whoever
    can edit the sources needs no collision."""
    lines = [sys.implementation.cache_tag]
    for d in (HERE, HERE.parent / "sessrec"):
        for name in sorted(n for n in os.listdir(d) if n.endswith(".py")):
            with open(d / name, "rb") as f:
                data = f.read()
            lines.append(f"{d.name}/{name} {len(data)} {zlib.crc32(data):08x}")
    return "\n".join(lines) + "\n"


def current() -> str:
    """COMPILED when the build matches the sources, else why not."""
    if os.environ.get(OFF):
        return f"pure Python ({OFF} is set)"
    try:
        built = (DIR / STAMP_NAME).read_text(encoding="ascii")
    except FileNotFoundError:
        return "pure Python (not compiled: python -m replay.build_compiled)"
    except (OSError, ValueError) as e:
        return f"pure Python (cannot read {DIR / STAMP_NAME}: {e})"
    if built != sources_stamp():
        return "pure Python (compiled from other sources: python -m replay.build_compiled)"
    return COMPILED


def activate(path: list[str]) -> None:
    """Put the compiled modules first on replay's __path__ when they match
    and their library loads (a build copied to an unlike system may not):
    a read side that fails to import would stop every command."""
    global state
    state = current()
    if state != COMPILED:
        return
    path.insert(0, str(DIR))
    try:
        importlib.import_module(GROUP + "__mypyc")
    except ImportError as e:
        path.remove(str(DIR))
        state = f"pure Python (the compiled modules do not load: {e})"
