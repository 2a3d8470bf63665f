"""cgroup v2 sessions: one cgroup per session under <cgroup2 mount>/sessrec.

The BPF filter keys on the session cgroup's id, which is the inode number of
its directory (what bpf_get_current_cgroup_id() returns), and matches
descendants too through bpf_get_current_ancestor_cgroup_id(level).
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sessrec.errors import EnvironmentProblem

ROOT_NAME = "sessrec"
PRIVATE_MOUNT = "/run/sessrec/cgroup2"


@dataclass(frozen=True)
class Mount:
    path: Path          # where the hierarchy is mounted
    root: Path          # the hierarchy path that the mount shows ("/" normally)

    def level_of(self, cg_dir: Path) -> int:
        """Depth of a cgroup directory in the hierarchy (the mount root's
        hierarchy path counts: a namespaced mount may not start at level 0)."""
        rel = cg_dir.relative_to(self.path)
        return len(self.root.parts[1:]) + len(rel.parts)


def find_cgroup2(mountinfo: str = "/proc/self/mountinfo") -> Mount | None:
    """The first cgroup2 mount, from mountinfo (fields: id parent maj:min root
    mountpoint options... - fstype source superopts)."""
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fstype = right.split()[0]
        if fstype == "cgroup2":
            f = left.split()
            return Mount(path=Path(_unescape(f[4])), root=Path(_unescape(f[3])))
    return None


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def cgroup2_mount() -> Mount:
    """The cgroup2 mount; mounts one at a private path when there is none."""
    m = find_cgroup2()
    if m is not None:
        return m
    os.makedirs(PRIVATE_MOUNT, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"cgroup2", PRIVATE_MOUNT.encode(), b"cgroup2", 0, None) != 0:
        err = ctypes.get_errno()
        raise EnvironmentProblem(
            f"no cgroup2 hierarchy is mounted and mounting one at {PRIVATE_MOUNT} "
            f"failed: {os.strerror(err)}"
        )
    return Mount(path=Path(PRIVATE_MOUNT), root=Path("/"))


@dataclass
class SessionCgroup:
    """A session's cgroup. Created empty; processes join by writing their
    pid to cgroup.procs (the recorded command does so itself before exec)."""

    path: Path
    id: int
    level: int
    mount: Mount

    @classmethod
    def create(cls, name: str, mount: Mount | None = None,
               root_name: str = ROOT_NAME) -> SessionCgroup:
        m = mount or cgroup2_mount()
        root = m.path / root_name
        path = root / name
        try:
            root.mkdir(exist_ok=True)
            path.mkdir()
        except OSError as e:
            raise EnvironmentProblem(f"cannot create cgroup {path}: {e.strerror}") from e
        return cls(path=path, id=os.stat(path).st_ino, level=m.level_of(path), mount=m)

    @staticmethod
    def session_level(mount: Mount | None = None, root_name: str = ROOT_NAME) -> int:
        """The level every session cgroup has: the BPF programs need it at
        load time, before any session exists."""
        m = mount or cgroup2_mount()
        return m.level_of(m.path / root_name / "x")

    @classmethod
    def existing(cls, path: Path, mount: Mount) -> SessionCgroup:
        """A session cgroup left by an earlier daemon."""
        return cls(path=path, id=os.stat(path).st_ino, level=mount.level_of(path), mount=mount)

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        """Processes in this cgroup and its descendants."""
        out: list[int] = []
        for d, _, _ in os.walk(self.path):
            try:
                out += [int(x) for x in Path(d, "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pass
        return out

    def holds(self, pid: int) -> bool:
        """Whether process pid is in this cgroup or below it: one read of its
        /proc/PID/cgroup, not a walk of the tree (the daemon asks this of
        every idle login every SWEEP_EVERY seconds)."""
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            return False
        v2 = next((line[3:] for line in text.splitlines() if line.startswith("0::")), None)
        if v2 is None:
            return False
        here = "/" + str(self.path.relative_to(self.mount.path))
        return v2 == here or v2.startswith(here + "/")

    def populated(self) -> bool:
        """Whether any process is left in the cgroup or below it."""
        try:
            for line in (self.path / "cgroup.events").read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "populated":
                    return v.strip() == "1"
        except OSError:
            return False
        return bool(self.pids())

    def remove(self, timeout: float = 2.0) -> list[int]:
        """Removes the cgroup. Processes still in it (the user stopped waiting
        for them) are moved to the hierarchy root first; their pids are
        returned."""
        left = self.pids()
        for pid in left:
            try:
                (self.mount.path / "cgroup.procs").write_text(str(pid))
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        # Children first: a command may have made sub-cgroups.
        for d, _, _ in sorted(os.walk(self.path), key=lambda t: -len(t[0])):
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    # EBUSY until exiting tasks are fully gone.
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
        return left
