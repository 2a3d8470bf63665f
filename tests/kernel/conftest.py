"""Fixtures of the kernel tier; the helpers they use are in krec.py.

record: records a command for real through `sessrec record` (in process) and
reads it back through `sessrec export` and `sessrec info`.
progs: the C helper programs of progs/, built static once per run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from krec import PROGS_DIR, Recorder, Recording, record_into


@pytest.fixture
def record(tmp_path: Path) -> Recorder:
    """Records cmd into tmp_path/<name>.srec (krec.record_into)."""

    def run(cmd: Sequence[str | os.PathLike[str]], *flags: str,
            name: str = "session") -> Recording:
        return record_into(tmp_path, cmd, *flags, name=name)

    return run


@pytest.fixture(scope="session")
def progs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> path of each tests/kernel/progs/<name>.c, built static."""
    gcc = shutil.which("gcc")
    if gcc is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true, but gcc (for the helper programs) is missing", pytrace=False)
        pytest.skip("kernel tier: needs gcc to build its helper programs")
    out = tmp_path_factory.mktemp("progs")
    built: dict[str, Path] = {}
    for src in sorted(PROGS_DIR.glob("*.c")):
        exe = out / src.stem
        subprocess.run([gcc, "-static", "-O1", "-Wall", "-Werror", "-o", exe, src],
                       check=True, capture_output=True)
        built[src.stem] = exe
    return built




def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """BCC passes str where it wants bytes, and warns about it on every load:
    noise that would bury the tier's own warnings."""
    here = Path(__file__).resolve().parent
    quiet = pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning")
    for item in items:
        if here in Path(item.path).resolve().parents:
            item.add_marker(quiet)
