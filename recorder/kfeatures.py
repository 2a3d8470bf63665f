"""What the running kernel offers the BPF programs, detected when loading.

Each feature is probed directly, never guessed from the version string:
helpers and map types by their enum names in the kernel's own BTF (enum
bpf_func_id and enum bpf_map_type list exactly what this kernel has),
whether tracepoint programs may call a helper by loading one that does,
syscalls by their tracepoints, tracepoint fields by their format files.
Where a feature is missing the programs are built without it (a -D flag,
recorder/loader.py) and a notice says what is not recorded, or recorded
differently; the notices and the features go into the session header
(docs/FORMAT.md) and `sessrec info` shows them. Only what the programs
cannot do without is refused, naming the kernel version that brought it.

For tests, SESSREC_HIDE_KERNEL_FEATURES (a comma-separated list of the
feature names below, KNOWN) makes detect() treat those as missing, so that the
fallbacks are proved on a kernel that has everything; the header says so.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessrec.errors import EnvironmentProblem

# (feature, the enum member name in BTF, the kernel that brought it)
BTF_NAMES: tuple[tuple[str, bytes, str], ...] = (
    ("ringbuf", b"BPF_MAP_TYPE_RINGBUF", "5.8"),
    ("task_pt_regs", b"BPF_FUNC_task_pt_regs", "5.15"),
    ("get_current_task_btf", b"BPF_FUNC_get_current_task_btf", "5.11"),
    ("task_storage", b"BPF_MAP_TYPE_TASK_STORAGE", "5.11"),
)
# What the programs cannot do without, and why.
REQUIRED = {
    "ringbuf": "the programs submit every record to a per-session BPF ring buffer "
               "(there is no perf buffer fallback)",
}
HIDE_ENV = "SESSREC_HIDE_KERNEL_FEATURES"
SINCE = {name: version for name, _, version in BTF_NAMES}
# Helpers that exist (in BTF) but that a kernel may not let tracepoint
# programs call: probed by loading a three-instruction program that calls it
# (feature name, BPF_FUNC_* number, UAPI and fixed). 5.10 has
# bpf_get_current_ancestor_cgroup_id, for cgroup programs only.
TRACING_HELPERS: tuple[tuple[str, int], ...] = (("ancestor_cgroup_id", 123),)
KNOWN = (*SINCE, *(name for name, _ in TRACING_HELPERS))


@dataclass(frozen=True)
class KernelFeatures:
    release: str
    btf_names: dict[str, bool]
    openat2: bool  # syscalls:sys_exit_openat2 (the syscall came in 5.6)
    exit_group_dead: bool  # sched_process_exit's group_dead field (6.x)
    headers: str  # where /lib/modules/<release>/build leads, or ""
    headers_match: bool
    notices: list[str] = field(default_factory=list)

    @property
    def task_btf(self) -> bool:
        """The task is a BTF-typed pointer whose fields load directly
        (else each is a bpf_probe_read_kernel: SR_NO_TASK_BTF)."""
        return self.btf_names.get("get_current_task_btf", False)

    @property
    def saves_args(self) -> bool:
        """Syscall arguments are saved at sys_enter (SR_SAVE_ARGS), not read
        from the saved registers at sys_exit: bpf_task_pt_regs takes a
        BTF-typed task, so it needs both helpers."""
        return not (self.btf_names.get("task_pt_regs", False) and self.task_btf)

    @property
    def race_check_possible(self) -> bool:
        """The race check keeps each open's path in task storage."""
        return self.task_btf and self.btf_names.get("task_storage", False)

    def missing_required(self) -> list[str]:
        return [name for name in REQUIRED if not self.btf_names.get(name, False)]

    def check(self) -> None:
        """Refuses a kernel without what the programs cannot do without."""
        missing = self.missing_required()
        if missing:
            oldest = max((SINCE[m] for m in REQUIRED),
                         key=lambda v: tuple(int(p) for p in v.split(".")))
            raise EnvironmentProblem(
                f"kernel {self.release} lacks "
                + "; ".join(f"{m} (Linux {SINCE[m]}: {REQUIRED[m]})" for m in missing)
                + f": recording needs Linux {oldest} or later")

    def as_header(self) -> dict[str, Any]:
        """The session header's kernel_features map (docs/FORMAT.md)."""
        return {
            "release": self.release,
            "btf": True,
            **self.btf_names,
            "openat2": self.openat2,
            "exit_group_dead": self.exit_group_dead,
            "headers": self.headers,
            "headers_match": self.headers_match,
            "notices": list(self.notices),
        }


