"""The kernel matrix's own logic, without booting anything: the kernel
modules' dependencies read from ELF, the initramfs archive, the junit
results, the table and the exit status."""

from __future__ import annotations

import contextlib
import gzip
import io
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vagrant"))
from kmatrix import cli, initramfs, kernels, modules, qemu, results
from kmatrix.errors import MatrixError


def fake_module(modinfo: dict[str, str]) -> bytes:
    """A minimal ELF64 file with a .modinfo section (and the section names)."""
    info = b"".join(f"{k}={v}".encode() + b"\0" for k, v in modinfo.items())
    names = b"\0.modinfo\0.shstrtab\0"
    info_off = 64
    names_off = info_off + len(info)
    shoff = names_off + len(names)
    shoff += -shoff % 8
    header = bytearray(64)
    header[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", header, 0x28, shoff)
    struct.pack_into("<HHH", header, 0x3A, 64, 3, 2)
    sections = bytes(64)  # the null section
    sections += struct.pack("<IIQQQQ", 1, 1, 0, 0, info_off, len(info)) + bytes(24)
    sections += struct.pack("<IIQQQQ", 10, 3, 0, 0, names_off, len(names)) + bytes(24)
    body = bytes(header) + info + names
    return body + bytes(shoff - len(body)) + sections


def module_tree(tmp_path: Path, deps: dict[str, str], builtin: str = "") -> Path:
    mdir = tmp_path / "usr/lib/modules/6.1.0-test"
    (mdir / "kernel/fs").mkdir(parents=True)
    for name, dep in deps.items():
        (mdir / "kernel/fs" / f"{name.replace('_', '-')}.ko").write_bytes(
            fake_module({"license": "GPL", "depends": dep, "name": name}))
    (mdir / "modules.builtin").write_text(builtin)
    (mdir / "modules.order").write_text("")
    return mdir


def test_modinfo_reads_the_section() -> None:
    info = modules.modinfo(fake_module({"depends": "a,b", "vermagic": "6.1.0 SMP"}))
    assert info == {"depends": "a,b", "vermagic": "6.1.0 SMP"}


def test_modinfo_refuses_what_is_not_elf64() -> None:
    with pytest.raises(MatrixError, match="not an ELF64"):
        modules.modinfo(b"#!/bin/sh\n")


def test_load_order_puts_dependencies_first_and_skips_builtins(tmp_path: Path) -> None:
    mdir = module_tree(tmp_path, {"p9": "netfs,p9net", "p9net": "", "netfs": "fscache",
                                  "fscache": "", "overlay": ""},
                       builtin="kernel/fs/fscache.ko\n")
    order = modules.load_order(["p9", "overlay"], modules.module_index(mdir),
                               modules.builtin_modules(mdir))
    assert order == ["netfs", "p9net", "p9", "overlay"]


def test_load_order_names_a_missing_module_and_a_loop(tmp_path: Path) -> None:
    mdir = module_tree(tmp_path, {"a": "b", "b": "a", "c": "gone"})
    index = modules.module_index(mdir)
    with pytest.raises(MatrixError, match="neither built in nor in the package"):
        modules.load_order(["c"], index, set())
    with pytest.raises(MatrixError, match="loop: a -> b -> a"):
        modules.load_order(["a"], index, set())


@pytest.mark.skipif(shutil.which("cpio") is None or not initramfs.BUSYBOX.exists(),
                    reason="needs cpio and busybox-static to unpack and build the archive")
def test_initramfs_unpacks_with_cpio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mdir = module_tree(tmp_path, {"virtio_pci": "", "p9net_virtio": "", "p9": "",
                                  "overlay": ""})
    monkeypatch.setitem(initramfs.ROOT_MODULES, "9p", ("virtio_pci", "p9net_virtio", "p9",
                                                       "overlay"))
    dest = tmp_path / "initramfs.gz"
    order = initramfs.build(mdir, dest)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=gzip.decompress(dest.read_bytes()),
                   cwd=unpacked, check=True)
    assert (unpacked / "init").read_bytes() == initramfs.GUEST_INIT.read_bytes()
    assert (unpacked / "init").stat().st_mode & 0o111
    assert (unpacked / "modules.order").read_text().split() == order
    for m in order:
        assert modules.modinfo((unpacked / "modules" / f"{m}.ko").read_bytes())["name"] == m
    assert (unpacked / "bin/busybox").read_bytes() == initramfs.BUSYBOX.read_bytes()


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.kernel.test_exec" name="test_argv" time="3.1"/>
<testcase classname="tests.kernel.test_exec" name="test_env" time="2.0">
  <failure message="assert 1 == 2">...</failure></testcase>
