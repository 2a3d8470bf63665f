"""One kernel's result, read from what the guest left in its share, and the
matrix's table as text, Markdown and JSON."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BOOT_OK = "ok"
BOOT_INFRA = "infrastructure failure"


@dataclass
class KernelResult:
    kernel: str
    release: str = ""
    packages: list[str] = field(default_factory=list)
    accel: str = ""
    boot: str = BOOT_OK
    problem: str = ""  # the infrastructure failure, or why the test run is incomplete
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    boot_seconds: float | None = None
    probe_seconds: float | None = None  # one `sessrec record -- /bin/true`: BCC compile + load
    headers: str = ""
    left_out: dict[str, str] = field(default_factory=dict)  # test id -> why not run here
    unit: str = ""  # --systemd: "ok SECONDS" or "failed SECONDS: why" (sessrec.service)
    retried: str = ""  # why an earlier run of this kernel was not kept, and what it gave

    @property
    def ok(self) -> bool:
        return self.boot == BOOT_OK and not self.problem and self.failed == 0 and self.passed > 0


def read_junit(path: Path) -> tuple[int, int, int, list[str]]:
    """(passed, failed, skipped, failing test ids) of a pytest junit file;
    errors count as failures."""
    root = ET.parse(path).getroot()
    passed = failed = skipped = 0
    failing: list[str] = []
    for case in root.iter("testcase"):
        if not case.get("name"):
            continue  # the test a SIGINT interrupted: the run's problem says so
        name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
            failing.append(_short(name))
        elif case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped, failing


_LOG_LINE = re.compile(
    r"^(tests/\S+?\.py::.+?) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(?: |$)")


def read_log(path: Path, result: KernelResult) -> bool:
    """Counts from pytest -v's own lines, for a run killed before pytest
    wrote its junit file (a SIGINT during a recording goes to the recorded
    command, not to pytest); False when the log has none."""
    seen = False
    for line in path.read_text(errors="replace").splitlines():
        m = _LOG_LINE.match(line)
        if not m:
            continue
        seen = True
        node, outcome = m.groups()
        if outcome in ("FAILED", "ERROR"):
            result.failed += 1
            result.failing.append(short_id(node))
        elif outcome == "SKIPPED":
            result.skipped += 1
        else:
            result.passed += 1
    return seen


def _short(name: str) -> str:
    """tests.kernel.test_exec::test_argv -> test_exec::test_argv"""
    cls, _, test = name.partition("::")
    return f"{cls.rsplit('.', 1)[-1]}::{test}" if test else name


def short_id(node_id: str) -> str:
    """tests/kernel/test_ring.py::test_x -> test_ring::test_x"""
    path, _, test = node_id.partition("::")
    return f"{path.rsplit('/', 1)[-1].removesuffix('.py')}::{test}"


def collect(result: KernelResult, out: Path) -> None:
    """Fills in the test counts from the guest's share."""
    probe = out / "probe"
    if probe.exists():
        words = probe.read_text().split()
        if len(words) == 2 and words[1].isdigit():
            result.probe_seconds = int(words[1]) / 1000
            if words[0] != "ok":
                result.problem = "the probe recording failed (see probe.log)"
    env = out / "kernel.env"
    if env.exists():
        for line in env.read_text().splitlines():
            key, _, value = line.partition("=")
            if key == "headers":
                result.headers = value
    rc = out / "pytest.rc"
    if rc.exists() and rc.read_text().strip() == "124":
        result.problem = "the tests timed out in the guest (stopped with SIGINT)"
    unit = out / "unit"
    if unit.exists():
        result.unit = unit.read_text().strip()
        if not result.unit.startswith("ok "):
            result.problem = f"sessrec.service under systemd: {result.unit} (see unit.log)"
    junit = out / "junit.xml"
    if junit.exists():
        try:
            result.passed, result.failed, result.skipped, result.failing = read_junit(junit)
        except ET.ParseError as e:
            result.problem = f"unreadable junit.xml: {e}"
    elif (out / "pytest.log").exists() and read_log(out / "pytest.log", result):
        result.problem = ("the test run was cut short (no junit file): counts from "
                          "pytest.log")
    elif not result.problem:
        result.problem = "the test run left no results"


# What a guest's console shows when the host did not run its vCPUs for tens
# of seconds (TCG on a loaded host): the kernel's RCU stall and soft lockup
# warnings. A test run that fails or times out with these is run again.
STALL_MARKERS = ("rcu_sched kthread starved", "rcu_preempt kthread starved",
                 "detected stalls on CPUs", "self-detected stall on CPU",
                 "BUG: soft lockup")


def guest_stall(out: Path) -> str | None:
    """The first stall warning in a guest's console (serial.log), without
    its timestamp; None if it shows none."""
    log = out / "serial.log"
    if not log.exists():
        return None
    with log.open(errors="replace") as f:
        for line in f:
            if any(m in line for m in STALL_MARKERS):
                return line.split("] ", 1)[-1].strip()[:160]
    return None


def _time(s: float) -> str:
    return f"{int(s) // 60}m{int(s) % 60:02d}s"


COLUMNS = ("kernel", "release", "accel", "boot", "passed", "failed", "skipped",
           "failing tests", "time")


def rows(results: list[KernelResult]) -> list[list[str]]:
    out = []
    for r in results:
        booted = r.boot == BOOT_OK
        failing = ", ".join(r.failing) or ("" if not r.problem else r.problem)
        if r.failing and r.problem:
            failing += f"; {r.problem}"
        if r.retried:
            failing += f"{'; ' if failing else ''}run again: {r.retried}"
        out.append([
            r.kernel, r.release, r.accel,
            r.boot if booted else f"{BOOT_INFRA}: {r.problem}",
            str(r.passed) if booted else "-", str(r.failed) if booted else "-",
            str(r.skipped) if booted else "-", failing if booted else "",
            _time(r.seconds),
        ])
    return out


def text_table(results: list[KernelResult]) -> str:
    table = [list(COLUMNS), *rows(results)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in table)


def markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown_table(results: list[KernelResult]) -> str:
    out = [markdown_line(list(COLUMNS)), markdown_line(["---"] * len(COLUMNS))]
    out += [markdown_line(r) for r in rows(results)]
    return "\n".join(out)


def to_json(results: list[KernelResult], meta: dict[str, Any]) -> str:
    return json.dumps({**meta, "kernels": [asdict(r) for r in results]}, indent=2) + "\n"


def exit_status(results: list[KernelResult]) -> int:
    """0 when every kernel booted and passed; 1 when a booted kernel failed a
    test; 3 when none failed a test but one could not boot (CI fails either
    way, and the table says which)."""
    if any(r.boot == BOOT_OK and not r.ok for r in results):
        return 1
    if any(r.boot != BOOT_OK for r in results):
        return 3
    return 0
