"""The kernel's features as the session header records them and `sessrec
info` shows them: what the probes found on the running kernel (on the host
and in every kernel of vagrant/kernel-matrix)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from krec import Recorder, run_cli

from recorder import kfeatures, loader

pytestmark = pytest.mark.kernel


def test_header_and_info_carry_the_kernel_features(record: Recorder) -> None:
    rec = record(["/bin/true"])
    assert rec.status == 0
    kf = rec.header["kernel_features"]
    expected = kfeatures.detect(loader.tracefs(), loader.BTF_PATH).as_header()
    assert kf == expected
    # Every kernel the recorder loads on has the ring buffer (a kernel
    # without it is refused by name; tests/unit/test_kfeatures.py); what
    # else is missing has a notice.
    assert kf["ringbuf"] and kf["release"] == os.uname().release
    assert kf["task_pt_regs"] or any("saved at sys_enter" in n for n in kf["notices"])
    assert kf["openat2"] == Path(loader.tracefs(), "events/syscalls/sys_exit_openat2").is_dir()
    build = Path("/lib/modules", os.uname().release, "build")
    assert kf["headers"] == (str(build.resolve()) if build.exists() else "")
    assert rec.info["kernel_features"] == kf

    status, out, err = run_cli("info", rec.path)
    assert status == 0, err
    lines = out.splitlines()
    kernel = next(ln for ln in lines if ln.startswith("kernel "))
    assert kf["release"] in kernel and "ringbuf" in kernel
    assert ("headers " + kf["headers"]) in kernel
    assert ("not matching" in kernel) != kf["headers_match"]
    notices = [ln.split(None, 1)[1] for ln in lines if ln.startswith("notice ")]
    assert notices == kf["notices"]
