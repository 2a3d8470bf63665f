"""Loads sessrec's BPF programs: the only module that imports bcc.

One loaded program set serves any number of sessions at once: a session is
an entry in the `sessions` map (a map of maps), keyed by its cgroup id, whose
value is the session's own ring buffer, created here; every record names its
session's cgroup id too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from recorder import btf, kfeatures
from recorder.ringbuf import RingReader
from sessrec.errors import EnvironmentProblem, PrivilegeError

BPF_DIR = Path(os.environ.get("SESSREC_BPF_DIR", Path(__file__).resolve().parent.parent / "bpf"))
PROGRAM_FILES = ("proc.bpf.c", "file.bpf.c", "net.bpf.c")
# The config's `events` kinds (sessrec/config.py), each the program file that
# records it: a kind that is off is not compiled, so it costs nothing.
KIND_FILES = {"command": "proc.bpf.c", "disk": "file.bpf.c", "network": "net.bpf.c"}
# Which processes are in a session is kept by proc.bpf.c's fork, exit and
# cgroup programs: always loaded, built with SR_MEMBERSHIP_ONLY (no command
# events) when command events are not wanted.
MEMBERSHIP_FILE = "proc.bpf.c"


def loaded_files(files: tuple[str, ...]) -> tuple[str, ...]:
    """The program files loaded for `files`: they and the membership file."""
    return files if MEMBERSHIP_FILE in files else (MEMBERSHIP_FILE, *files)
BTF_PATH = "/sys/kernel/btf/vmlinux"
# The program the others tail-call to walk a kernel path (bpf/kpath.bpf.h).
KPATH_WALK_FUNC = "sr_kpath_walk"
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# Kernel struct members the programs read, as (macro, struct, member).
KERNEL_OFFSETS: tuple[tuple[str, str, str], ...] = (
    ("SR_OFF_TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("SR_OFF_TASK_TGID", "task_struct", "tgid"),
    ("SR_OFF_TASK_PID", "task_struct", "pid"),
    ("SR_OFF_TASK_COMM", "task_struct", "comm"),
    ("SR_OFF_TASK_CRED", "task_struct", "cred"),
    ("SR_OFF_CRED_UID", "cred", "uid"),
    ("SR_OFF_TASK_MM", "task_struct", "mm"),
    ("SR_OFF_TASK_EXIT_CODE", "task_struct", "exit_code"),
    ("SR_OFF_TASK_FILES", "task_struct", "files"),
    ("SR_OFF_MM_ARG_START", "mm_struct", "arg_start"),
    ("SR_OFF_MM_ARG_END", "mm_struct", "arg_end"),
    ("SR_OFF_MM_START_STACK", "mm_struct", "start_stack"),
    ("SR_OFF_FILES_FDT", "files_struct", "fdt"),
    ("SR_OFF_FDTABLE_FD", "fdtable", "fd"),
    ("SR_OFF_FDTABLE_MAX_FDS", "fdtable", "max_fds"),
    ("SR_OFF_FILE_PRIVATE_DATA", "file", "private_data"),
    ("SR_OFF_SOCKET_TYPE", "socket", "type"),
    ("SR_OFF_SOCKET_SK", "socket", "sk"),
    ("SR_OFF_SOCK_SK_PROTOCOL", "sock", "sk_protocol"),
    # sock_common is the first member of struct sock (sock.__sk_common).
    ("SR_OFF_SKC_FAMILY", "sock", "__sk_common.skc_family"),
    ("SR_OFF_SKC_DPORT", "sock", "__sk_common.skc_dport"),
    ("SR_OFF_SKC_DADDR", "sock", "__sk_common.skc_daddr"),
    ("SR_OFF_SKC_V6_DADDR", "sock", "__sk_common.skc_v6_daddr"),
    # Kernel paths (kpath.bpf.h): the walk from a struct path to the root.
    ("SR_OFF_TASK_FS", "task_struct", "fs"),
    ("SR_OFF_FS_ROOT", "fs_struct", "root"),
    ("SR_OFF_FS_PWD", "fs_struct", "pwd"),
    ("SR_OFF_PATH_MNT", "path", "mnt"),
    ("SR_OFF_PATH_DENTRY", "path", "dentry"),
    ("SR_OFF_FILE_F_PATH", "file", "f_path"),
    ("SR_OFF_DENTRY_D_PARENT", "dentry", "d_parent"),
    ("SR_OFF_DENTRY_D_NAME", "dentry", "d_name"),
    ("SR_OFF_DENTRY_D_HASH_PPREV", "dentry", "d_hash.pprev"),
    ("SR_OFF_QSTR_HASH_LEN", "qstr", "hash_len"),
    ("SR_OFF_QSTR_NAME", "qstr", "name"),
    ("SR_OFF_VFSMOUNT_MNT_ROOT", "vfsmount", "mnt_root"),
    ("SR_OFF_MOUNT_MNT", "mount", "mnt"),
    ("SR_OFF_MOUNT_MNT_PARENT", "mount", "mnt_parent"),
    ("SR_OFF_MOUNT_MNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
    ("SR_OFF_MM_EXE_FILE", "mm_struct", "exe_file"),
    # The task's cgroup2 ancestors, where tracepoint programs may not call
    # bpf_get_current_ancestor_cgroup_id (SR_NO_ANCESTOR_CGROUP, proc.bpf.c).
    ("SR_OFF_TASK_CGROUPS", "task_struct", "cgroups"),
    ("SR_OFF_CSS_SET_DFL_CGRP", "css_set", "dfl_cgrp"),
    ("SR_OFF_CGROUP_SELF", "cgroup", "self"),
    ("SR_OFF_CGROUP_SELF_PARENT", "cgroup", "self.parent"),
    ("SR_OFF_CGROUP_LEVEL", "cgroup", "level"),
    ("SR_OFF_CGROUP_KN", "cgroup", "kn"),
    ("SR_OFF_KERNFS_NODE_ID", "kernfs_node", "id"),
    # Syscall arguments, read at sys_exit from the saved user registers.
    ("SR_OFF_PT_REGS_DI", "pt_regs", "di"),
    ("SR_OFF_PT_REGS_SI", "pt_regs", "si"),
    ("SR_OFF_PT_REGS_DX", "pt_regs", "dx"),
    ("SR_OFF_PT_REGS_R10", "pt_regs", "r10"),
    ("SR_OFF_PT_REGS_ORIG_AX", "pt_regs", "orig_ax"),
)
# The programs read syscall arguments from x86-64's saved registers.
SUPPORTED_MACHINES = ("x86_64",)

PAGE_SIZE = 4096  # BPF_RINGBUF_OUTPUT sizes are in pages of this size
DEFAULT_RING_PAGES = 8192  # 32 MiB: a burst of ~300k events fits
BPF_MAP_TYPE_RINGBUF = 27
# Rings of ended sessions kept for the next ones (creating one costs a
# syscall and zeroed memory; keeping one costs its memory).
RING_POOL = 8
# Records handled per consume() call at most, so the drain loop keeps
# flushing and watching the session during a flood.
DRAIN_BATCH = 65536


@dataclass(frozen=True)
class LoadConfig:
    session_level: int
    ring_pages: int = DEFAULT_RING_PAGES
    program_files: tuple[str, ...] = PROGRAM_FILES
    # Compare each open's path buffer at sys_enter and sys_exit (the TOCTOU
    # race): a sys_enter program on every open of the host (bpf/file.bpf.c).
    race_check: bool = False


def program_text(files: tuple[str, ...] = PROGRAM_FILES) -> str:
    """The C source handed to BCC, as one translation unit: sessrec.h, then
    common.bpf.h, then the program files. Our own #include lines are inlined
    because BCC rewrites map calls (`sessions.lookup(...)`) in the main file
    only; each file still includes what it uses, for readers and editors."""
    parts = []
    for name in ("sessrec.h", "common.bpf.h", "kpath.bpf.h", *files):
        path = BPF_DIR / name
        try:
            text = path.read_text()
        except OSError as e:
            raise EnvironmentProblem(f"cannot read BPF program {path}: {e.strerror}") from e
        text = _LOCAL_INCLUDE.sub(r"/* inlined: \1 */", text)
        parts.append(f"/* ---- {name} ---- */\n{text}")
    return "\n".join(parts)


_LOCAL_INCLUDE = re.compile(r'^#include "([\w.]+)"', re.MULTILINE)


def tracepoints(text: str | None = None,
                files: tuple[str, ...] = PROGRAM_FILES) -> list[tuple[str, str]]:
    """(category, event) of every tracepoint the programs attach to, read from
    the source so there is one list only."""
    src = program_text(files) if text is None else text
    return re.findall(r"^TRACEPOINT_PROBE\((\w+),\s*(\w+)\)", src, re.MULTILINE)


def tracefs() -> Path:
    """The tracefs mount; mounts it when missing (BCC needs it to attach)."""
    for c in TRACEFS_CANDIDATES:
        if Path(c, "events").is_dir():
            return Path(c)
    try:
        _mount("tracefs", "/sys/kernel/tracing", "tracefs")
    except OSError as e:
        raise EnvironmentProblem(
            f"tracefs is not mounted and mounting it failed: {e.strerror}"
        ) from None
    return Path("/sys/kernel/tracing")


def _mount(source: str, target: str, fstype: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def check_machine() -> None:
    machine = os.uname().machine
    if machine not in SUPPORTED_MACHINES:
        raise EnvironmentProblem(
            f"recording is supported on {', '.join(SUPPORTED_MACHINES)} only, not {machine} "
            "(the BPF programs read syscall arguments from its registers); reading "
            "session files works anywhere"
        )


def check_privileges(example: str = "sudo sessrec record -- CMD") -> None:
    if os.geteuid() != 0:
        raise PrivilegeError(
            "recording needs root (BPF and cgroups): run it with sudo, e.g. "
            f"'{example}'"
        )


def check_btf() -> None:
    if not Path(BTF_PATH).exists():
        raise EnvironmentProblem(
            f"no BTF at {BTF_PATH}: sessrec needs a kernel built with "
            "CONFIG_DEBUG_INFO_BTF=y to find kernel struct offsets"
        )


def compile_flags(cfg: LoadConfig, tracefs_dir: Path | None = None,
                  features: kfeatures.KernelFeatures | None = None) -> list[str]:
    """-D and -I flags that configure the programs (no source templating)."""
    check_btf()
    wanted = [(s, m) for _, s, m in KERNEL_OFFSETS]
    found = btf.cached_member_offsets(wanted, btf_path=BTF_PATH)
    flags: list[str] = []
    for macro, s, m in KERNEL_OFFSETS:
        flags.append(f"-D{macro}={found[(s, m)].offset}")
    flags += walk_block_flags(found, inline_name())
    flags += [
        f"-DSR_SESSION_LEVEL={cfg.session_level}",
        f"-DSR_RING_PAGES={cfg.ring_pages}",
        f"-DSR_NR_CPUS={_possible_cpus()}",
    ]
    if MEMBERSHIP_FILE not in cfg.program_files:
        flags.append("-DSR_MEMBERSHIP_ONLY=1")
    if features is None:
        features = kfeatures.detect(tracefs_dir or tracefs(), BTF_PATH)
    if features.exit_group_dead:
        flags.append("-DSR_HAVE_GROUP_DEAD=1")
    if not features.openat2:
        flags.append("-DSR_NO_OPENAT2=1")
    if not features.task_btf:
        flags.append("-DSR_NO_TASK_BTF=1")
    if features.saves_args:
        flags.append("-DSR_SAVE_ARGS=1")
    if not features.btf_names.get("ancestor_cgroup_id", True):
        flags.append("-DSR_NO_ANCESTOR_CGROUP=1")
    if cfg.race_check and features.race_check_possible:
        flags.append("-DSR_RACE_CHECK=1")
    return flags


def block_flags(macro: str, fields: dict[str, int], what: str, limit: int = 64) -> list[str]:
    """Where a block of 8-byte fields that the path walk reads in one probe
    read starts, and its length (8-byte aligned): one helper call instead of
    one per field. The fields have been adjacent for years; a kernel where
    they are not gets a clear error, not a wrong read."""
    start = min(fields.values()) & ~7
    end = max(fields.values()) + 8
    length = (end - start + 7) & ~7
    if length > limit or any(o % 8 for o in fields.values()):
        where = ", ".join(f"{name} at {off}" for name, off in fields.items())
        raise EnvironmentProblem(
            f"{what}: {where} are not within {limit} aligned bytes of each other in "
            "this kernel's BTF: the path walk cannot read them"
        )
    return [f"-D{macro}_OFF={start}", f"-D{macro}_LEN={length}"]


# A dentry's inline name (d_shortname since 6.14, d_iname before), where a
# name shorter than it is kept: the walk takes such a name from the dentry's
# block, which it reads anyway, instead of one more read per component.
INLINE_NAMES = (("dentry", "d_shortname"), ("dentry", "d_iname"))
INLINE_BLOCK_MAX = 128  # the dentry block with the inline name, at most


def inline_name() -> btf.MemberOffset | None:
    """Where this kernel keeps a dentry's short name, if it is known. Both
    names are asked for at once, and the one a kernel lacks is remembered
    missing: each load parsed the BTF again for it (47 ms here)."""
    try:
        found = btf.cached_member_offsets(INLINE_NAMES, btf_path=BTF_PATH, optional=True)
    except EnvironmentProblem:
        return None
    return next((found[want] for want in INLINE_NAMES if want in found), None)


def walk_block_flags(found: dict[tuple[str, str], btf.MemberOffset],
                     inline: btf.MemberOffset | None = None) -> list[str]:
    """The path walk's two blocks (bpf/kpath.bpf.h): of a dentry, d_hash.pprev
    (is it hashed), d_parent and d_name (a qstr: hash_len, then name), and
    its inline name when `inline` says where it is and the whole still fits
    in INLINE_BLOCK_MAX bytes; of a struct mount, mnt_parent, mnt_mountpoint
    and its vfsmount's mnt_root."""
    name = found[("dentry", "d_name")].offset
    mnt = found[("mount", "mnt")].offset
    fields = {
        "d_hash.pprev": found[("dentry", "d_hash.pprev")].offset,
        "d_parent": found[("dentry", "d_parent")].offset,
        "d_name.hash_len": name + found[("qstr", "hash_len")].offset,
        "d_name.name": name + found[("qstr", "name")].offset,
    }
    dentry = block_flags("SR_DENTRY_BLK", fields, "struct dentry")
    if inline is not None and inline.size % 8 == 0 and inline.size >= 16:
        with_name = {**fields, "inline name": inline.offset,
                     "its end": inline.offset + inline.size - 8}
        try:
            dentry = block_flags("SR_DENTRY_BLK", with_name, "struct dentry",
                                 INLINE_BLOCK_MAX)
            dentry += [f"-DSR_OFF_DENTRY_INAME={inline.offset}",
                       f"-DSR_DENTRY_INAME_LEN={inline.size}"]
        except EnvironmentProblem:
            pass  # names are read one by one, as without it
    mount = block_flags("SR_MOUNT_BLK", {
        "mnt_parent": found[("mount", "mnt_parent")].offset,
        "mnt_mountpoint": found[("mount", "mnt_mountpoint")].offset,
        "mnt.mnt_root": mnt + found[("vfsmount", "mnt_root")].offset,
    }, "struct mount")
    return dentry + mount


