"""The guest's initramfs: busybox-static, guest/init as /init, and the
modules the guest kernel needs to mount its root (virtio PCI, 9p over
virtio or virtiofs, overlayfs), taken from the kernel's own package. A newc cpio written
here in Python, gzip-compressed (every Debian kernel reads gzip)."""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import struct
from pathlib import Path

from kmatrix import modules
from kmatrix.errors import MatrixError

BUSYBOX = Path("/bin/busybox")
GUEST_INIT = Path(__file__).resolve().parent.parent / "guest" / "init"
# By how the shares reach the guest (qemu.command's fs).
ROOT_MODULES = {
    "9p": ("virtio_pci", "9pnet_virtio", "9p", "overlay"),
    "virtiofs": ("virtio_pci", "virtiofs", "overlay"),
}


def _newc(name: str, mode: int, data: bytes = b"", ino: int = 0,
          rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(name) + 1, 0]
    head = b"070701" + b"".join(f"{f:08X}".encode() for f in fields)
    out = head + name.encode() + b"\0"
    out += b"\0" * (-len(out) % 4)
    out += data + b"\0" * (-len(data) % 4)
    return out


def build(modules_dir: Path, dest: Path, fs: str = "9p") -> list[str]:
    """Writes the initramfs to dest; returns the modules it loads, in order."""
    if not BUSYBOX.exists():
        raise MatrixError(f"{BUSYBOX} is missing: install busybox-static")
    busybox = BUSYBOX.read_bytes()
    if not _is_static(busybox):
        raise MatrixError(f"{BUSYBOX} is dynamically linked: install busybox-static")
    order = modules.load_order(
        ROOT_MODULES[fs], modules.module_index(modules_dir), modules.builtin_modules(modules_dir))
    index = modules.module_index(modules_dir)
    entries: list[bytes] = []
    dirs = ("bin", "dev", "proc", "sys", "modules")
    for i, d in enumerate(dirs, 1):
        entries.append(_newc(d, stat.S_IFDIR | 0o755, ino=i))
    ino = len(dirs) + 1
    entries.append(_newc("dev/console", stat.S_IFCHR | 0o600, ino=ino, rdev=(5, 1)))
    files = [("bin/busybox", busybox, 0o755),
             ("init", GUEST_INIT.read_bytes(), 0o755),
             ("modules.order", "".join(f"{m}\n" for m in order).encode(), 0o644)]
    files += [(f"modules/{m}.ko", modules.read_module(index[m]), 0o644) for m in order]
    for name, data, perm in files:
        ino += 1
        entries.append(_newc(name, stat.S_IFREG | perm, data, ino=ino))
    entries.append(_newc("TRAILER!!!", 0))
    tmp = dest.with_suffix(".tmp")
    with gzip.open(tmp, "wb", compresslevel=1) as out:
        out.write(b"".join(entries))
    os.replace(tmp, dest)
    return order


def _is_static(elf: bytes) -> bool:
    """No PT_INTERP program header: the binary runs without a loader."""
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return all(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] != 3
               for i in range(phnum))


def fingerprint(modules_dir: Path, fs: str = "9p") -> str:
    """Changes when the initramfs must be rebuilt: the init script, busybox,
    the kernel's modules, or the modules it loads."""
    h = hashlib.sha256()
    h.update(" ".join(ROOT_MODULES[fs]).encode())
    h.update(GUEST_INIT.read_bytes())
    h.update(str(BUSYBOX.stat().st_mtime_ns).encode())
    h.update(str((modules_dir / "modules.order").stat().st_mtime_ns).encode())
    return h.hexdigest()[:16]
