"""Which fallbacks the loader chooses from the detected kernel features
(recorder/kfeatures.py), and the flags that build them (loader.compile_flags):
from the features found in BTF, never from the version string."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recorder import kfeatures, loader
from sessrec.errors import EnvironmentProblem

HAS_BTF = Path(loader.BTF_PATH).exists()
FALLBACK_FLAGS = ("-DSR_NO_TASK_BTF=1", "-DSR_SAVE_ARGS=1", "-DSR_NO_ANCESTOR_CGROUP=1",
                  "-DSR_RACE_CHECK=1")


def features(*missing: str) -> kfeatures.KernelFeatures:
    names = {n: n not in missing for n in kfeatures.KNOWN}
    f = kfeatures.KernelFeatures("9.9.9-test", names, True, True, "", False)
    f.notices.extend(kfeatures._notices(f, []))
    return f


def fallback_flags(f: kfeatures.KernelFeatures, race_check: bool = False) -> list[str]:
    cfg = loader.LoadConfig(session_level=2, race_check=race_check)
    return [x for x in loader.compile_flags(cfg, Path("/nonexistent"), f)
            if x in FALLBACK_FLAGS]


@pytest.fixture(autouse=True)
def nothing_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kfeatures.HIDE_ENV, raising=False)


def test_everything_there_means_no_fallback() -> None:
    f = features()
    f.check()
    assert f.task_btf and not f.saves_args and f.race_check_possible
    assert f.notices == []


def test_without_task_pt_regs_the_arguments_are_saved_at_sys_enter() -> None:
    f = features("task_pt_regs")
    f.check()  # degraded, not refused
    assert f.task_btf and f.saves_args and f.race_check_possible
    (notice,) = f.notices
    assert "saved at sys_enter" in notice and "bpf_task_pt_regs (Linux 5.15)" in notice
    assert "counted lost" in notice


def test_without_the_btf_task_every_field_is_probe_read_and_arguments_saved() -> None:
    """bpf_task_pt_regs takes a BTF task: without bpf_get_current_task_btf
    (5.11) the arguments are saved too, even where the former exists."""
    f = features("get_current_task_btf")
    f.check()
    assert not f.task_btf and f.saves_args and not f.race_check_possible
    assert len(f.notices) == 2
    assert "bpf_probe_read_kernel" in f.notices[0] and "5.11" in f.notices[0]
    assert "bpf_task_pt_regs needs bpf_get_current_task_btf" in f.notices[1]


def test_a_5_10_kernel_degrades_but_loads() -> None:
    """What Debian 11's 5.10 has: the ring buffer, none of the others."""
    f = features("task_pt_regs", "get_current_task_btf", "task_storage", "ancestor_cgroup_id")
    f.check()
    header = f.as_header()
    assert header["ringbuf"] is True and header["task_pt_regs"] is False
    assert header["get_current_task_btf"] is False and header["task_storage"] is False
    assert header["ancestor_cgroup_id"] is False
    assert header["notices"] == f.notices and len(f.notices) == 3
    assert "walking its cgroup's parents" in f.notices[2]


def test_the_helper_probe_asks_the_verifier() -> None:
    """Loading `call N` in a tracepoint program: refused for a helper that
    does not exist; allowed (or, without the privilege, assumed) for one
    every kernel has (bpf_get_current_pid_tgid, 14)."""
    assert kfeatures.tracepoint_may_call(14) is True
    if os.geteuid() == 0:
        assert kfeatures.tracepoint_may_call(99_999) is False


def test_without_the_ring_buffer_it_is_refused() -> None:
    with pytest.raises(EnvironmentProblem, match=r"lacks ringbuf \(Linux 5\.8: .*"
                                                 r"recording needs Linux 5\.8 or later$"):
        features("ringbuf", "task_pt_regs").check()


@pytest.mark.skipif(not HAS_BTF, reason="compile_flags needs the running kernel's BTF")
@pytest.mark.parametrize("missing, race_check, expected", [
    ((), False, []),
    ((), True, ["-DSR_RACE_CHECK=1"]),
    (("task_pt_regs",), False, ["-DSR_SAVE_ARGS=1"]),
    (("task_pt_regs",), True, ["-DSR_SAVE_ARGS=1", "-DSR_RACE_CHECK=1"]),
    (("get_current_task_btf",), True, ["-DSR_NO_TASK_BTF=1", "-DSR_SAVE_ARGS=1"]),
    (("task_storage",), True, []),
    (("ancestor_cgroup_id",), False, ["-DSR_NO_ANCESTOR_CGROUP=1"]),
    (("task_pt_regs", "get_current_task_btf", "task_storage", "ancestor_cgroup_id"), True,
     ["-DSR_NO_TASK_BTF=1", "-DSR_SAVE_ARGS=1", "-DSR_NO_ANCESTOR_CGROUP=1"]),
])
def test_the_flags_follow_the_features(missing: tuple[str, ...], race_check: bool,
                                       expected: list[str]) -> None:
    assert fallback_flags(features(*missing), race_check) == expected


def fake_btf(tmp_path: Path) -> str:
    btf = tmp_path / "vmlinux"
    btf.write_bytes(b"\0" + b"\0".join(sym for _, sym, _ in kfeatures.BTF_NAMES) + b"\0")
    return str(btf)


def test_hidden_features_are_missing_and_said_so(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    btf = fake_btf(tmp_path)
    assert all(kfeatures.detect(tmp_path, btf).btf_names.values())
    monkeypatch.setenv(kfeatures.HIDE_ENV, "task_pt_regs, task_storage")
    f = kfeatures.detect(tmp_path, btf)
    assert f.btf_names == {"ringbuf": True, "task_pt_regs": False,
                           "get_current_task_btf": True, "task_storage": False,
                           "ancestor_cgroup_id": kfeatures.tracepoint_may_call(123)}
    assert f.notices[0] == (f"features hidden on purpose ({kfeatures.HIDE_ENV}, a test of "
                            "the fallbacks): task_pt_regs, task_storage")


def test_hiding_an_unknown_feature_is_an_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kfeatures.HIDE_ENV, "ringbuf,kprobes")
    with pytest.raises(EnvironmentProblem,
                       match=r"unknown feature\(s\) kprobes \(known: ringbuf, "):
        kfeatures.detect(tmp_path, fake_btf(tmp_path))
