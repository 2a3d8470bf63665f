"""Running a guest under qemu: KVM when it works here, TCG otherwise.

The guest's root is the host's own filesystem, shared read-only over 9p,
under a tmpfs overlay whose top layer is the kernel's package tree
(guest/init). A third, writable 9p share carries the job in and the results
out. The serial console goes to a file in that directory."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kmatrix.errors import MatrixError

QEMU = "qemu-system-x86_64"
PROBE_TIMEOUT = 30.0  # s for KVM to boot to the initramfs's probe answer
PROBE_OK = "SESSREC-MATRIX-PROBE-OK"
INFRA_MARK = "SESSREC-MATRIX-INFRA:"


@dataclass(frozen=True)
class Machine:
    accel: str  # "kvm" or "tcg"
    why: str  # why this accelerator (the KVM probe's answer)
    memory_mib: int = 3072
    cpus: int = 2


def command(vmlinuz: Path, initrd: Path, tree: Path, out: Path, machine: Machine,
            append: str) -> list[str]:
    accel = (["-accel", "kvm", "-cpu", "host"] if machine.accel == "kvm"
             else ["-accel", "tcg,thread=multi", "-cpu", "max"])
    share = "local,security_model=none"
    return [QEMU, *accel, "-smp", str(machine.cpus), "-m", str(machine.memory_mib),
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{out / 'serial.log'}",
            "-kernel", str(vmlinuz), "-initrd", str(initrd),
            "-append", f"console=ttyS0 quiet panic=-1 {append}",
            "-virtfs", f"{share},path=/,mount_tag=hostroot,readonly=on,multidevs=remap",
            "-virtfs", f"{share},path={tree},mount_tag=kernel,readonly=on",
            "-virtfs", f"{share},path={out},mount_tag=out"]


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