<testcase classname="tests.kernel.test_audit" name="test_login" time="0.1">
  <skipped message="no auditd"/></testcase>
<testcase classname="tests.kernel.test_ring" name="test_loss" time="1.0">
  <error message="fixture">...</error></testcase>
</testsuite></testsuites>"""


def test_junit_counts_and_names_the_failures(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    assert results.read_junit(tmp_path / "junit.xml") == (
        1, 2, 1, ["test_exec::test_env", "test_ring::test_loss"])


def test_collect_reads_the_guest_share(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT)
    (tmp_path / "probe").write_text("ok 53389\n")
    (tmp_path / "kernel.env").write_text("release=6.1.0-57-amd64\nheaders=/usr/src/h\n")
    r = results.KernelResult("debian12")
    results.collect(r, tmp_path)
    assert (r.passed, r.failed, r.skipped, r.probe_seconds, r.headers) == (
        1, 2, 1, 53.389, "/usr/src/h")
    assert not r.ok and r.problem == ""


def test_a_run_stopped_by_its_timeout_counts_what_ran(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT.replace(
        "</testsuite>", '<testcase time="0.000" /></testsuite>'))
    (tmp_path / "pytest.rc").write_text("124\n")
    r = results.KernelResult("debian12")
    results.collect(r, tmp_path)
    assert (r.passed, r.failed, r.skipped) == (1, 2, 1)
    assert "timed out" in r.problem and not r.ok


def test_a_failed_unit_under_systemd_fails_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text(JUNIT.replace("<failure", "<x").replace("</failure", "</x")
                                        .replace("<error", "<x").replace("</error", "</x"))
    (tmp_path / "unit").write_text("ok 71\n")
    r = results.KernelResult("debian12")
    results.collect(r, tmp_path)
    assert r.unit == "ok 71" and r.problem == "" and r.failed == 0
    (tmp_path / "unit").write_text("failed 900: systemctl start failed\n")
    results.collect(r, tmp_path)
    assert not r.ok and "systemctl start failed" in r.problem


def test_a_guest_without_results_is_not_a_pass(tmp_path: Path) -> None:
    r = results.KernelResult("debian12")
    results.collect(r, tmp_path)
    assert r.problem == "the test run left no results" and not r.ok


def test_table_and_exit_status_tell_infrastructure_from_tests() -> None:
    good = results.KernelResult("debian12", release="6.1.0-57-amd64", accel="tcg",
                                passed=41, seconds=1205)
    broken = results.KernelResult("debian12-rt", boot=results.BOOT_INFRA,
                                  problem="qemu: could not load kernel", seconds=3)
    failing = results.KernelResult("debian12-cloud", accel="tcg", passed=3, failed=1,
                                   failing=["test_open::test_openat2"], seconds=61)
    assert results.exit_status([good]) == 0
    assert results.exit_status([good, broken]) == 3
    assert results.exit_status([good, broken, failing]) == 1
    text = results.text_table([good, broken, failing])
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["kernel", "release", "accel"]
    assert "20m05s" in lines[1] and "41" in lines[1]
    assert "infrastructure failure: qemu: could not load kernel" in lines[2]
    assert "test_open::test_openat2" in lines[3]
    md = results.markdown_table([good, broken, failing]).splitlines()
    assert md[1].startswith("| --- |") and len(md) == 5


def test_kernel_names_are_known_or_refused() -> None:
    assert kernels.by_name("debian12").meta == "linux-image-amd64"
    with pytest.raises(MatrixError, match="unknown kernel 'nope'"):
        kernels.by_name("nope")
    assert len({k.name for k in kernels.KERNELS}) == len(kernels.KERNELS)


def test_merged_usr_moves_lib_under_usr(tmp_path: Path) -> None:
    if not Path("/lib").is_symlink():
        pytest.skip("the host has no merged /usr")
    (tmp_path / "lib/modules/6.1").mkdir(parents=True)
    (tmp_path / "usr/src").mkdir(parents=True)
    kernels._merge_usr(tmp_path)
    assert not (tmp_path / "lib").exists()
    assert (tmp_path / "usr/lib/modules/6.1").is_dir()


def test_list_names_every_kernel() -> None:
    out = io.StringIO()
    assert cli.main(["--list"], stdout=out) == 0
    lines = out.getvalue().splitlines()
    assert [ln.split()[0] for ln in lines] == [k.name for k in kernels.KERNELS]
    assert any("[bookworm-backports]" in ln for ln in lines)
    assert "debian11" in out.getvalue() and "[bullseye]" in lines[-1]


def test_docs_table_replaces_only_what_is_between_the_markers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "KERNELS.md"
    doc.write_text(f"# Kernels\nintro\n{cli.BEGIN}\nold table\n{cli.END}\nafter\n")
    monkeypatch.setattr(cli, "KERNELS_DOC", doc)
    meta = {"date": "2026-11-29 14:00 UTC", "commit": "abc123", "host_kernel": "6.18",
            "subset": "full", "init": "systemd"}
    r = results.KernelResult("debian12", release="6.1.0-57-amd64", accel="tcg", passed=40,
                             seconds=1200, boot_seconds=10.3, probe_seconds=47.5,
                             headers="/usr/src/linux-headers-6.1.0-57-amd64")
    cli.write_docs([r], meta)
    text = doc.read_text()
    assert text.startswith("# Kernels\nintro\n") and text.endswith(f"{cli.END}\nafter\n")
    assert "old table" not in text
    assert "Run of 2026-11-29 14:00 UTC at commit abc123" in text
    assert "| debian12 | 6.1.0-57-amd64 | tcg | ok | 40 | 0 | 0 |  | 20m00s |" in text
    assert "first BCC compile and load (`sessrec record -- /bin/true`) 48 s" in text
    r.left_out = {"tests/kernel/test_ring.py::test_wraps": "too slow emulated"}
    cli.write_docs([r], meta)
    assert "- debian12: left out under TCG: `test_ring::test_wraps`: too slow emulated." in (
        doc.read_text())
    doc.write_text("no markers\n")
    with pytest.raises(MatrixError, match="lacks the"):
        cli.write_docs([r], meta)


def test_docs_from_a_saved_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "KERNELS.md"
    doc.write_text(f"{cli.BEGIN}\n{cli.END}\n")
    monkeypatch.setattr(cli, "KERNELS_DOC", doc)
    meta = {"date": "d", "commit": "c", "host_kernel": "h", "subset": "quick", "init": "i"}
    r = results.KernelResult("debian12-rt", boot=results.BOOT_INFRA, problem="no 9p")
    (tmp_path / "matrix.json").write_text(results.to_json([r], meta))
    assert cli.main(["--docs-from", str(tmp_path / "matrix.json")]) == 0
    assert "| debian12-rt |  |  | infrastructure failure: no 9p | - | - | - |" in doc.read_text()
    assert cli.main(["--docs-from", str(tmp_path / "missing.json")]) == 2


def test_docs_keep_every_completed_run_once(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "KERNELS.md"
    doc.write_text(f"{cli.BEGIN}\n{cli.END}\nruns:\n{cli.HISTORY_BEGIN}\n{cli.HISTORY_END}\nend\n")
    monkeypatch.setattr(cli, "KERNELS_DOC", doc)
    meta = {"date": "d1", "commit": "c1", "host_kernel": "h", "subset": "full", "init": "i"}
    rt = results.KernelResult("debian12-rt", release="6.1.0-57-rt-amd64", accel="tcg",
                              passed=12, seconds=869)
    cli.write_docs([rt], meta)
    cli.write_docs([rt], meta)  # the same run again: no second row
    bp = results.KernelResult("debian12-backports", accel="tcg", passed=11, failed=1,
                              failing=["test_connect::test_connects"], seconds=900)
    cli.write_docs([bp], {**meta, "date": "d2", "subset": "quick"})
    text = doc.read_text()
    rows = [ln for ln in text.split(cli.HISTORY_BEGIN)[1].splitlines() if ln.startswith("|")]
    assert rows[0].startswith("| date | commit | tier | init | kernel |")
    assert rows[2:] == [
        "| d1 | c1 | full | i | debian12-rt | 6.1.0-57-rt-amd64 | tcg | ok | 12 | 0 | 0 |  "
        "| 14m29s |",
        "| d2 | c1 | quick | i | debian12-backports |  | tcg | ok | 11 | 1 | 0 "
        "| test_connect::test_connects | 15m00s |"]
    assert text.endswith(f"{cli.HISTORY_END}\nend\n")
    assert "| debian12-backports |" in text.split(cli.END)[0]  # the last run's table


def test_qemu_command_shares_the_root_read_only_and_the_results_writable(
        tmp_path: Path) -> None:
    tcg = qemu.command(Path("/k/vmlinuz"), Path("/k/initrd"), Path("/k/tree"), tmp_path,
                       qemu.Machine("tcg", "test"), "sessrec.init=/x/run")
    assert tcg[tcg.index("-accel") + 1] == "tcg,thread=multi"
    shares = [tcg[i + 1] for i, a in enumerate(tcg) if a == "-virtfs"]
    assert [s.split("mount_tag=")[1].split(",")[0] for s in shares] == [
        "hostroot", "kernel", "out"]
    assert "path=/," in shares[0] and "readonly=on" in shares[0]
    assert "readonly=on" in shares[1] and "readonly" not in shares[2]
    assert tcg[tcg.index("-append") + 1].endswith("sessrec.init=/x/run")
    kvm = qemu.command(Path("/k/vmlinuz"), Path("/k/initrd"), Path("/k/tree"), tmp_path,
                       qemu.Machine("kvm", "test"), "")
    assert kvm[kvm.index("-accel") + 1: kvm.index("-accel") + 4] == ["kvm", "-cpu", "host"]


def test_a_kernel_without_9p_gets_the_same_shares_over_virtiofs(tmp_path: Path) -> None:
    socks = tmp_path / "socks"
    cmd = qemu.command(Path("/k/vmlinuz"), Path("/k/initrd"), Path("/k/tree"), tmp_path,
                       qemu.Machine("tcg", "test", memory_mib=3072), "sessrec.init=/x/run",
                       "virtiofs", socks)
    assert "-virtfs" not in cmd
    assert "sessrec.fs=virtiofs" in cmd[cmd.index("-append") + 1]
    # vhost-user needs the guest's RAM shared, all of it.
    assert "memory-backend-memfd,id=mem,size=3072M,share=on" in cmd
    assert cmd[cmd.index("-numa") + 1] == "node,memdev=mem"
    devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
    assert [d.split("tag=")[1] for d in devices] == ["hostroot", "kernel", "out"]
    chardevs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-chardev"]
    assert chardevs[0] == f"socket,id=vfs0,path={socks}/hostroot.sock"
    assert qemu.virtiofsd_command(Path("/"), socks / "hostroot.sock")[1:] == [
        f"--socket-path={socks}/hostroot.sock", "-o", "source=/", "-o", "sandbox=chroot",
        "-o", "cache=auto"]
    with pytest.raises(MatrixError, match="sockets"):
        qemu.command(Path("/k/vmlinuz"), Path("/k/initrd"), Path("/k/tree"), tmp_path,
                     qemu.Machine("tcg", "test"), "", "virtiofs")
    assert kernels.by_name("debian12-cloud").fs == "virtiofs"
    assert kernels.by_name("debian12").fs == "9p"
    # Its initramfs loads virtiofs, not 9p, and is rebuilt when that changes.
    assert "virtiofs" in initramfs.ROOT_MODULES["virtiofs"]
    mdir = module_tree(tmp_path, {})
    assert initramfs.fingerprint(mdir, "9p") != initramfs.fingerprint(mdir, "virtiofs")


def test_virtiofsd_runs_one_daemon_per_share_while_the_guest_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in virtiofsd (the real one needs a guest to talk to): it
    makes its socket and waits; one that exits at once is named, with its log."""
    fake = tmp_path / "virtiofsd"
    fake.write_text("#!/bin/sh\nfor a; do case $a in --socket-path=*) touch \"${a#*=}\";; "
                    "esac; done\necho \"$@\"\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setattr(qemu, "VIRTIOFSD", fake)
    out, socks = tmp_path / "out", tmp_path / "socks"
    out.mkdir()
    with qemu.virtiofsd(tmp_path / "tree", out, socks):
        assert sorted(p.name for p in socks.iterdir()) == [
            "hostroot.sock", "kernel.sock", "out.sock"]
        assert "source=/ " in (out / "virtiofsd-hostroot.log").read_text()
    assert f"source={out} " in (out / "virtiofsd-out.log").read_text()
    fake.write_text("#!/bin/sh\necho 'fuse: unknown option'\nexit 1\n")
    with pytest.raises(MatrixError, match=r"virtiofsd-hostroot\.log"), \
            qemu.virtiofsd(tmp_path / "tree", out, socks):
        pass
    assert "unknown option" in (out / "virtiofsd-hostroot.log").read_text()


def test_why_a_guest_did_not_boot_is_read_from_its_console(tmp_path: Path) -> None:
    (tmp_path / "qemu.stderr").write_text("")
    (tmp_path / "serial.log").write_text(
        "Booting\nSESSREC-MATRIX-INFRA: cannot mount the host's root over 9p\n")
    assert qemu._why_not_booted(tmp_path, False, 300) == "cannot mount the host's root over 9p"
    (tmp_path / "serial.log").write_text(
        "[    3.6] Kernel panic - not syncing: Attempted to kill init!\n")
    assert qemu._why_not_booted(tmp_path, False, 300) == (
        "Kernel panic - not syncing: Attempted to kill init!")
    (tmp_path / "serial.log").write_text("")
    assert "within 300 s" in qemu._why_not_booted(tmp_path, True, 300)
    (tmp_path / "qemu.stderr").write_text("qemu-system-x86_64: could not load kernel '/k'\n")
    assert qemu._why_not_booted(tmp_path, False, 300) == (
        "qemu-system-x86_64: could not load kernel '/k'")


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant (Debian's package)")
def test_vagrantfile_validates() -> None:
    """Boxes cannot be downloaded here; the file itself must still be valid.
    Without a provider plugin, provider settings are left out of the check."""
    vagrant_dir = Path(__file__).resolve().parents[2] / "vagrant"
    p = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=vagrant_dir,
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "validated successfully" in p.stdout


def test_shards_split_the_tier_without_loss_or_overlap() -> None:
    tier = cli.REPO / "tests" / "kernel"
    shards = [cli.shard_files(tier, k, 2) for k in (1, 2)]
    every = sorted(str(f.relative_to(cli.REPO)) for f in tier.glob("test_*.py"))
    assert sorted(shards[0] + shards[1]) == every and not set(shards[0]) & set(shards[1])
    assert all(shards)
    assert cli.shard_files(tier, 1, 1) == every
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--shard", "3/2"])


def test_a_run_killed_before_its_junit_is_counted_from_its_log(tmp_path: Path) -> None:
    (tmp_path / "pytest.log").write_text(
        "collecting ... collected 3 items\n\n"
        "tests/kernel/test_open.py::test_a PASSED                     [ 33%]\n"
        "tests/kernel/test_open.py::test_b[x 'y' 1] FAILED                 [ 66%]\n"
        "tests/kernel/test_connect.py::test_c ")
    (tmp_path / "pytest.rc").write_text("137\n")
    r = results.KernelResult("debian12")
    results.collect(r, tmp_path)
    assert (r.passed, r.failed, r.failing) == (1, 1, ["test_open::test_b[x 'y' 1]"])
    assert "cut short" in r.problem and not r.ok


STALLED_CONSOLE = """[  812.402113] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:
[  812.402301] rcu: rcu_sched kthread starved for 157276 jiffies! g63509 f0x0
[  830.100000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [python3:912]
"""


def test_a_stall_is_read_from_the_guest_console(tmp_path: Path) -> None:
    assert results.guest_stall(tmp_path) is None  # no console at all
    (tmp_path / "serial.log").write_text("[    1.0] Run /init as init process\n")
    assert results.guest_stall(tmp_path) is None
    (tmp_path / "serial.log").write_text(STALLED_CONSOLE)
    assert results.guest_stall(tmp_path) == "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:"


def fake_guests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                runs: list[tuple[str, str]]) -> list[Path]:
    """run_one's guests, faked at the qemu process: each boot leaves the
    next (console, junit) of runs in its share, as guest/run would."""
    tree = tmp_path / "tree"
    fetched = kernels.Fetched(kernels.by_name("debian11"), "5.10.0-35-amd64", (), tree)
    monkeypatch.setattr(kernels, "fetch", lambda k, cache: fetched)
    monkeypatch.setattr(cli, "cached_initramfs", lambda f: tmp_path / "initrd")
    monkeypatch.setattr(cli, "lock", lambda path: contextlib.nullcontext())
    monkeypatch.setattr(cli.qemu, "virtiofsd", lambda *a: contextlib.nullcontext())
    booted: list[Path] = []

    def run(cmd: list[str], out: Path, boot_timeout: float, timeout: float) -> qemu.GuestRun:
        console, junit = runs[len(booted)]
        assert (out / "job").exists()
        booted.append(out)
        (out / "booted").write_text("up 3.5\n")
        (out / "serial.log").write_text(console)
        (out / "junit.xml").write_text(junit)
        return qemu.GuestRun(True, 3.5, False, 60.0, "")

    monkeypatch.setattr(cli.qemu, "run", run)
    return booted


def test_a_guest_that_stalled_is_booted_again_and_the_table_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passing = JUNIT.split("<testcase", 2)[0] + '<testcase classname="a" name="b"/>' + (
        "</testsuite></testsuites>")
    booted = fake_guests(tmp_path, monkeypatch, [(STALLED_CONSOLE, JUNIT), ("", passing)])
    args = cli.parser().parse_args(["--out", str(tmp_path / "out"), "--quick"])
    out = io.StringIO()
    r, _ = cli.run_one(kernels.by_name("debian11"), args, qemu.Machine("tcg", "test"), out)
    assert len(booted) == 2 and r.ok and (r.passed, r.failed) == (1, 0)
    assert "its guest stalled (rcu: INFO: rcu_sched detected stalls" in r.retried
    assert "1 passed, 2 failed; console in debian11.stalled-1/" in r.retried
    assert (tmp_path / "out/debian11.stalled-1/serial.log").read_text() == STALLED_CONSOLE
    assert "booting it again" in out.getvalue()
    assert "run again: its guest stalled" in results.text_table([r])


def test_a_failure_without_a_stall_is_not_run_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    booted = fake_guests(tmp_path, monkeypatch, [("", JUNIT), (STALLED_CONSOLE, JUNIT)])
    args = cli.parser().parse_args(["--out", str(tmp_path / "out"), "--quick"])
    (tmp_path / "out/debian11.stalled-1").mkdir(parents=True)  # an earlier run's: removed
    r, _ = cli.run_one(kernels.by_name("debian11"), args, qemu.Machine("tcg", "test"),
                       io.StringIO())
    assert len(booted) == 1 and not r.ok and r.retried == ""
    assert not (tmp_path / "out/debian11.stalled-1").exists()
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--stall-retries", "-1"])


def test_a_guest_that_stalls_every_time_fails_after_its_retries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    booted = fake_guests(tmp_path, monkeypatch, [(STALLED_CONSOLE, JUNIT)] * 3)
    args = cli.parser().parse_args(["--out", str(tmp_path / "out"), "--quick",
                                    "--stall-retries", "2"])
    r, _ = cli.run_one(kernels.by_name("debian11"), args, qemu.Machine("tcg", "test"),
                       io.StringIO())
    assert len(booted) == 3 and not r.ok and r.failed == 2
    assert r.retried.count("its guest stalled") == 2
    assert results.exit_status([r]) == 1
