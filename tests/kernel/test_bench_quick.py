"""Smoke test of the benchmark: `bench/run --quick --only open,exec` keeps
working and its JSON has what the performance doc is made of.

It never asserts a timing (the machine is shared and noisy): only that every
cell ran, that each sessrec run recorded at least the events the workload
says it made, and that losses are reported. The auditd configuration is left
out: it restarts the machine's auditd, and tests/kernel/test_audit.py covers
auditd.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

REPO = Path(__file__).resolve().parents[2]
CONFIGS = ("unrecorded", "floor", "sessrec", "daemon", "bpftrace")


def test_bench_quick(tmp_path: Path) -> None:
    if shutil.which("gcc") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true, but gcc (for the bench's workloads) is missing", pytrace=False)
        pytest.skip("the bench needs gcc to build its workloads")
    r = subprocess.run(
        [str(REPO / "bench" / "run"), "--quick", "--only", "open,exec",
         "--configs", ",".join(CONFIGS), "--out", str(tmp_path), "--no-doc"],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    cells = {(c["workload"], c["config"]): c for c in results["cells"]}
    assert set(cells) == {(w, c) for w in ("open", "exec") for c in CONFIGS}
    for (workload, config), cell in cells.items():
        assert cell["samples"], (workload, config)
        summary = cell["summary"]
        assert summary["wall_s_median"] > 0
        if config == "unrecorded":
            assert summary["ratio"] == pytest.approx(1.0)
        if config not in ("sessrec", "daemon", "bpftrace"):
            continue
        kind = cell["kind"]
        for s in cell["samples"]:
            if config == "bpftrace":  # may lose: it is reported, not held to zero
                assert s["recorded"][kind] + s["lost"] >= s["true"][kind] > 0, (workload, s)
                continue
            assert s["recorded"][kind] >= s["true"][kind] > 0, (workload, s)
            assert s["lost"] is not None
            assert s["bytes"] > 0 and s["events"] >= s["true"][kind]
    # The exec storm knows its count exactly: N children, the driver, `timed`.
    for config in ("sessrec", "daemon"):
        for s in cells[("exec", config)]["samples"]:
            assert s["recorded"]["exec"] == s["true"]["exec"]
    # The table is there too, in the text output and the Markdown file.
    assert "| open storm" in r.stdout
    assert r.stdout.startswith((tmp_path / "results.md").read_text())


def test_paired_storm(tmp_path: Path) -> None:
    """bench/paired_storm.py on a few short bursts: each configuration ran
    its pairs, recorded every open of its storm and lost none; no timing
    is asserted."""
    if shutil.which("gcc") is None:
        pytest.skip("the bench needs gcc to build its workloads")
    out = tmp_path / "paired.json"
    r = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), str(REPO / "bench" / "paired_storm.py"),
         "--pairs", "3", "--opens", "5000", "--cycles", "1", "--around", "2",
         "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["floor"]["floor_over_unloaded"] > 0
    assert [c["config"] for c in results["configs"]] == ["record", "daemon", "race"]
    for c in results["configs"]:
        assert c["pairs"] == 3 and c["lost"] == 0
        assert c["opens_recorded"] >= c["opens_true"] == 6 * 5000
        assert c["recorded_over_unloaded"] > 0
    assert "| record | 3 |" in r.stdout
