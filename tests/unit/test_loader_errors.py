"""What a user sees when the machine cannot record: one line, a non-zero
exit, no traceback. The failures are faked here (no root or BPF needed);
the kernel tier runs the real thing."""

from __future__ import annotations

import builtins
import io
from pathlib import Path
from typing import Any

import pytest

from recorder import kfeatures, loader
from sessrec.cli import ExitStatus, main
from sessrec.errors import EnvironmentProblem, PrivilegeError


def run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdout=out, stderr=err)
    return status, err.getvalue()


def assert_one_line_error(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("sessrec: error: "), stderr
    assert "Traceback" not in stderr
    for w in words:
        assert w in lines[0], (w, stderr)


def test_not_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loader.os, "geteuid", lambda: 1000)
    status, err = run(["record", "-o", str(tmp_path / "x.srec"), "--", "true"])
    assert status == ExitStatus.PRIVILEGE
    assert_one_line_error(err, "root", "sudo")
    assert not (tmp_path / "x.srec").exists()


def test_bcc_missing_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_bcc(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "bcc" or name.startswith("bcc."):
            raise ImportError("No module named 'bcc'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bcc)
    with pytest.raises(EnvironmentProblem, match="python3-bpfcc") as e:
        loader.import_bcc()
    assert "unrelated" in str(e.value)  # the PyPI package of that name


def test_no_btf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "BTF_PATH", "/nonexistent/vmlinux")
    with pytest.raises(EnvironmentProblem, match="no BTF at /nonexistent/vmlinux"):
        loader.compile_flags(loader.LoadConfig(session_level=2), Path("/nonexistent"))


def test_missing_tracepoints_are_named(tmp_path: Path) -> None:
    # A tracefs with every tracepoint but two.
    wanted = loader.tracepoints()
    for cat, ev in wanted[2:]:
        (tmp_path / "events" / cat / ev).mkdir(parents=True)
    with pytest.raises(EnvironmentProblem) as e:
        loader.check_tracepoints(tmp_path)
    msg = str(e.value)
    for cat, ev in wanted[:2]:
        assert f"{cat}:{ev}" in msg
    for cat, ev in wanted[2:]:
        assert f"{cat}:{ev}" not in msg


def test_every_tracepoint_is_a_tracepoint() -> None:
    """Only tracepoints: this kernel has no kprobes, and fentry is refused."""
    text = loader.program_text()
    assert loader.tracepoints(text), "no TRACEPOINT_PROBE found"
    for forbidden in ("KPROBE", "kprobe__", "KFUNC_PROBE", "RAW_TRACEPOINT_PROBE", "LSM_PROBE"):
        assert forbidden not in text
    assert {c for c, _ in loader.tracepoints(text)} == {"syscalls", "sched", "cgroup"}


def test_load_failure_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Whatever BCC raises while loading becomes an EnvironmentProblem."""

    class FakeBcc:
        @staticmethod
        def BPF(**_: Any) -> Any:
            raise Exception("Failed to load BPF program b'x': Permission denied")

    monkeypatch.setattr(loader, "check_privileges", lambda: None)
    monkeypatch.setattr(loader, "tracefs", lambda: tmp_path)
    monkeypatch.setattr(loader, "check_tracepoints", lambda *_: None)
    monkeypatch.setattr(loader, "check_btf", lambda: None)
    monkeypatch.setattr(loader.kfeatures, "detect", lambda *_: fake_features())
    monkeypatch.setattr(loader, "compile_flags", lambda *_: [])
    monkeypatch.setattr(loader, "import_bcc", lambda: FakeBcc)
    with pytest.raises(EnvironmentProblem, match="loading the BPF programs failed"):
        loader.Programs.load(loader.LoadConfig(session_level=2))


def fake_features(**btf_names: bool) -> kfeatures.KernelFeatures:
    names = {n: btf_names.get(n, True) for n in kfeatures.KNOWN}
    return kfeatures.KernelFeatures("5.4.0-test", names, True, True, "", False)


def test_a_kernel_without_the_ring_buffer_is_refused_naming_it() -> None:
    with pytest.raises(EnvironmentProblem) as e:
        fake_features(ringbuf=False, task_pt_regs=False).check()
    msg = str(e.value)
    assert "5.4.0-test lacks ringbuf (Linux 5.8" in msg and "task_pt_regs" not in msg
    assert msg.endswith("recording needs Linux 5.8 or later")


def test_features_are_probed_from_btf_names_and_tracefs(tmp_path: Path) -> None:
    btf = tmp_path / "vmlinux"
    # The string section holds enum member names NUL-terminated; a longer
    # name that merely starts with a wanted one does not count.
    btf.write_bytes(b"\0BPF_MAP_TYPE_RINGBUF\0BPF_FUNC_task_pt_regs_x\0"
                    b"BPF_FUNC_get_current_task_btf\0BPF_MAP_TYPE_TASK_STORAGE\0")
    (tmp_path / "events/sched/sched_process_exit").mkdir(parents=True)
    (tmp_path / "events/sched/sched_process_exit/format").write_text("field:pid_t pid;")
    f = kfeatures.detect(tmp_path, str(btf))
    assert f.btf_names == {"ringbuf": True, "task_pt_regs": False,
                           "get_current_task_btf": True, "task_storage": True,
                           "ancestor_cgroup_id": kfeatures.tracepoint_may_call(123)}
    assert not f.openat2 and not f.exit_group_dead
    assert any("no openat2 events" in n for n in f.notices)
    header = f.as_header()
    assert header["openat2"] is False and header["notices"] == f.notices


@pytest.mark.skipif(not Path(loader.BTF_PATH).exists(), reason="needs the running kernel's BTF")
def test_without_openat2_the_programs_are_built_without_it(tmp_path: Path) -> None:
    features = kfeatures.KernelFeatures("5.4", {}, openat2=False, exit_group_dead=False,
                                        headers="", headers_match=False)
    flags = loader.compile_flags(loader.LoadConfig(session_level=2), tmp_path, features)
    assert "-DSR_NO_OPENAT2=1" in flags and "-DSR_HAVE_GROUP_DEAD=1" not in flags
    for cat, ev in loader.tracepoints():
        if (cat, ev) != ("syscalls", "sys_exit_openat2"):
            (tmp_path / "events" / cat / ev).mkdir(parents=True)
    loader.check_tracepoints(tmp_path)  # openat2 may be missing


def test_privilege_error_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader.os, "geteuid", lambda: 1000)
    with pytest.raises(PrivilegeError, match="sudo"):
        loader.check_privileges()


def test_ebpf_prints_the_program_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader.os, "geteuid", lambda: 1000)
    out, err = io.StringIO(), io.StringIO()
    assert main(["record", "--ebpf"], stdout=out, stderr=err) == 0
    assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in out.getvalue()
    assert "struct event_header" in out.getvalue()  # the header is inlined


def test_membership_programs_are_always_loaded() -> None:
    """Which processes are in a session is kept by proc.bpf.c's fork, exit
    and cgroup programs: loaded even when command events are not wanted,
    then built without them (SR_MEMBERSHIP_ONLY)."""
    assert loader.loaded_files(("file.bpf.c",)) == ("proc.bpf.c", "file.bpf.c")
    assert loader.loaded_files(loader.PROGRAM_FILES) == loader.PROGRAM_FILES
    text = loader.program_text(loader.loaded_files(("net.bpf.c",)))
    assert "TRACEPOINT_PROBE(cgroup, cgroup_attach_task)" in text
    assert "#ifndef SR_MEMBERSHIP_ONLY /* command events: exec */" in text


def test_a_walk_block_spans_its_fields() -> None:
    flags = loader.block_flags("SR_X_BLK", {"a": 24, "b": 16, "c": 40}, "struct x")
    assert flags == ["-DSR_X_BLK_OFF=16", "-DSR_X_BLK_LEN=32"]


@pytest.mark.parametrize("fields", [{"a": 0, "b": 64}, {"a": 0, "b": 12}])
def test_fields_too_far_apart_or_unaligned_are_refused_naming_them(
        fields: dict[str, int]) -> None:
    with pytest.raises(EnvironmentProblem, match=r"^struct x: a at 0, b at \d+ are not within"):
        loader.block_flags("SR_X_BLK", fields, "struct x")


def test_this_kernels_walk_blocks_fit() -> None:
    if not Path(loader.BTF_PATH).exists():
        pytest.skip("no BTF on this machine")
    found = loader.btf.cached_member_offsets([(s, m) for _, s, m in loader.KERNEL_OFFSETS],
                                             btf_path=loader.BTF_PATH)
    flags = dict(f[2:].split("=") for f in loader.walk_block_flags(found, loader.inline_name()))
    assert int(flags["SR_DENTRY_BLK_LEN"]) <= loader.INLINE_BLOCK_MAX
    assert int(flags["SR_MOUNT_BLK_LEN"]) <= 64
    # Every kernel since 2.6 keeps short names in the dentry: the walk uses it.
    assert int(flags["SR_DENTRY_INAME_LEN"]) in (32, 40)


def _offsets(**members: int) -> dict[tuple[str, str], loader.btf.MemberOffset]:
    names = {"pprev": ("dentry", "d_hash.pprev"), "parent": ("dentry", "d_parent"),
             "name": ("dentry", "d_name"), "hash_len": ("qstr", "hash_len"),
             "qname": ("qstr", "name"), "mnt": ("mount", "mnt"),
             "mparent": ("mount", "mnt_parent"), "mpoint": ("mount", "mnt_mountpoint"),
             "mroot": ("vfsmount", "mnt_root")}
    return {names[k]: loader.btf.MemberOffset(*names[k], v, 8) for k, v in members.items()}


LAYOUT = _offsets(pprev=16, parent=24, name=32, hash_len=0, qname=8, mnt=32, mparent=16,
                  mpoint=24, mroot=0)


def test_the_dentry_block_takes_the_inline_name_when_it_fits() -> None:
    inline = loader.btf.MemberOffset("dentry", "d_shortname", 56, 40)
    flags = loader.walk_block_flags(LAYOUT, inline)
    assert "-DSR_DENTRY_BLK_OFF=16" in flags and "-DSR_DENTRY_BLK_LEN=80" in flags
    assert "-DSR_OFF_DENTRY_INAME=56" in flags and "-DSR_DENTRY_INAME_LEN=40" in flags


@pytest.mark.parametrize("inline", [None, loader.btf.MemberOffset("dentry", "d_iname", 200, 40),
                                    loader.btf.MemberOffset("dentry", "d_iname", 56, 36)])
def test_without_a_usable_inline_name_names_are_read_one_by_one(
        inline: loader.btf.MemberOffset | None) -> None:
    flags = loader.walk_block_flags(LAYOUT, inline)
    assert "-DSR_DENTRY_BLK_LEN=32" in flags
    assert not any("INAME" in f for f in flags)
