"""recorder.btf: struct member offsets from BTF.

Two kinds of test: against the running kernel's /sys/kernel/btf/vmlinux
(skipped when the kernel has no BTF), and against small BTF blobs built here,
which pin down the format corners (anonymous members, typedef chains,
bitfields, damaged data) and the cache.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from recorder import btf
from recorder.btf import MemberOffset, cached_member_offsets, member_offsets
from sessrec.errors import EnvironmentProblem

VMLINUX = "/sys/kernel/btf/vmlinux"

# ---------------------------------------------------------------------------
# The running kernel


needs_vmlinux_btf = pytest.mark.skipif(
    not os.access(VMLINUX, os.R_OK),
    reason=f"{VMLINUX} missing or unreadable (kernel built without CONFIG_DEBUG_INFO_BTF)",
)

KERNEL_WANTED = [
    ("task_struct", "tgid"),
    ("task_struct", "real_parent"),
    ("task_struct", "mm"),
    ("task_struct", "exit_code"),
    ("task_struct", "files"),
    ("mm_struct", "arg_start"),
    ("mm_struct", "arg_end"),
    ("mm_struct", "start_stack"),
    ("files_struct", "fdt"),
    ("fdtable", "fd"),
    ("fdtable", "max_fds"),
    ("file", "private_data"),
    ("socket", "type"),
    ("socket", "sk"),
    ("sock", "sk_protocol"),
]


def _struct_size(name: str) -> int:
    with open(VMLINUX, "rb") as f:
        parsed = btf._Btf(f.read(), VMLINUX, {name})
    return parsed._type(parsed.structs[name])[4]


@needs_vmlinux_btf
def test_kernel_members_found() -> None:
    got = member_offsets(KERNEL_WANTED)
    assert set(got) == set(KERNEL_WANTED)
    sizes = {}
    for (s, m), mo in got.items():
        assert (mo.struct, mo.member) == (s, m)
        if s not in sizes:
            sizes[s] = _struct_size(s)
        assert 0 <= mo.offset < sizes[s], (s, m)
        assert mo.offset + mo.size <= sizes[s], (s, m)
        assert mo.offset % min(mo.size, 8) == 0, f"{s}.{m} misaligned"


@needs_vmlinux_btf
def test_kernel_member_sizes_and_layout() -> None:
    got = member_offsets(KERNEL_WANTED)

    def size(s: str, m: str) -> int:
        return got[(s, m)].size

    assert size("task_struct", "tgid") == 4
    assert size("task_struct", "exit_code") == 4
    assert size("fdtable", "max_fds") == 4
    assert size("sock", "sk_protocol") == 2
    assert size("socket", "type") == 2
    for pointer in [
        ("task_struct", "real_parent"),
        ("task_struct", "mm"),
        ("task_struct", "files"),
        ("files_struct", "fdt"),
        ("fdtable", "fd"),
        ("file", "private_data"),
        ("socket", "sk"),
    ]:
        assert size(*pointer) == 8, pointer
    for field in ["arg_start", "arg_end", "start_stack"]:
        assert size("mm_struct", field) == 8
    # Declared one after the other in every kernel since 2.6.
    assert got[("mm_struct", "arg_end")].offset == got[("mm_struct", "arg_start")].offset + 8


@needs_vmlinux_btf
def test_kernel_dotted_and_array() -> None:
    got = member_offsets([("task_struct", "comm"), ("task_struct", "signal")])
    assert got[("task_struct", "comm")].size == 16  # TASK_COMM_LEN
    assert got[("task_struct", "signal")].size == 8


# ---------------------------------------------------------------------------
# Hand-built BTF


class Builder:
    """Writes a BTF blob: types are numbered from 1 in the order added."""

    INT, PTR, ARRAY, STRUCT, UNION, FWD, TYPEDEF, CONST, VOLATILE = 1, 2, 3, 4, 5, 7, 8, 10, 9

    def __init__(self, order: str = "<") -> None:
        self.order = order
        self.types: list[bytes] = []
        self.strs = bytearray(b"\0")

    def _str(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(
        self,
        kind: int,
        name: str,
        size_or_type: int,
        vlen: int = 0,
        kflag: bool = False,
        tail: bytes = b"",
    ) -> int:
        info = (kind << 24) | vlen | (int(kflag) << 31)
        rec = struct.pack(self.order + "III", self._str(name), info, size_or_type)
        self.types.append(rec + tail)
        return len(self.types)

    def int_(self, name: str, size: int, bits: int | None = None, bit_off: int = 0) -> int:
        enc = (bit_off << 16) | (size * 8 if bits is None else bits)
        return self.add(self.INT, name, size, tail=struct.pack(self.order + "I", enc))

    def ptr(self, to: int) -> int:
        return self.add(self.PTR, "", to)

    def array(self, elem: int, index: int, n: int) -> int:
        return self.add(self.ARRAY, "", 0, tail=struct.pack(self.order + "III", elem, index, n))

    def typedef(self, name: str, to: int) -> int:
        return self.add(self.TYPEDEF, name, to)

    def const(self, to: int) -> int:
        return self.add(self.CONST, "", to)

    def fwd(self, name: str) -> int:
        return self.add(self.FWD, name, 0)

    def struct(
        self,
        name: str,
        size: int,
        members: list[tuple[str, int, int]] | list[tuple[str, int, int, int]],
        union: bool = False,
        kflag: bool = False,
    ) -> int:
        """members: (name, type, bit offset[, bitfield size]); '' is anonymous."""
        tail = b""
        for m in members:
            mname, mtype, bit_off = m[0], m[1], m[2]
            offset = bit_off | (m[3] << 24 if len(m) > 3 else 0)
            tail += struct.pack(self.order + "III", self._str(mname), mtype, offset)
        kind = self.UNION if union else self.STRUCT
        return self.add(kind, name, size, vlen=len(members), kflag=kflag, tail=tail)

    def blob(self) -> bytes:
        types = b"".join(self.types)
        header = struct.pack(
            self.order + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strs)
        )
        return header + types + bytes(self.strs)


def write(tmp_path: Path, blob: bytes, name: str = "btf") -> str:
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path)


def sample(order: str = "<") -> Builder:
    """The BTF of:

    struct inner { u32 pad; u32 x; };         // size 8
    struct task {                             // size 64
        int pid;                              // 0
        union {                               // 8, anonymous
            struct { u64 start; u64 end; };   // anonymous
            void *whole;
        };
        const struct task *parent;            // 24
        struct inner in;                      // 32 (named: reach it as in.x)
        char comm[8];                         // 48
    };
    """
    b = Builder(order)
    int_t = b.int_("int", 4)  # 1
    u64_base = b.int_("long long unsigned int", 8)  # 2
    u64 = b.typedef("u64", b.typedef("__u64", u64_base))  # 4 -> 3 -> 2
    void_p = b.ptr(0)  # 5
    anon_s = b.struct("", 16, [("start", u64, 0), ("end", u64, 64)])  # 6
    anon_u = b.struct("", 16, [("", anon_s, 0), ("whole", void_p, 0)], union=True)  # 7
    b.fwd("task")  # 8: a forward declaration before the definition
    task_ptr = b.ptr(b.const(11))  # 10 -> 9 -> 11
    inner = b.struct("inner", 8, [("pad", int_t, 0), ("x", int_t, 32)])  # 11
    assert inner == 11
    char = b.int_("char", 1)
    comm = b.array(char, int_t, 8)
    b.struct(
        "task",
        64,
        [
            ("pid", int_t, 0),
            ("", anon_u, 64),
            ("parent", task_ptr, 192),
            ("in", inner, 256),
            ("comm", comm, 384),
        ],
    )
    return b


def test_anonymous_members_found_as_direct(tmp_path: Path) -> None:
    path = write(tmp_path, sample().blob())
    got = member_offsets([("task", "start"), ("task", "end"), ("task", "whole")], path)
    assert got[("task", "start")] == MemberOffset("task", "start", 8, 8)
    assert got[("task", "end")] == MemberOffset("task", "end", 16, 8)
    assert got[("task", "whole")] == MemberOffset("task", "whole", 8, 8)


def test_typedef_chain_pointer_array_and_dotted(tmp_path: Path) -> None:
    path = write(tmp_path, sample().blob())
    got = member_offsets(
        [("task", "pid"), ("task", "parent"), ("task", "in.x"), ("task", "comm")], path
    )
    assert got[("task", "pid")] == MemberOffset("task", "pid", 0, 4)
    assert got[("task", "parent")] == MemberOffset("task", "parent", 24, 8)
    assert got[("task", "in.x")] == MemberOffset("task", "in.x", 36, 4)
    assert got[("task", "comm")] == MemberOffset("task", "comm", 48, 8)


def test_big_endian_blob(tmp_path: Path) -> None:
    path = write(tmp_path, sample(">").blob())
    assert member_offsets([("task", "end")], path)[("task", "end")].offset == 16


def test_typedef_to_struct_is_followed_in_dotted_path(tmp_path: Path) -> None:
    b = Builder()
    int_t = b.int_("int", 4)
    inner = b.struct("inner", 8, [("a", int_t, 0), ("b", int_t, 32)])
    inner_t = b.const(b.typedef("inner_t", inner))
    b.struct("outer", 16, [("x", int_t, 0), ("i", inner_t, 64)])
    path = write(tmp_path, b.blob())
    got = member_offsets([("outer", "i.b")], path)
    assert got[("outer", "i.b")] == MemberOffset("outer", "i.b", 12, 4)


def test_first_complete_struct_wins(tmp_path: Path) -> None:
    b = Builder()
    int_t = b.int_("int", 4)
    b.fwd("dup")
    b.struct("dup", 0, [])
    b.struct("dup", 8, [("a", int_t, 32)])
    b.struct("dup", 8, [("a", int_t, 0)])
    path = write(tmp_path, b.blob())
    assert member_offsets([("dup", "a")], path)[("dup", "a")].offset == 4


def test_bitfield_with_kind_flag_refused(tmp_path: Path) -> None:
    b = Builder()
    int_t = b.int_("unsigned int", 4)
    b.struct("flags", 4, [("a", int_t, 0, 3), ("b", int_t, 3, 5), ("c", int_t, 8, 0)], kflag=True)
    path = write(tmp_path, b.blob())
    with pytest.raises(EnvironmentProblem, match=r"flags\.a is a bitfield"):
        member_offsets([("flags", "a")], path)
    # A kind_flag struct may hold ordinary members too.
    assert member_offsets([("flags", "c")], path)[("flags", "c")].offset == 1


def test_bitfield_old_encoding_refused(tmp_path: Path) -> None:
    b = Builder()
    bits3 = b.int_("unsigned int", 4, bits=3)
    int_t = b.int_("unsigned int", 4)
    b.struct("old", 8, [("a", bits3, 0), ("odd", int_t, 4)])
    path = write(tmp_path, b.blob())
    with pytest.raises(EnvironmentProblem, match=r"old\.a is a bitfield"):
        member_offsets([("old", "a")], path)
    with pytest.raises(EnvironmentProblem, match=r"old\.odd starts at bit 4"):
        member_offsets([("old", "odd")], path)


def test_missing_member_and_struct_named(tmp_path: Path) -> None:
    path = write(tmp_path, sample().blob())
    with pytest.raises(EnvironmentProblem, match=r"task\.nosuch: struct task has no member nosuch"):
        member_offsets([("task", "nosuch")], path)
    with pytest.raises(EnvironmentProblem, match=r"struct inner has no member y"):
        member_offsets([("task", "in.y")], path)
    with pytest.raises(EnvironmentProblem, match=r"task\.pid is not a struct or union"):
        member_offsets([("task", "pid.x")], path)
    with pytest.raises(EnvironmentProblem, match=r"struct nosuch not found"):
        member_offsets([("nosuch", "x")], path)


def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "vmlinux")
    with pytest.raises(EnvironmentProblem, match="CONFIG_DEBUG_INFO_BTF=y") as e:
        member_offsets([("task", "pid")], path)
    assert str(e.value) == f"no BTF at {path}: the kernel needs CONFIG_DEBUG_INFO_BTF=y"
    with pytest.raises(EnvironmentProblem, match="CONFIG_DEBUG_INFO_BTF=y"):
        cached_member_offsets([("task", "pid")], path, cache_dir=str(tmp_path / "c"))


def test_bad_magic(tmp_path: Path) -> None:
    blob = bytearray(sample().blob())
    blob[0:2] = b"\x7fE"
    path = write(tmp_path, bytes(blob))
    with pytest.raises(EnvironmentProblem, match=r"damaged BTF .*bad magic"):
        member_offsets([("task", "pid")], path)


@pytest.mark.parametrize("keep", [0, 10, 24, 100])
def test_truncated_file(tmp_path: Path, keep: int) -> None:
    path = write(tmp_path, sample().blob()[:keep])
    with pytest.raises(EnvironmentProblem, match="damaged BTF"):
        member_offsets([("task", "pid")], path)


def test_type_running_past_its_section(tmp_path: Path) -> None:
    blob = bytearray(sample().blob())
    type_len = struct.unpack_from("<I", blob, 12)[0]
    struct.pack_into("<I", blob, 12, type_len - 8)  # cut the last member short
    path = write(tmp_path, bytes(blob))
    with pytest.raises(EnvironmentProblem, match="runs past the type section"):
        member_offsets([("task", "pid")], path)


def test_unknown_kind(tmp_path: Path) -> None:
    b = sample()
    b.add(25, "", 0)
    path = write(tmp_path, b.blob())
    with pytest.raises(EnvironmentProblem, match="unknown kind 25"):
        member_offsets([("task", "pid")], path)


# ---------------------------------------------------------------------------
# The cache


WANTED = [("task", "end"), ("task", "pid")]


def test_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, sample().blob())
    cache = str(tmp_path / "cache")
    first = cached_member_offsets(WANTED, path, cache_dir=cache)
    assert first == member_offsets(WANTED, path)
    assert len(os.listdir(cache)) == 1

    def no_parse(*args: object) -> None:
        raise AssertionError("parsed despite a cache")

    monkeypatch.setattr(btf, "member_offsets", no_parse)
    assert cached_member_offsets(list(reversed(WANTED)), path, cache_dir=cache) == first


def test_cache_invalidated_by_new_btf(tmp_path: Path) -> None:
    path = write(tmp_path, sample().blob())
    cache = str(tmp_path / "cache")
    assert cached_member_offsets(WANTED, path, cache_dir=cache)[("task", "pid")].offset == 0
    b = Builder()
    b.struct("task", 16, [("pid", b.int_("int", 4), 64), ("end", b.int_("long", 8), 0)])
    write(tmp_path, b.blob())  # same path, new size and mtime
    assert cached_member_offsets(WANTED, path, cache_dir=cache)[("task", "pid")].offset == 8


def _only_cache_file(cache: str) -> Path:
    (name,) = os.listdir(cache)
    return Path(cache) / name


@pytest.mark.parametrize(
    "damage",
    [
        "{not json",
        "",
        "[]",
        '{"key": null}',
        "BAD-OFFSETS",
    ],
)
def test_corrupt_cache_falls_back(tmp_path: Path, damage: str) -> None:
    path = write(tmp_path, sample().blob())
    cache = str(tmp_path / "cache")
    good = cached_member_offsets(WANTED, path, cache_dir=cache)
    cache_file = _only_cache_file(cache)
    if damage == "BAD-OFFSETS":
        doc = json.loads(cache_file.read_text())
        doc["offsets"][0]["offset"] = "12"
        damage = json.dumps(doc)
    cache_file.write_text(damage)
    assert cached_member_offsets(WANTED, path, cache_dir=cache) == good
    # ... and the damaged file was replaced by a good one.
    assert json.loads(cache_file.read_text())["offsets"]


def test_writable_by_others_cache_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, sample().blob())
    cache = str(tmp_path / "cache")
    good = cached_member_offsets(WANTED, path, cache_dir=cache)
    cache_file = _only_cache_file(cache)
    doc = json.loads(cache_file.read_text())
    for item in doc["offsets"]:
        item["offset"] += 100
    cache_file.write_text(json.dumps(doc))
    cache_file.chmod(0o666)
    assert cached_member_offsets(WANTED, path, cache_dir=cache) == good


def test_unusable_cache_dir_falls_back(tmp_path: Path) -> None:
    path = write(tmp_path, sample().blob())
    not_a_dir = write(tmp_path, b"", name="file")
    got = cached_member_offsets(WANTED, path, cache_dir=os.path.join(not_a_dir, "sub"))
    assert got == member_offsets(WANTED, path)


def test_optional_members_are_left_out_and_remembered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, sample().blob())
    cache = str(tmp_path / "cache")
    wanted = [("task", "nosuch"), ("task", "pid"), ("nosuch", "x")]
    with pytest.raises(EnvironmentProblem):
        cached_member_offsets(wanted, path, cache_dir=cache)
    found = cached_member_offsets(wanted, path, cache_dir=cache, optional=True)
    assert found == {("task", "pid"): member_offsets([("task", "pid")], path)[("task", "pid")]}

    def no_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed despite a cache")

    monkeypatch.setattr(btf, "member_offsets", no_parse)
    assert cached_member_offsets(wanted, path, cache_dir=cache, optional=True) == found
    # A cache that lacks a member is no answer to a call that needs it.
    with pytest.raises(AssertionError, match="parsed despite a cache"):
        cached_member_offsets(wanted, path, cache_dir=cache)