def _possible_cpus() -> int:
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


# Tracepoints the programs do without (a notice says so): see kfeatures.
OPTIONAL_TRACEPOINTS = frozenset({("syscalls", "sys_exit_openat2"),
                                  ("syscalls", "sys_enter_openat2")})


def check_tracepoints(tf: Path, files: tuple[str, ...] = PROGRAM_FILES) -> None:
    missing = [f"{c}:{e}" for c, e in tracepoints(files=files)
               if (c, e) not in OPTIONAL_TRACEPOINTS and not (tf / "events" / c / e).is_dir()]
    if missing:
        raise EnvironmentProblem(
            "missing tracepoint(s) " + ", ".join(missing) + ": this kernel lacks "
            "them (CONFIG_FTRACE_SYSCALLS is needed for syscalls:*)"
        )


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError as e:
        raise EnvironmentProblem(
            "BCC's Python bindings are missing: install the distribution package "
            "python3-bpfcc (apt-get install python3-bpfcc bpfcc-tools); the PyPI "
            "package named 'bcc' is unrelated. With a venv, create it with "
            "--system-site-packages. (" + str(e) + ")"
        ) from e
    return bcc


class RingConsumer(Protocol):
    """What takes the records of the sessions' rings (record.Dispatcher)."""

    def drain(self, reader: RingReader, cgroup_id: int, limit: int) -> int:
        """Takes at most about limit committed records of the session's ring
        (reader) and returns how many it took."""
        ...


