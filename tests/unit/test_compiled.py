"""The read side's hot modules compiled with mypyc (replay/compiled.py): used
only while built from the current sources, and giving exactly what the
Python sources give, byte for byte, on every kind of file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from hostile import distinct_argv, failed_execs, long_cwds, many_descriptors

from replay import compiled

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
# As test_abi_layout.py: not from conftest, which a whole-suite run can shadow.
IN_CI = os.environ.get("CI", "").lower() == "true"


def _fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the compiled modules' sources and of sessrec's, which
    compiled looks at."""
    pkg = tmp_path / "replay"
    pkg.mkdir()
    for name in compiled.MODULES:
        shutil.copy(compiled.HERE / f"{name}.py", pkg / f"{name}.py")
    shutil.copytree(ROOT / "sessrec", tmp_path / "sessrec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(compiled, "HERE", pkg)
    monkeypatch.setattr(compiled, "DIR", pkg / "_compiled")
    monkeypatch.setattr(compiled, "state", compiled.state)  # put back afterwards
    # a library that loads (as a module already imported)
    monkeypatch.setattr(compiled, "GROUP", "replay.fake")
    monkeypatch.setitem(sys.modules, "replay.fake__mypyc", types.ModuleType("replay.fake__mypyc"))
    monkeypatch.delenv(compiled.OFF, raising=False)
    return pkg


def test_a_build_is_used_only_while_its_sources_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path, monkeypatch)
    path = [str(pkg)]
    compiled.activate(path)
    assert path == [str(pkg)] and "not compiled" in compiled.state

    (pkg / "_compiled").mkdir()
    (pkg / "_compiled" / "SOURCES").write_text(compiled.sources_stamp(), encoding="ascii")
    compiled.activate(path)
    assert path == [str(pkg / "_compiled"), str(pkg)] and compiled.state == compiled.COMPILED

    # an edited module: the build is older than it, and not used; so is an
    # edited module that is not compiled, whose Final constants may be in it
    for source in (pkg / "events.py", tmp_path / "sessrec" / "linux.py"):
        kept = source.read_bytes()
        source.write_bytes(kept.replace(b"EINPROGRESS: Final = 115", b"EINPROGRESS: Final = 116")
                           if b"EINPROGRESS: Final = 115" in kept else kept + b"# edited\n")
        assert source.read_bytes() != kept
        path = [str(pkg)]
        compiled.activate(path)
        assert path == [str(pkg)] and "compiled from other sources" in compiled.state
        source.write_bytes(kept)

    monkeypatch.setenv(compiled.OFF, "1")
    (pkg / "_compiled" / "SOURCES").write_text(compiled.sources_stamp(), encoding="ascii")
    compiled.activate(path)
    assert path == [str(pkg)] and compiled.OFF in compiled.state


def test_a_build_that_does_not_load_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = _fake_package(tmp_path, monkeypatch)
    (pkg / "_compiled").mkdir()
    (pkg / "_compiled" / "SOURCES").write_text(compiled.sources_stamp(), encoding="ascii")
    monkeypatch.setattr(compiled, "GROUP", "replay.not_built")
    path = [str(pkg)]
    compiled.activate(path)
    assert path == [str(pkg)]
    assert compiled.state.startswith("pure Python (the compiled modules do not load: ")


def test_the_stamp_names_the_python_and_every_source_they_import() -> None:
    """Every module of replay and sessrec, compiled or not: mypyc writes the
    values of the Final constants a compiled module imports into its code."""
    lines = compiled.sources_stamp().splitlines()
    assert lines[0] == sys.implementation.cache_tag
    names = [line.split()[0] for line in lines[1:]]
    assert {f"replay/{m}.py" for m in compiled.MODULES} < set(names)
    assert {"sessrec/format.py", "sessrec/linux.py", "sessrec/event.py"} < set(names)
    assert all(len(line.split()) == 3 and len(line.split()[2]) == 8 for line in lines[1:])


# Runs each argv through sessrec's main() in one process, and prints, as
# JSON, the module the ECS formatter came from and each run's (status,
# stdout, stderr); an html page (-o, last) as its stdout, but for the time
# it was made.
_RUNNER = """
import io, json, re, sys
from sessrec.cli import main
import replay.ecs
runs = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    text = out.getvalue()
    if argv[0] == "html" and status == 0:
        with open(argv[-1], encoding="utf-8") as f:
            text = re.sub('"generated_at":"[^"]*"', "", f.read())
    runs.append((status, text, err.getvalue()))
print(json.dumps({"ecs": replay.ecs.__file__, "runs": runs}))
"""

_COMMANDS = (["export", "--format", "jsonl"], ["export", "--format", "teleport"],
             ["export", "--format", "ecs"], ["tree"], ["replay"],
             ["replay", "--children", "--failed"], ["info"], ["html", "-o", "{tmp}/page.html"])


def _run_all(argvs: list[list[str]], pure: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != compiled.OFF}
    if pure:
        env[compiled.OFF] = "1"
    r = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(argvs)], env=env,
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, object] = json.loads(r.stdout)
    return result


def test_compiled_gives_what_the_python_sources_give(tmp_path: Path) -> None:
    """Every read command on golden files, a busy build's session and hostile
    files, in the compiled modules and in the Python sources: the same
    output, warnings and status. Under CI the read side must be compiled
    (setup.sh compiles it)."""
    state = compiled.current()
    if state != compiled.COMPILED:
        if IN_CI:
            pytest.fail(f"CI=true, so the read side must be compiled, but it is {state}")
        pytest.skip(f"the read side is {state}")
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from replay_bench import generate
    finally:
        sys.path.remove(str(ROOT / "bench"))
    files = sorted(str(p) for p in GOLDEN.glob("*.srec"))
    generate(str(tmp_path / "busy.srec"), 30_000)
    files.append(str(tmp_path / "busy.srec"))
    for name, data in (("failed_execs", failed_execs(3000)),
                       ("descriptors", many_descriptors(200, 40_000)),
                       ("cwds", long_cwds(200, 40_000)),
                       ("argv", distinct_argv(20, 50_000))):
        (tmp_path / f"{name}.srec").write_bytes(data)
        files.append(str(tmp_path / f"{name}.srec"))
    argvs = [[*cmd[:1], f, *(a.replace("{tmp}", str(tmp_path)) for a in cmd[1:])]
             for f in files for cmd in _COMMANDS]

    native = _run_all(argvs, pure=False)
    python = _run_all(argvs, pure=True)
    assert str(native["ecs"]).endswith(".so") and str(python["ecs"]).endswith("ecs.py")
    assert isinstance(native["runs"], list) and isinstance(python["runs"], list)
    assert len(native["runs"]) == len(argvs)
    for argv, a, b in zip(argvs, native["runs"], python["runs"], strict=True):
        assert a == b, f"compiled and Python differ on {argv}"
    assert sum(1 for status, out, _err in native["runs"] if status == 0 and out) > len(argvs) // 2


def test_version_says_how_the_read_side_runs() -> None:
    import io

    from sessrec.cli import main
    out = io.StringIO()
    assert main(["--version"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().strip().endswith(f"(read side: {compiled.state})")
    assert compiled.state == compiled.current()
