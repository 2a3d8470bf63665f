"""Test tiers by privilege (see tests/README.md):
- tests/unit: no root, no BCC;
- tests/kernel: root and real BPF; marked `kernel`.

A kernel test skips, with the reason, when something it needs is missing;
under CI=true a skip is a failure, because CI must run the kernel tier.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


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


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "kernel" not in item.keywords:
        return
    problem = _kernel_tier_problem()
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true, so the kernel tier must run, but it {problem}", pytrace=False)
    pytest.skip(f"kernel tier: {problem}")
