"""Running a guest under qemu: KVM when it works here, TCG otherwise.

The guest's root is the host's own filesystem, shared read-only over 9p,
under a tmpfs overlay whose top layer is the kernel's package tree
(guest/init). A third, writable share carries the job in and the results
out. The serial console goes to a file in that directory.

A kernel without 9p (Debian's cloud flavour) gets the same three shares
over virtiofs instead: one virtiofsd per share (qemu 7.2's, in C), and the
guest's RAM in shared memory, which vhost-user needs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kmatrix.errors import MatrixError

QEMU = "qemu-system-x86_64"
PROBE_TIMEOUT = 30.0  # s for KVM to boot to the initramfs's probe answer
PROBE_OK = "SESSREC-MATRIX-PROBE-OK"
INFRA_MARK = "SESSREC-MATRIX-INFRA:"
VIRTIOFSD = Path("/usr/lib/qemu/virtiofsd")
SOCKET_WAIT = 20.0  # s for a virtiofsd to create its socket


@dataclass(frozen=True)
class Machine:
    accel: str  # "kvm" or "tcg"
    why: str  # why this accelerator (the KVM probe's answer)
    memory_mib: int = 3072
    cpus: int = 2


def shares(tree: Path, out: Path) -> list[tuple[str, Path, bool]]:
    """(tag, host directory, read-only) of the guest's shares, as guest/init
    mounts them."""
    return [("hostroot", Path("/"), True), ("kernel", tree, True), ("out", out, False)]


def command(vmlinuz: Path, initrd: Path, tree: Path, out: Path, machine: Machine,
            append: str, fs: str = "9p", sockets: Path | None = None) -> list[str]:
    """fs: how the shares reach the guest, "9p" or "virtiofs" (then sockets
    is the directory of the virtiofsd sockets, see virtiofsd())."""
    accel = (["-accel", "kvm", "-cpu", "host"] if machine.accel == "kvm"
             else ["-accel", "tcg,thread=multi", "-cpu", "max"])
    cmd = [QEMU, *accel, "-smp", str(machine.cpus), "-m", str(machine.memory_mib),
           "-display", "none", "-monitor", "none", "-no-reboot",
           "-serial", f"file:{out / 'serial.log'}",
           "-kernel", str(vmlinuz), "-initrd", str(initrd),
           "-append", f"console=ttyS0 quiet panic=-1 sessrec.fs={fs} {append}"]
    if fs == "virtiofs":
        if sockets is None:
            raise MatrixError("virtiofs shares need the virtiofsd sockets' directory")
        # vhost-user maps the guest's RAM into virtiofsd: shared memory.
        cmd += ["-object", f"memory-backend-memfd,id=mem,size={machine.memory_mib}M,share=on",
                "-numa", "node,memdev=mem"]
        for i, (tag, _, _) in enumerate(shares(tree, out)):
            cmd += ["-chardev", f"socket,id=vfs{i},path={sockets / tag}.sock",
                    "-device", f"vhost-user-fs-pci,chardev=vfs{i},tag={tag}"]
        return cmd
    local = "local,security_model=none"
    for tag, path, ro in shares(tree, out):
        opts = f"{local},path={path},mount_tag={tag}"
        opts += ",readonly=on" if ro else ""
        opts += ",multidevs=remap" if path == Path("/") else ""
        cmd += ["-virtfs", opts]
    return cmd


def virtiofsd_command(source: Path, socket: Path) -> list[str]:
    """One share's daemon. sandbox=chroot: the namespace sandbox fails in a
    container. qemu 7.2's virtiofsd has no read-only export: the guest
    mounts the read-only shares with -o ro (guest/init)."""
    return [str(VIRTIOFSD), f"--socket-path={socket}", "-o", f"source={source}",
            "-o", "sandbox=chroot", "-o", "cache=auto"]


@contextlib.contextmanager
def virtiofsd(tree: Path, out: Path, sockets: Path) -> Iterator[None]:
    """Runs one virtiofsd per share while the guest runs; their logs are
    out/virtiofsd-<tag>.log."""
    if not os.access(VIRTIOFSD, os.X_OK):
        raise MatrixError(f"{VIRTIOFSD} is missing: install qemu-system-common")
    sockets.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for tag, path, _ in shares(tree, out):
            sock = sockets / f"{tag}.sock"
            sock.unlink(missing_ok=True)
            with (out / f"virtiofsd-{tag}.log").open("w") as log:
                procs.append(subprocess.Popen(virtiofsd_command(path, sock),
                                              stdout=log, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + SOCKET_WAIT
            while not sock.exists():
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    raise MatrixError(f"virtiofsd for {path} did not start "
                                      f"(see virtiofsd-{tag}.log)")
                time.sleep(0.1)
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def choose(vmlinuz: Path, initrd: Path, tree: Path, scratch: Path, wanted: str) -> Machine:
    """wanted is kvm, tcg or auto; auto boots the probe under KVM first."""
    if wanted == "tcg":
        return Machine("tcg", "asked for TCG")
    problem = _kvm_problem(vmlinuz, initrd, tree, scratch)
    if problem is None:
        return Machine("kvm", "KVM booted the probe")
    if wanted == "kvm":
        raise MatrixError(f"KVM does not work here: {problem}")
    return Machine("tcg", f"KVM does not work here ({problem})")


def _kvm_problem(vmlinuz: Path, initrd: Path, tree: Path, scratch: Path) -> str | None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no usable /dev/kvm"
    scratch.mkdir(parents=True, exist_ok=True)
    # The probe answers from the initramfs, before any share is mounted.
    cmd = command(vmlinuz, initrd, tree, scratch, Machine("kvm", "probe", 256, 1),
                  "sessrec.probe")
    serial = scratch / "serial.log"
    serial.unlink(missing_ok=True)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=PROBE_TIMEOUT,
                           check=False)
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        return _first_line(err) or f"no answer from the guest within {PROBE_TIMEOUT:.0f} s"
    text = serial.read_text(errors="replace") if serial.exists() else ""
    if PROBE_OK in text:
        return None
    return _first_line(p.stderr) or f"qemu exited {p.returncode} without an answer"


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


@dataclass(frozen=True)
class GuestRun:
    booted: bool
    boot_seconds: float | None  # the guest's uptime when its root was up
    timed_out: bool
    seconds: float
    problem: str  # why it did not boot, or ""


def run(cmd: list[str], out: Path, boot_timeout: float, timeout: float) -> GuestRun:
    """Runs the guest until it powers off; infrastructure failures (qemu does
    not start, the guest never reaches its root) are told apart from a slow
    test run by the `booted` marker the guest writes."""
    start = time.monotonic()
    stderr = out / "qemu.stderr"
    with stderr.open("w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    booted = out / "booted"
    timed_out = False
    while p.poll() is None:
        elapsed = time.monotonic() - start
        if (not booted.exists() and elapsed > boot_timeout) or elapsed > timeout:
            timed_out = True
            p.kill()
            p.wait()
            break
        time.sleep(1)
    seconds = time.monotonic() - start
    if booted.exists():
        up = booted.read_text().split()
        return GuestRun(True, float(up[1]) if len(up) > 1 else None, timed_out, seconds, "")
    return GuestRun(False, None, timed_out, seconds, _why_not_booted(out, timed_out, boot_timeout))


def _why_not_booted(out: Path, timed_out: bool, boot_timeout: float) -> str:
    serial = (out / "serial.log").read_text(errors="replace") if (
        out / "serial.log").exists() else ""
    for line in serial.splitlines():
        if INFRA_MARK in line:
            return line.split(INFRA_MARK, 1)[1].strip()
    for marker in ("Kernel panic", "VFS: Unable to mount"):
        for line in serial.splitlines():
            if marker in line:
                return line.split("]", 1)[-1].strip()
    err = _first_line((out / "qemu.stderr").read_text(errors="replace"))
    if err:
        return err
    if timed_out:
        return f"the guest did not reach its root within {boot_timeout:.0f} s"
    return "qemu exited before the guest reached its root"
