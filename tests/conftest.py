"""Test tiers by privilege (see tests/README.md):
- tests/unit: no root, no BCC;
- tests/kernel: root and real BPF; marked `kernel`;
- tests/browser: the HTML report in real headless Chromium; marked `browser`.

A kernel or browser test skips, with the reason, when something it needs is
missing; under CI=true a skip is a failure, because CI must run every tier.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("SESSREC_CHROMIUM", "/usr/bin/chromium")


def _kernel_tier_problem() -> str | None:
    """Why the kernel tier cannot run here, probed by feature, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return "needs BTF (/sys/kernel/btf/vmlinux)"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "needs BCC's python3-bpfcc (run ./setup.sh)"
    return None


def _browser_tier_problem() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"needs Chromium at {CHROMIUM} (Debian's chromium package: run ./setup.sh)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    for tier, probe in (("kernel", _kernel_tier_problem), ("browser", _browser_tier_problem)):
        if tier not in item.keywords:
            continue
        problem = probe()
        if problem is None:
            continue
        if IN_CI:
            pytest.fail(f"CI=true, so the {tier} tier must run, but it {problem}", pytrace=False)
        pytest.skip(f"{tier} tier: {problem}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Under CI=true a kernel or browser test may not skip, whatever skipped
    it (a fixture, or the test itself): a skip there is a failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    tiers = {"kernel", "browser"} & set(item.keywords)
    if IN_CI and tiers and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true: a {'/'.join(sorted(tiers))} test may not skip ({reason})"
    return None
