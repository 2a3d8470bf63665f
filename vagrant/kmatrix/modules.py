"""Kernel modules of an extracted kernel package: where each is, what it
depends on (read from the module's own .modinfo section, so no depmod or kmod
is needed on the host), and the order to load a set of them in."""

from __future__ import annotations

import lzma
import struct
from collections.abc import Iterable
from pathlib import Path

from kmatrix.errors import MatrixError


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name -> file, for every .ko under modules_dir/kernel. Names are
    normalised as the kernel does: '-' and '_' are the same."""
    out: dict[str, Path] = {}
    for ko in (modules_dir / "kernel").rglob("*.ko*"):
        name = ko.name.split(".ko")[0].replace("-", "_")
        out[name] = ko
    return out


def read_module(path: Path) -> bytes:
    """The module's ELF bytes; Debian compresses modules with xz from 6.x on
    some flavours, and busybox's insmod wants them plain."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        raise MatrixError(f"{path}: zstd-compressed modules are not supported")
    return data


def modinfo(elf: bytes) -> dict[str, str]:
    """The key=value strings of an ELF64 little-endian module's .modinfo."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise MatrixError("not an ELF64 little-endian kernel module")
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    sections = []
    for i in range(shnum):
        name, _type, _flags, _addr, off, size = struct.unpack_from(
            "<IIQQQQ", elf, shoff + i * shentsize)
        sections.append((name, off, size))
    _, str_off, _ = sections[shstrndx]
    info: dict[str, str] = {}
    for name, off, size in sections:
        end = elf.index(b"\0", str_off + name)
        if elf[str_off + name:end] != b".modinfo":
            continue
        for item in elf[off:off + size].split(b"\0"):
            key, sep, value = item.partition(b"=")
            if sep:
                info.setdefault(key.decode(), value.decode(errors="replace"))
    return info


def load_order(wanted: Iterable[str], index: dict[str, Path],
               builtin: set[str]) -> list[str]:
    """wanted and everything they depend on, each after its dependencies.
    A module built into the kernel (modules.builtin) needs no loading."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name in chain:
            raise MatrixError(f"module dependency loop: {' -> '.join((*chain, name))}")
        path = index.get(name)
        if path is None:
            raise MatrixError(f"module {name} is neither built in nor in the package")
        deps = modinfo(read_module(path)).get("depends", "")
        for dep in filter(None, deps.split(",")):
            visit(dep, (*chain, name))
        seen.add(name)
        order.append(name)

    for w in wanted:
        visit(w, ())
    return order


def builtin_modules(modules_dir: Path) -> set[str]:
    """Names of the modules built into the kernel (modules.builtin)."""
    path = modules_dir / "modules.builtin"
    if not path.exists():
        return set()
    return {Path(line.strip()).name.split(".ko")[0].replace("-", "_")
            for line in path.read_text().splitlines() if line.strip()}
