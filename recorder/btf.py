"""Byte offsets of kernel struct members, read from the running kernel's BTF.

The BPF programs read a few fields of task_struct, mm_struct, file, socket...
The kernel headers installed on a machine need not match the running kernel,
so their offsets cannot be trusted. /sys/kernel/btf/vmlinux describes the
running kernel exactly; we read it here, in pure Python, and the loader passes
the offsets to the BPF C code as -D macros.

The format is the kernel's include/uapi/linux/btf.h (Documentation/bpf/btf.rst):
a header, a section of type records numbered from 1, and a string section.
Each type record is {name_off, info, size_or_type} followed by data whose
length depends on the kind and on vlen. To stay fast on ~130k types we walk
the records once, remembering only where each starts, and decode nothing but
the few structs we are asked about.

Pointers have no size in BTF. We use 8: sessrec supports 64-bit kernels only
(x86_64, arm64).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from sessrec.errors import EnvironmentProblem

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
DEFAULT_CACHE_DIR = "/run/sessrec"
POINTER_SIZE = 8

_MAGIC = 0xEB9F
_HEADER_LEN = 24  # the btf_header fields we know; hdr_len may be larger

# Kinds (btf.h BTF_KIND_*).
_INT = 1
_PTR = 2
_ARRAY = 3
_STRUCT = 4
_UNION = 5
_ENUM = 6
_FWD = 7
_TYPEDEF = 8
_VOLATILE = 9
_CONST = 10
_RESTRICT = 11
_FLOAT = 16
_TYPE_TAG = 18
_ENUM64 = 19
_MAX_KIND = 19

# Bytes that follow the 12-byte common record, per kind: a fixed part and a
# part per vlen entry. Kind 0 (UNKN) is invalid; FUNC uses vlen for linkage.
#                 0  1  2   3  4   5   6  7  8  9 10 11 12 13 14  15 16 17 18  19
_FIXED = (-1, 4, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 4, 0, 0)
_PER_VLEN = (0, 0, 0, 0, 12, 12, 8, 0, 0, 0, 0, 0, 0, 8, 0, 12, 0, 0, 0, 12)

# Kinds that only qualify another type: size is the size of what they name.
_QUALIFIERS = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})
_SIZED = frozenset({_INT, _STRUCT, _UNION, _ENUM, _ENUM64, _FLOAT})
_MAX_CHAIN = 64  # longest typedef/qualifier chain we follow before calling it a loop


@dataclass(frozen=True)
class MemberOffset:
    """Where a member lives in its struct: byte offset and size in bytes."""

    struct: str
    member: str
    offset: int
    size: int


def member_offsets(
    wanted: Sequence[tuple[str, str]], btf_path: str = VMLINUX_BTF, *, optional: bool = False
) -> dict[tuple[str, str], MemberOffset]:
    """Byte offset and size of each (struct, member) in `wanted`.

    `member` may be a dotted path through nested named members ("a.b").
    Members of anonymous struct/union members are found as if they were
    direct members. Raises EnvironmentProblem if the BTF is missing or
    damaged, a struct or member does not exist, or a member is a bitfield;
    with optional=True, a member this BTF does not have (or cannot give)
    is left out of the result instead.
    """
    wanted = _check_wanted(wanted)
    data = _read(btf_path)
    btf = _Btf(data, btf_path, {s for s, _ in wanted})
    if not optional:
        return {(s, m): btf.member(s, m) for s, m in wanted}
    found = {}
    for s, m in wanted:
        try:
            found[(s, m)] = btf.member(s, m)
        except EnvironmentProblem:
            continue
    return found


def cached_member_offsets(
    wanted: Sequence[tuple[str, str]],
    btf_path: str = VMLINUX_BTF,
    cache_dir: str = DEFAULT_CACHE_DIR,
    *,
    optional: bool = False,
) -> dict[tuple[str, str], MemberOffset]:
    """member_offsets(), remembered in `cache_dir` as JSON; with
    optional=True, the members left out are remembered too, so that a
    kernel without them is not parsed again for them.

    The cache is keyed by the BTF file's path, size and mtime and by the
    kernel's release and version strings, so a new kernel means a fresh
    parse. Any problem with the cache (unwritable directory, damaged or
    foreign file) is ignored and the BTF is parsed again. The cache is only
    believed if it and its directory belong to us or root and nobody else
    can write them: these offsets decide what the BPF programs read.
    """
    wanted = _check_wanted(wanted)
    try:
        st = os.stat(btf_path)
    except OSError:
        return member_offsets(wanted, btf_path)  # raises the proper error
    uname = os.uname()
    key = {
        "btf_path": btf_path,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "release": uname.release,
        "version": uname.version,
        "wanted": [list(w) for w in sorted(set(wanted))],
    }
    if optional:
        key["optional"] = True
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    path = os.path.join(cache_dir, f"btf-offsets-{digest}.json")

    cached = _load_cache(path, key, wanted, optional)
    if cached is not None:
        return cached
    result = member_offsets(wanted, btf_path, optional=optional)
    _store_cache(cache_dir, path, key, result)
    return result


def _check_wanted(wanted: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    out = []
    for s, m in wanted:
        if not s or not m or "" in m.split("."):
            raise ValueError(f"bad struct/member pair: {s!r}, {m!r}")
        out.append((s, m))
    return out


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise EnvironmentProblem(
            f"no BTF at {path}: the kernel needs CONFIG_DEBUG_INFO_BTF=y"
        ) from None
    except OSError as e:
        raise EnvironmentProblem(f"cannot read BTF at {path}: {e.strerror}") from None


class _Btf:
    """The parts of one BTF blob needed to look up struct members."""

    def __init__(self, data: bytes, path: str, struct_names: set[str]) -> None:
        self.path = path
        if len(data) < _HEADER_LEN:
            raise self._bad(f"{len(data)} bytes, shorter than a BTF header")
        if data[:2] == b"\x9f\xeb":
            order = "<"
        elif data[:2] == b"\xeb\x9f":
            order = ">"
        else:
            raise self._bad(f"bad magic {data[:2].hex()}, expected BTF magic 0x{_MAGIC:x}")
        _, version, _, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            order + "HBBIIIII", data, 0
        )
        if version != 1:
            raise self._bad(f"BTF version {version}, only version 1 is known")
        if hdr_len < _HEADER_LEN:
            raise self._bad(f"header length {hdr_len} < {_HEADER_LEN}")
        t_start, s_start = hdr_len + type_off, hdr_len + str_off
        if t_start + type_len > len(data) or s_start + str_len > len(data):
            raise self._bad(
                f"truncated: {len(data)} bytes, sections need "
                f"{max(t_start + type_len, s_start + str_len)}"
            )
        self.types = data[t_start : t_start + type_len]
        self.strs = data[s_start : s_start + str_len]
        self.rec = struct.Struct(order + "III")
        self.u32 = struct.Struct(order + "I")

        # Every offset into the string section at which a wanted name starts:
        # a name_off equals the name exactly when it points at "name\0".
        name_at: dict[int, str] = {}
        for name in struct_names:
            needle = name.encode() + b"\0"
            i = self.strs.find(needle)
            while i >= 0:
                name_at[i] = name
                i = self.strs.find(needle, i + 1)

        # One pass: the start of every type record, and the first complete
        # struct (or union) for each wanted name.
        starts: list[int] = [0]  # type id 0 is void
        found: dict[str, int] = {}
        unpack = self.rec.unpack_from
        append = starts.append
        fixed, per_vlen = _FIXED, _PER_VLEN
        types = self.types
        pos, end = 0, len(types)
        try:
            while pos < end:
                append(pos)
                name_off, info, size = unpack(types, pos)
                kind = (info >> 24) & 0x1F
                if kind > _MAX_KIND or fixed[kind] < 0:
                    raise self._bad(f"type {len(starts) - 1} has unknown kind {kind}")
                if (
                    name_off in name_at
                    and (kind == _STRUCT or kind == _UNION)
                    and size > 0
                    and name_at[name_off] not in found
                ):
                    found[name_at[name_off]] = len(starts) - 1
                pos += 12 + fixed[kind] + per_vlen[kind] * (info & 0xFFFF)
        except struct.error:
            raise self._bad(f"type {len(starts) - 1} runs past the type section") from None
        if pos != end:
            raise self._bad(f"type {len(starts) - 1} runs past the type section")
        self.starts = starts
        self.structs = found

    def _bad(self, why: str) -> EnvironmentProblem:
        return EnvironmentProblem(f"damaged BTF at {self.path}: {why}")

    def _name(self, off: int) -> str:
        end = self.strs.find(b"\0", off)
        if off >= len(self.strs) or end < 0:
            raise self._bad(f"name offset {off} outside the string section")
        return self.strs[off:end].decode("utf-8", "replace")

    def _type(self, tid: int) -> tuple[int, int, int, int, int]:
        """(name_off, kind, vlen, kflag, size_or_type) of type `tid`."""
        if not 0 < tid < len(self.starts):
            raise self._bad(f"reference to type {tid}, which does not exist")
        name_off, info, size = self.rec.unpack_from(self.types, self.starts[tid])
        return name_off, (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size

    def _strip(self, tid: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the real type."""
        for _ in range(_MAX_CHAIN):
            if tid == 0:
                return 0
            _, kind, _, _, ref = self._type(tid)
            if kind not in _QUALIFIERS:
                return tid
            tid = ref
        raise self._bad(f"typedef/qualifier chain longer than {_MAX_CHAIN} at type {tid}")

    def _size(self, tid: int, what: str) -> int:
        tid = self._strip(tid)
        if tid == 0:
            raise EnvironmentProblem(f"{what} has type void in BTF at {self.path}")
        _, kind, _, _, size = self._type(tid)
        if kind in _SIZED:
            return size
        if kind == _PTR:
            return POINTER_SIZE
        if kind == _ARRAY:
            elem, _, nelems = self.rec.unpack_from(self.types, self.starts[tid] + 12)
            return int(nelems) * self._size(elem, what)
        raise EnvironmentProblem(f"{what} has no size (BTF kind {kind}) in BTF at {self.path}")

    def _members(self, tid: int) -> list[tuple[str, int, int, int]]:
        """(name, type, bit offset, bitfield size) of each member; '' if anonymous."""
        _, _, vlen, kflag, _ = self._type(tid)
        base = self.starts[tid] + 12
        out = []
        for i in range(vlen):
            name_off, mtype, moff = self.rec.unpack_from(self.types, base + 12 * i)
            name = self._name(name_off) if name_off else ""
            if kflag:
                out.append((name, mtype, moff & 0xFFFFFF, moff >> 24))
            else:
                out.append((name, mtype, moff, 0))
        return out

    def _find(self, tid: int, name: str) -> tuple[int, int, int] | None:
        """(bit offset, type, bitfield size) of member `name` of struct/union
        `tid`, looking inside anonymous struct/union members too."""
        for mname, mtype, bit_off, bit_size in self._members(tid):
            if mname == name:
                return bit_off, mtype, bit_size
            if not mname:
                inner = self._strip(mtype)
                if inner and self._type(inner)[1] in (_STRUCT, _UNION):
                    hit = self._find(inner, name)
                    if hit is not None:
                        return bit_off + hit[0], hit[1], hit[2]
        return None

    def _is_int_bitfield(self, tid: int) -> bool:
        """The older encoding (no kind_flag): the member's INT type carries
        its bit width and bit offset."""
        tid = self._strip(tid)
        if tid == 0:
            return False
        _, kind, _, _, size = self._type(tid)
        if kind != _INT:
            return False
        enc: int = self.u32.unpack_from(self.types, self.starts[tid] + 12)[0]
        return (enc & 0xFF) != size * 8 or (enc >> 16) & 0xFF != 0

    def member(self, struct_name: str, path: str) -> MemberOffset:
        what = f"{struct_name}.{path}"
        tid = self.structs.get(struct_name)
        if tid is None:
            raise EnvironmentProblem(f"struct {struct_name} not found in BTF at {self.path}")
        bits = 0
        mtype = tid
        parts = path.split(".")
        for depth, part in enumerate(parts):
            container = self._strip(mtype)
            kind = self._type(container)[1] if container else 0
            if kind not in (_STRUCT, _UNION):
                prefix = ".".join(parts[:depth])
                raise EnvironmentProblem(
                    f"{what}: {struct_name}.{prefix} is not a struct or union "
                    f"(BTF kind {kind}) in BTF at {self.path}"
                )
            hit = self._find(container, part)
            if hit is None:
                cname = self._name(self._type(container)[0]) or "(anonymous)"
                raise EnvironmentProblem(
                    f"{what}: struct {cname} has no member {part} in BTF at {self.path}"
                )
            bit_off, mtype, bit_size = hit
            if bit_size or self._is_int_bitfield(mtype):
                raise EnvironmentProblem(
                    f"{what} is a bitfield; it has no byte offset (BTF at {self.path})"
                )
            bits += bit_off
        if bits % 8:
            raise EnvironmentProblem(
                f"{what} starts at bit {bits}, not on a byte boundary (BTF at {self.path})"
            )
        return MemberOffset(struct_name, path, bits // 8, self._size(mtype, what))


def _load_cache(
    path: str, key: dict[str, object], wanted: list[tuple[str, str]], optional: bool
) -> dict[tuple[str, str], MemberOffset] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not (_trusted(os.fstat(f.fileno())) and _trusted(os.stat(os.path.dirname(path)))):
                return None
            doc = json.loads(f.read(1 << 20))
        if not isinstance(doc, dict) or doc.get("key") != key:
            return None
        result: dict[tuple[str, str], MemberOffset] = {}
        for item in doc["offsets"]:
            mo = MemberOffset(
                str(item["struct"]), str(item["member"]), item["offset"], item["size"]
            )
            if not (type(mo.offset) is int and type(mo.size) is int):
                return None
            if mo.offset < 0 or mo.size <= 0:
                return None
            result[(mo.struct, mo.member)] = mo
        if not set(result) <= set(wanted) or (not optional and set(result) != set(wanted)):
            return None
        return result
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _trusted(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _store_cache(
    cache_dir: str,
    path: str,
    key: dict[str, object],
    result: dict[tuple[str, str], MemberOffset],
) -> None:
    doc = {
        "key": key,
        "offsets": [
            {"struct": m.struct, "member": m.member, "offset": m.offset, "size": m.size}
            for m in result.values()
        ],
    }
    import tempfile  # only on a cache miss: it costs 3 ms to import

    tmp = None
    try:
        os.makedirs(cache_dir, mode=0o755, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".btf-offsets-", dir=cache_dir)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
