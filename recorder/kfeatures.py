"""What the running kernel offers the BPF programs, detected when loading.

Each feature is probed directly, never guessed from the version string:
helpers and map types by their enum names in the kernel's own BTF (enum
bpf_func_id and enum bpf_map_type list exactly what this kernel has),
syscalls by their tracepoints, tracepoint fields by their format files.
Where a feature is missing the programs are built without it and a notice
says what is not recorded; the notices and the features go into the
session header (docs/FORMAT.md) and `sessrec info` shows them. Features the
programs cannot do without are refused with the kernel version that
brought them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessrec.errors import EnvironmentProblem

# (feature, the enum member name in BTF, the kernel that brought it)
REQUIRED_BTF_NAMES: tuple[tuple[str, bytes, str], ...] = (
    ("ringbuf", b"BPF_MAP_TYPE_RINGBUF", "5.8"),
    ("task_pt_regs", b"BPF_FUNC_task_pt_regs", "5.15"),
    ("get_current_task_btf", b"BPF_FUNC_get_current_task_btf", "5.11"),
)
WHY_REQUIRED = {
    "ringbuf": "the programs submit every record to a BPF ring buffer",
    "task_pt_regs": "the programs read syscall arguments from the saved registers at sys_exit",
    "get_current_task_btf": "the programs read the task through its BTF type",
}


@dataclass(frozen=True)
class KernelFeatures:
    release: str
    btf_names: dict[str, bool]
    openat2: bool  # syscalls:sys_exit_openat2 (the syscall came in 5.6)
    exit_group_dead: bool  # sched_process_exit's group_dead field (6.x)
    headers: str  # where /lib/modules/<release>/build leads, or ""
    headers_match: bool
    notices: list[str] = field(default_factory=list)

    def missing_required(self) -> list[str]:
        return [name for name, _, _ in REQUIRED_BTF_NAMES if not self.btf_names[name]]

    def check(self) -> None:
        """Refuses a kernel without what the programs cannot do without."""
        missing = self.missing_required()
        if missing:
            since = {n: v for n, _, v in REQUIRED_BTF_NAMES}
            raise EnvironmentProblem(
                f"kernel {self.release} lacks "
                + "; ".join(f"{m} (Linux {since[m]}: {WHY_REQUIRED[m]})" for m in missing)
                + ": recording needs Linux 5.15 or later")

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


def detect(tracefs_dir: Path, btf_path: str) -> KernelFeatures:
    release = os.uname().release
    try:
        with open(btf_path, "rb") as f:
            btf = f.read()
    except OSError as e:
        raise EnvironmentProblem(f"cannot read BTF at {btf_path}: {e.strerror}") from e
    # Names are NUL-terminated in the string section: match whole names.
    names = {name: b"\0" + sym + b"\0" in btf for name, sym, _ in REQUIRED_BTF_NAMES}
    events = tracefs_dir / "events"
    openat2 = (events / "syscalls/sys_exit_openat2").is_dir()
    try:
        group_dead = "group_dead" in (
            events / "sched/sched_process_exit/format").read_text()
    except OSError:
        group_dead = False
    headers, match = _headers(release)
    notices = []
    if not openat2:
        notices.append("no openat2 events: this kernel has no syscalls:sys_exit_openat2 "
                       "tracepoint (the syscall came in Linux 5.6)")
    if not group_dead:
        notices.append("a thread group's end is found by comparing pid and tid: "
                       "sched_process_exit has no group_dead field here")
    return KernelFeatures(release, names, openat2, group_dead, headers, match, notices)


def _headers(release: str) -> tuple[str, bool]:
    """Where BCC's headers are, and whether they are this kernel's own: a
    distribution names the directory after the release it was built for."""
    build = Path("/lib/modules", release, "build")
    try:
        real = build.resolve(strict=True)
    except OSError:
        return "", False
    return str(real), real.name in (f"linux-headers-{release}", f"linux-{release}")