@dataclass
class _Ring:
    fd: int
    reader: RingReader
    owned: bool  # created here (closed here), not the program set's template


@dataclass
class Programs:
    """The loaded program set."""

    bpf: Any
    cfg: LoadConfig
    features: kfeatures.KernelFeatures
    _rings: dict[int, _Ring] = field(default_factory=dict, repr=False)
    _pool: list[_Ring] = field(default_factory=list, repr=False)
    _consumer: RingConsumer | None = field(default=None, repr=False)

    @classmethod
    def load(cls, cfg: LoadConfig) -> Programs:
        check_privileges()
        check_machine()
        tf = tracefs()
        check_tracepoints(tf, loaded_files(cfg.program_files))
        check_btf()
        features = kfeatures.detect(tf, BTF_PATH)
        features.check()
        if cfg.race_check and not features.race_check_possible:
            cfg = replace(cfg, race_check=False)
            features = replace(features, notices=[*features.notices,
                                                  kfeatures.RACE_CHECK_NOTICE])
        cflags = compile_flags(cfg, tf, features)
        bcc = import_bcc()
        try:
            bpf = bcc.BPF(text=program_text(loaded_files(cfg.program_files)), cflags=cflags)
        except Exception as e:  # BCC raises bare Exception on compile/load errors
            raise EnvironmentProblem(f"loading the BPF programs failed: {e}") from e
        try:
            # The path walk, reached by tail call (bpf/kpath.bpf.h).
            walk = bpf.load_func(KPATH_WALK_FUNC, bcc.BPF.TRACEPOINT)
        except Exception as e:
            bpf.cleanup()
            raise EnvironmentProblem(f"loading the BPF path walk failed: {e}") from e
        tails = bpf["kpath_prog"]
        tails[tails.Key(0)] = tails.Leaf(walk.fd)
        return cls(bpf=bpf, cfg=cfg, features=features)

    def header_fields(self) -> dict[str, Any]:
        """What a session header says of the programs that record it
        (docs/FORMAT.md): the kernel's features and the race check."""
        return {"kernel_features": self.features.as_header(),
                "race_check": self.cfg.race_check}

    def add_session(self, cgroup_id: int) -> None:
        """Gives the session its ring and registers it: the programs record
        its processes from now on (a process moved into its cgroup joins it,
        bpf/common.bpf.h, members). The map update waits for an RCU grace
        period (the kernel's rule for maps of maps: about 15 ms here), which
        is why the daemon prepares sessions ahead (prepare_session)."""
        if cgroup_id in self._rings:
            return
        ring = self._new_ring()
        try:
            self._register(cgroup_id, ring)
        except EnvironmentProblem:
            self._release(ring)
            raise
        self._rings[cgroup_id] = ring

    def _register(self, cgroup_id: int, ring: _Ring) -> None:
        t = self.bpf["sessions"]
        try:
            t[ctypes.c_uint64(cgroup_id)] = ctypes.c_int(ring.fd)
        except Exception as e:  # BCC raises bare Exception on a failed update
            raise EnvironmentProblem(f"cannot register the session's ring: {e}") from None

    def prepare_session(self, cgroup_id: int) -> _Ring:
        """A new ring, registered for cgroup_id (an empty cgroup made ahead):
        callable from another thread, as the slow part (the map update)
        runs without the GIL. adopt() it when the session starts."""
        ring = self._create_ring()
        try:
            self._register(cgroup_id, ring)
        except EnvironmentProblem:
            ring.reader.close()
            os.close(ring.fd)
            raise
        return ring

    def adopt(self, cgroup_id: int, ring: _Ring) -> None:
        """A session prepared by prepare_session() starts."""
        self._rings[cgroup_id] = ring

    def _new_ring(self) -> _Ring:
        if self._pool:
            return self._pool.pop()
        size = self.cfg.ring_pages * PAGE_SIZE
        tmpl = self.bpf["ring_tmpl"].map_fd
        if not any(r.fd == tmpl for r in self._rings.values()):
            return _Ring(tmpl, RingReader(tmpl, size), owned=False)
        return self._create_ring()

    def _create_ring(self) -> _Ring:
        size = self.cfg.ring_pages * PAGE_SIZE
        from bcc import libbcc

        fd = libbcc.lib.bcc_create_map(BPF_MAP_TYPE_RINGBUF, b"sessrec_ring", 0, 0, size, 0)
        if fd < 0:
            why = os.strerror(-fd) if fd < -1 else "failed"
            raise EnvironmentProblem(f"cannot create a {size >> 10} KiB ring buffer for a "
                                     f"session: {why} (each session has one: see ring_size)")
        return _Ring(fd, RingReader(fd, size), owned=True)

    def _release(self, ring: _Ring) -> None:
        if not ring.owned or len(self._pool) < RING_POOL:
            self._pool.append(ring)
            return
        ring.reader.close()
        os.close(ring.fd)

    def remove_session(self, cgroup_id: int) -> None:
        """Unregisters the session, its cgroup and its processes (also those
        that moved out of the cgroup: bpf/common.bpf.h, members); what its
        ring still holds is drained first (the caller drained already: this
        is for late records)."""
        t = self.bpf["sessions"]
        try:
            del t[ctypes.c_uint64(cgroup_id)]
        except KeyError:
            pass
        self.remove_members(self.members_of(cgroup_id))
        self._forget_login_scope(cgroup_id)
        ring = self._rings.pop(cgroup_id, None)
        if ring is not None:
            self._drain_all(cgroup_id, ring)
            self._release(ring)

    def retire(self, cgroup_id: int) -> _Ring | None:
        """The first half of remove_session(), for the daemon: the ring is
        drained and taken from the session, still registered in the map;
        unregister() it later, from another thread (the map delete waits for
        an RCU grace period)."""
        self._forget_login_scope(cgroup_id)
        ring = self._rings.pop(cgroup_id, None)
        if ring is not None:
            self._drain_all(cgroup_id, ring)
        return ring

    def unregister(self, cgroup_id: int, ring: _Ring) -> None:
        """The second half: callable from another thread. The ring is closed
        (the template ring, which is not ours to close, goes back to the pool)."""
        t = self.bpf["sessions"]
        try:
            del t[ctypes.c_uint64(cgroup_id)]
        except KeyError:
            pass
        if ring.owned:
            ring.reader.close()
            os.close(ring.fd)
        else:
            self._pool.append(ring)

    def set_login_scope(self, cgroup_id: int, path: str) -> bool:
        """A move of the session's processes into path (a cgroup2 path from
        the root: its login's logind scope) is not flagged tampered
        (bpf/proc.bpf.c, login_scopes). False if path is too long to match."""
        raw = path.encode()
        table = self.bpf["login_scopes"]
        leaf = table.Leaf()
        if len(raw) > type(leaf).path.size:  # the field: leaf.path reads as bytes
            return False
        leaf.len = len(raw)
        leaf.path = raw
        table[table.Key(cgroup_id)] = leaf
        return True

    def _forget_login_scope(self, cgroup_id: int) -> None:
        with contextlib.suppress(KeyError):
            del self.bpf["login_scopes"][ctypes.c_uint64(cgroup_id)]

    def add_member(self, pid: int, cgroup_id: int) -> None:
        """Records process pid in the session of cgroup_id from now on. A
        process moved into a session's cgroup joins it by itself; this is
        for one that was there before the session was added."""
        members = self.bpf["members"]
        members[members.Key(pid)] = members.Leaf(cgroup_id)

    def member_of(self, pid: int) -> int | None:
        """The session (cgroup id) process pid is recorded in, if any."""
        members = self.bpf["members"]
        try:
            return int(members[members.Key(pid)].value)
        except KeyError:
            return None

    def members_of(self, cgroup_id: int) -> list[int]:
        """The processes recorded in the session of cgroup_id, wherever they
        are (a scan of the members map)."""
        return [k.value for k, v in self.bpf["members"].items() if v.value == cgroup_id]

    def remove_members(self, pids: Iterable[int]) -> None:
        """pids are recorded no more (left running when their session ended)."""
        members = self.bpf["members"]
        for pid in pids:
            with contextlib.suppress(KeyError):
                del members[members.Key(pid)]

    def open_ring(self, consumer: RingConsumer) -> None:
        """consumer.drain() takes the records of each session's ring whenever
        consume() runs."""
        self._consumer = consumer

    def consume(self, cgroup_ids: Iterable[int] | None = None) -> int:
        """Drains the sessions' rings (all, or those of cgroup_ids) without
        waiting (records are submitted without wake-ups, so the caller drains
        on a timer), each at most a batch, so that a flooding session does
        not starve the others. Returns the record count."""
        ids = list(self._rings) if cgroup_ids is None else cgroup_ids
        return sum(self.consume_session(cg) for cg in ids)

    def consume_session(self, cgroup_id: int) -> int:
        """consume() of one session's ring."""
        ring = self._rings.get(cgroup_id)
        if ring is None or self._consumer is None or not ring.reader.pending():
            return 0
        return self._consumer.drain(ring.reader, cgroup_id, DRAIN_BATCH)

    def _drain_all(self, cgroup_id: int, ring: _Ring) -> int:
        """Drains the ring until nothing is left (or a record is still being
        written): at the end of a session, when nothing may stay behind."""
        total = 0
        while self._consumer is not None:
            n = self._consumer.drain(ring.reader, cgroup_id, DRAIN_BATCH)
            total += n
            if n == 0 or not ring.reader.pending():
                break
        return total

    def pending_session(self, cgroup_id: int) -> bool:
        ring = self._rings.get(cgroup_id)
        return ring is not None and ring.reader.pending()

    def ring_fd(self, cgroup_id: int) -> int:
        """The session's ring, to poll: it becomes readable when the
        programs wake user space, once the ring is half full."""
        return self._rings[cgroup_id].fd

    def pending(self) -> bool:
        """Records are waiting in a ring (consume() stops after a batch)."""
        return any(r.reader.pending() for r in self._rings.values())

    def consume_all(self) -> int:
        """Drains every ring to its end: what is left when a session ends."""
        return sum(self._drain_all(cg, r) for cg, r in list(self._rings.items()))

    def lost_all(self) -> dict[int, dict[int, int]]:
        """Every session's losses, cgroup id -> {event type: count}: one pass
        over the map for all sessions (the daemon checks them together)."""
        out: dict[int, dict[int, int]] = {}
        for k, v in self.bpf["lost"].items():
            if v.value:
                out.setdefault(int(k.cgroup_id), {})[int(k.type)] = int(v.value)
        return out

    def lost(self, cgroup_id: int) -> dict[int, int]:
        """Records of a session the kernel could not put in the ring, per
        event type."""
        out: dict[int, int] = {}
        for k, v in self.bpf["lost"].items():
            if k.cgroup_id == cgroup_id and v.value:
                out[int(k.type)] = int(v.value)
        return out

    def forget_lost(self, cgroup_id: int) -> None:
        table = self.bpf["lost"]
        for k in [k for k in table.keys() if k.cgroup_id == cgroup_id]:
            try:
                del table[k]
            except KeyError:
                pass

    def close(self, background: bool = False) -> None:
        """Detaches everything. Closing a tracepoint's perf event waits for RCU
        grace periods: ~75 ms each here, 1.9 s for all of them. With
        background=True a detached grandchild holds the last references and
        does that waiting, so `sessrec record` returns as soon as the file is
        complete; call it only after every session was removed from the map,
        as the programs then record nothing."""
        fds = list(self.bpf.tracepoint_fds.values())
        if background and fds:
            _close_in_grandchild(fds)
            self.bpf.tracepoint_fds.clear()
        for ring in [*self._rings.values(), *self._pool]:
            ring.reader.close()
            if ring.owned:
                os.close(ring.fd)
        self._rings.clear()
        self._pool.clear()
        try:
            self.bpf.cleanup()
        except Exception:  # best effort at teardown
            pass


def _close_in_grandchild(fds: list[int]) -> None:
    """Closes fds here at once and in a detached grandchild after, so that the
    grandchild's are the last references and it pays for the detach. A pipe
    orders the two: the grandchild waits for EOF, which comes when this
    process has closed its copies (or died)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            if os.fork() == 0:
                os.setsid()
                os.close(w)
                # Let go of stdio: a pipeline must not wait for this process.
                null = os.open(os.devnull, os.O_RDWR)
                for std in (0, 1, 2):
                    os.dup2(null, std)
                os.read(r, 1)
                for fd in fds:
                    os.close(fd)
        finally:
            os._exit(0)
    os.close(r)
    os.waitpid(pid, 0)
    for fd in fds:
        os.close(fd)
    os.close(w)