RACE_CHECK_NOTICE = ("no race check (race_check was asked for): it keeps each open's path "
                     "in task storage, which needs bpf_get_current_task_btf and task "
                     "storage maps (Linux 5.11)")


def detect(tracefs_dir: Path, btf_path: str) -> KernelFeatures:
    release = os.uname().release
    try:
        with open(btf_path, "rb") as f:
            btf = f.read()
    except OSError as e:
        raise EnvironmentProblem(f"cannot read BTF at {btf_path}: {e.strerror}") from e
    # Names are NUL-terminated in the string section: match whole names.
    names = {name: b"\0" + sym + b"\0" in btf for name, sym, _ in BTF_NAMES}
    for name, func_id in TRACING_HELPERS:
        names[name] = tracepoint_may_call(func_id)
    hidden = hidden_features()
    for name in hidden:
        names[name] = False
    events = tracefs_dir / "events"
    openat2 = (events / "syscalls/sys_exit_openat2").is_dir()
    try:
        group_dead = "group_dead" in (
            events / "sched/sched_process_exit/format").read_text()
    except OSError:
        group_dead = False
    headers, match = _headers(release)
    features = KernelFeatures(release, names, openat2, group_dead, headers, match)
    features.notices.extend(_notices(features, hidden))
    return features


def hidden_features() -> list[str]:
    """The features SESSREC_HIDE_KERNEL_FEATURES names (tests only)."""
    hidden = [n.strip() for n in os.environ.get(HIDE_ENV, "").split(",") if n.strip()]
    unknown = [n for n in hidden if n not in KNOWN]
    if unknown:
        raise EnvironmentProblem(
            f"{HIDE_ENV} names unknown feature(s) {', '.join(unknown)} "
            f"(known: {', '.join(KNOWN)})")
    return hidden


_SYS_BPF = 321  # x86-64
_BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_TRACEPOINT = 5


def tracepoint_may_call(func_id: int) -> bool:
    """Whether the verifier lets a tracepoint program call helper func_id:
    `r1 = 0; call func_id; exit` loads or is refused (EINVAL). Without the
    privilege to load anything, the answer is yes: the programs' own load
    then fails with the real reason."""
    insns = ctypes.create_string_buffer(
        bytes.fromhex("b701000000000000") + struct.pack("<BBhi", 0x85, 0, 0, func_id)
        + bytes.fromhex("9500000000000000"))
    license = ctypes.create_string_buffer(b"GPL")
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQ", _BPF_PROG_TYPE_TRACEPOINT, 3,
                    ctypes.addressof(insns), ctypes.addressof(license)), 128)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(_SYS_BPF, _BPF_PROG_LOAD, attr, ctypes.sizeof(attr))
    if fd >= 0:
        os.close(fd)
        return True
    return ctypes.get_errno() != errno.EINVAL


def _notices(f: KernelFeatures, hidden: list[str]) -> list[str]:
    """One sentence per thing recorded differently, or not at all, here."""
    notices = []
    if hidden:
        notices.append(f"features hidden on purpose ({HIDE_ENV}, a test of the "
                       f"fallbacks): {', '.join(hidden)}")
    if not f.task_btf:
        notices.append("the task's fields are read with bpf_probe_read_kernel, not loaded "
                       "directly: no bpf_get_current_task_btf (Linux 5.11)")
    if f.saves_args:
        why = ("no bpf_task_pt_regs (Linux 5.15)" if not f.btf_names.get("task_pt_regs")
               else "bpf_task_pt_regs needs bpf_get_current_task_btf (Linux 5.11)")
        notices.append("syscall arguments are saved at sys_enter for session processes: "
                       f"{why}; a call already under way when its process joined the "
                       "session is counted lost, not recorded")
    if not f.btf_names.get("ancestor_cgroup_id", True):
        notices.append("a process moving itself below its session's cgroup is told from "
                       "one leaving it by walking its cgroup's parents (probe reads): "
                       "tracepoint programs may not call bpf_get_current_ancestor_cgroup_id "
                       "on this kernel")
    if not f.openat2:
        notices.append("no openat2 events: this kernel has no syscalls:sys_exit_openat2 "
                       "tracepoint (the syscall came in Linux 5.6)")
    if not f.exit_group_dead:
        notices.append("a thread group's end is found by comparing pid and tid: "
                       "sched_process_exit has no group_dead field here")
    return notices


def _headers(release: str) -> tuple[str, bool]:
    """Where BCC's headers are, and whether they are this kernel's own: a
    distribution names the directory after the release it was built for."""
    build = Path("/lib/modules", release, "build")
    try:
        real = build.resolve(strict=True)
    except OSError:
        return "", False
    return str(real), real.name in (f"linux-headers-{release}", f"linux-{release}")
