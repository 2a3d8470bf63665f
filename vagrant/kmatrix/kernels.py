"""The kernels the matrix knows, and fetching each one: the image and its
own headers as Debian packages (`apt-get download`, no installation),
extracted into a cache directory that the guest sees on top of the host's
root filesystem. A kernel is fetched again when its packages' versions
change."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kmatrix.errors import MatrixError

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
LISTS_MAX_AGE = 24 * 3600  # seconds before a private suite's package lists are refreshed


@dataclass(frozen=True)
class Kernel:
    name: str
    meta: str  # the distribution's meta package that names the current image
    about: str
    suite: str | None = None  # an extra Debian suite (its lists kept in the cache); None: apt's own
    fs: str = "9p"  # how the guest mounts the shares: "9p", or "virtiofs" for a kernel without 9p


KERNELS: tuple[Kernel, ...] = (
    Kernel("debian12", "linux-image-amd64", "Debian 12 stock kernel (6.1)"),
    # No 9p in the cloud flavour (CONFIG_NET_9P off): its shares are virtiofs.
    Kernel("debian12-cloud", "linux-image-cloud-amd64", "Debian 12 cloud flavour (6.1, virtiofs)",
           fs="virtiofs"),
    Kernel("debian12-rt", "linux-image-rt-amd64", "Debian 12 PREEMPT_RT flavour (6.1)"),
    Kernel("debian12-backports", "linux-image-amd64",
           "Debian 12 backports' newer kernel", suite="bookworm-backports"),
    # The oldest: no bpf_task_pt_regs, bpf_get_current_task_btf or task
    # storage, so the programs' fallbacks (recorder/kfeatures.py) run there.
    Kernel("debian11", "linux-image-amd64", "Debian 11 stock kernel (5.10)", suite="bullseye"),
)


def by_name(name: str) -> Kernel:
    for k in KERNELS:
        if k.name == name:
            return k
    raise MatrixError(f"unknown kernel '{name}' (known: {', '.join(k.name for k in KERNELS)})")


@dataclass(frozen=True)
class Fetched:
    """A kernel unpacked in the cache: tree is the root-relative package tree
    (boot/, usr/lib/modules/, usr/src/)."""

    kernel: Kernel
    release: str  # uname -r of the image, e.g. 6.1.0-57-amd64
    packages: tuple[str, ...]  # name=version of every package unpacked
    tree: Path

    @property
    def vmlinuz(self) -> Path:
        return self.tree / "boot" / f"vmlinuz-{self.release}"

    @property
    def modules_dir(self) -> Path:
        return self.tree / "usr/lib/modules" / self.release


class Apt:
    """apt-get/apt-cache, on the system's sources or on one extra suite whose
    lists live in the cache (the machine's apt configuration is not touched)."""

    def __init__(self, cache: Path, suite: str | None) -> None:
        self.opts: list[str] = ["-o", "APT::Sandbox::User=root"]
        if suite is None:
            return
        base = cache / "apt" / suite
        for d in ("lists/partial", "archives/partial", "parts"):
            (base / d).mkdir(parents=True, exist_ok=True)
        sources = base / "sources.list"
        sources.write_text(f"deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_MIRROR} {suite} main\n")
        self.opts += ["-o", f"Dir::Etc::SourceList={sources}",
                      "-o", f"Dir::Etc::SourceParts={base / 'parts'}",
                      "-o", f"Dir::State::Lists={base / 'lists'}",
                      "-o", f"Dir::Cache={base}"]
        stamp = base / "lists" / ".updated"
        if not stamp.exists() or time.time() - stamp.stat().st_mtime > LISTS_MAX_AGE:
            self._run("apt-get", "update", "-q")
            stamp.touch()

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool, *self.opts, *args]
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
        if p.returncode != 0:
            last = (p.stderr.strip().splitlines() or ["no message"])[-1]
            raise MatrixError(f"{' '.join([tool, *args])} failed: {last}")
        return p.stdout

    def field(self, package: str, name: str) -> str:
        text = self._run("apt-cache", "show", "--no-all-versions", package)
        m = re.search(rf"^{name}: (.*)$", text, re.MULTILINE)
        if m is None:
            raise MatrixError(f"package {package} has no {name} field")
        return m.group(1)

    def download(self, packages: list[str], dest: Path) -> None:
        self._run("apt-get", "download", "-q", *packages, cwd=dest)


def resolve(kernel: Kernel, apt: Apt) -> tuple[str, list[str]]:
    """(release, [image, headers, headers-common]) the meta package points at."""
    image = _dep(apt.field(kernel.meta, "Depends"), r"linux-image-[^ ,(]+", kernel.meta)
    release = image.removeprefix("linux-image-").removesuffix("-unsigned")
    headers = f"linux-headers-{release}"
    common = _dep(apt.field(headers, "Depends"), r"linux-headers-[^ ,(]+common[^ ,(]*", headers)
    return release, [image, headers, common]


def _dep(depends: str, pattern: str, package: str) -> str:
    m = re.search(pattern, depends)
    if m is None:
        raise MatrixError(f"{package} depends on no {pattern} ({depends})")
    return m.group(0)


def fetch(kernel: Kernel, cache: Path) -> Fetched:
    """Downloads and unpacks the kernel unless the cache has these versions."""
    apt = Apt(cache, kernel.suite)
    release, pkgs = resolve(kernel, apt)
    versions = tuple(f"{p}={apt.field(p, 'Version')}" for p in pkgs)
    base = cache / "kernels" / kernel.name
    tree = base / "tree"
    stamp = base / "packages"
    if stamp.exists() and stamp.read_text().split() == list(versions) and tree.is_dir():
        return Fetched(kernel, release, versions, tree)
    shutil.rmtree(base, ignore_errors=True)
    debs = base / "debs"
    debs.mkdir(parents=True)
    apt.download(list(versions), debs)
    staging = base / "staging"
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(staging)], check=True)
    _merge_usr(staging)
    staging.rename(tree)
    shutil.rmtree(debs)
    stamp.write_text("\n".join(versions) + "\n")
    return Fetched(kernel, release, versions, tree)


def _merge_usr(tree: Path) -> None:
    """Moves lib/ to usr/lib/ on a merged-/usr host: in the guest the tree is
    an overlay layer above the host's root, and a real lib/ directory there
    would hide the host's /lib -> usr/lib link (and with it the dynamic
    loader)."""
    lib = tree / "lib"
    if not lib.is_dir() or not os.path.islink("/lib"):
        return
    dest = tree / "usr" / "lib"
    dest.mkdir(parents=True, exist_ok=True)
    for entry in lib.iterdir():
        entry.rename(dest / entry.name)
    lib.rmdir()
