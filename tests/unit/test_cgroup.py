"""Finding the cgroup2 mount and the level of session cgroups."""

from __future__ import annotations

from pathlib import Path

from recorder.cgroup import Mount, find_cgroup2

HYBRID = """\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
33 25 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
35 33 0:30 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,name=systemd
"""

NAMESPACED = """\
40 30 0:29 /machine.slice/ct\\0401 /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
"""


def test_hybrid_machine(tmp_path: Path) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(HYBRID)
    m = find_cgroup2(str(f))
    assert m == Mount(path=Path("/sys/fs/cgroup/unified"), root=Path("/"))
    assert m.level_of(m.path / "sessrec" / "abc") == 2


def test_namespaced_mount_counts_its_hidden_levels(tmp_path: Path) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(NAMESPACED)
    m = find_cgroup2(str(f))
    assert m is not None
    assert m.root == Path("/machine.slice/ct 1")  # \040 is a space
    assert m.level_of(m.path / "sessrec" / "abc") == 4


def test_no_cgroup2(tmp_path: Path) -> None:
    f = tmp_path / "mountinfo"
    f.write_text(HYBRID.replace("cgroup2 cgroup2", "cgroup cgroup"))
    assert find_cgroup2(str(f)) is None
    assert find_cgroup2(str(tmp_path / "missing")) is None
