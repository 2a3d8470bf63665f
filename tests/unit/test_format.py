"""sessrec.format: constants, framing, schemas and decoding helpers."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from sessrec import format as fmt
from sessrec import linux
from sessrec.errors import FormatError
from sessrec.event import FIELDS, REQUIRED_TYPES, TYPE_NAMES, EventFlag, EventType, event_problem

HEADER_H = Path(__file__).resolve().parents[2] / "bpf" / "sessrec.h"


def _c_enum(name: str) -> dict[str, int]:
    """The members of a C enum in bpf/sessrec.h (values as written)."""
    text = HEADER_H.read_text()
    body = re.search(r"enum " + name + r" \{(.*?)\};", text, re.S)
    assert body, f"enum {name} not found in {HEADER_H}"
    out = {}
    for m in re.finditer(r"(\w+)\s*=\s*([^,/]+?)\s*,", body.group(1)):
        value = re.fullmatch(r"(\d+)(?:\s*<<\s*(\d+))?", m.group(2))
        assert value, f"cannot parse {m.group(0)!r}"
        out[m.group(1)] = int(value.group(1)) << int(value.group(2) or 0)
    return out


def test_event_types_match_the_boundary_header() -> None:
    c = _c_enum("sr_event_type")
    for t in EventType:
        assert c[f"SR_EVENT_{t.name}"] == t.value
    assert c["SR_EVENT_TYPE_MAX"] == max(EventType) + 1


def test_event_flags_match_the_boundary_header() -> None:
    c = _c_enum("sr_event_flags")
    assert c["SR_FLAG_PATH_TRUNCATED"] == EventFlag.PATH_TRUNCATED
    assert c["SR_FLAG_ARGV_TRUNCATED"] == EventFlag.ARGV_TRUNCATED
    assert c["SR_FLAG_READ_FAILED"] == EventFlag.READ_FAILED


def test_syscall_enums_match_the_boundary_header() -> None:
    c = _c_enum("sr_open_syscall")
    assert [c[f"SR_SYS_{n.upper()}"] for n in linux.OPEN_SYSCALLS] == [0, 1, 2, 3]
    c = _c_enum("sr_exec_syscall")
    assert [c[f"SR_SYS_{n}"] for n in ("EXECVE", "EXECVEAT")] == [0, 1]  # exec's syscall field


def test_frame_sizes() -> None:
    assert fmt.PREAMBLE.size == 20
    assert fmt.DESCRIPTOR.size == 20
    assert fmt.FOOTER.size == 16
    assert fmt.PREAMBLE_PAYLOAD_LEN == fmt.DESCRIPTOR_PAYLOAD_LEN == 12
    assert fmt.FOOTER_PAYLOAD_LEN == 8
    for magic in (fmt.PREAMBLE_MAGIC, fmt.DESCRIPTOR_MAGIC, fmt.FOOTER_MAGIC):
        assert 0x184D2A50 <= magic <= 0x184D2A5F  # zstd's skippable frames


def test_preamble_bytes() -> None:
    data = fmt.pack_preamble(1, 0)
    assert data == bytes.fromhex("502a4d180c000000") + b"SESSREC\0" + b"\x01\x00\x00\x00"
    assert fmt.unpack_preamble(data) == (1, 0)
    assert fmt.unpack_preamble(fmt.pack_preamble(3, 9)) == (3, 9)


def test_descriptor_and_footer_bytes() -> None:
    assert fmt.pack_descriptor(2, 100, 300) == struct.pack("<IIIII", 0x184D2A51, 12, 2, 100, 300)
    assert fmt.pack_footer(1234) == struct.pack("<IIQ", 0x184D2A52, 8, 1234)


@pytest.mark.parametrize("n", range(20))
def test_short_preamble(n: int) -> None:
    with pytest.raises(FormatError, match="ends inside the preamble") as e:
        fmt.unpack_preamble(fmt.pack_preamble()[:n], "f.srec")
    assert e.value.offset == n
    assert e.value.path == "f.srec"


@pytest.mark.parametrize(
    "data",
    [
        b"\x28\xb5\x2f\xfd" + bytes(30),
        b"SESSREC\0" + bytes(12),
        fmt.pack_preamble()[:8] + bytes(12),
    ],
)
def test_not_a_session_file(data: bytes) -> None:
    with pytest.raises(FormatError, match="not a sessrec session file") as e:
        fmt.unpack_preamble(data)
    assert e.value.offset == 0


def test_event_layouts() -> None:
    for t in EventType:
        assert FIELDS[t][:8] == ("type", "ts", "pid", "tid", "ppid", "uid", "comm", "flags")
    # BPF ABI 2 appended the kernel's word (with defaults: older files lack it).
    assert FIELDS[EventType.OPEN][8:] == (
        "ret", "syscall", "dirfd", "requested_path", "open_flags", "mode",
        "kpath", "kpath_src", "kroot_len")
    assert FIELDS[EventType.EXEC][8:] == (
        "ret", "requested_path", "argv", "argc", "old_pid", "syscall",
        "kpath", "kpath_src", "kroot_len", "argv_total", "argv_parts")
    assert FIELDS[EventType.CONNECT][12:] == ("sockaddr", "kaddr_src", "kaddr")
    for t in (EventType.FORK, EventType.EXIT, EventType.CGROUP):
        assert len(REQUIRED_TYPES[t]) == len(FIELDS[t])
    assert TYPE_NAMES == {1: "fork", 2: "exec", 3: "exit", 4: "open", 5: "connect", 6: "chdir",
                          8: "cgroup"}


def test_event_problem() -> None:
    good = [4, 1, 2, 2, 1, 0, b"c", 0, 3, 1, -100, b"/x", 0, 0]
    assert event_problem(good) is None
    assert event_problem([*good, "extra", 1]) is None
    assert event_problem([99, "anything"]) is None  # unknown types are not checked
    assert "has 13 fields, needs 14" in str(event_problem(good[:-1]))
    assert "'comm' is str, should be bytes" in str(event_problem([*good[:6], "c", *good[7:]]))
    assert "'ts' is bool" in str(event_problem([4, True, *good[2:]]))
    assert "integer type" in str(event_problem([]))
    exec_ev = [2, 1, 2, 2, 1, 0, b"c", 0, 0, b"/bin/x", [b"x", "y"], 2, 2, 0]
    assert "argv item is str" in str(event_problem(exec_ev))


def _header() -> dict[str, object]:
    from srec_util import HEADER

    return {"k": "header", "format": [1, 0], **HEADER}


def test_validate_header_accepts_and_keeps_extra_keys() -> None:
    h = {**_header(), "future_key": {"x": 1}}
    assert fmt.validate_header(h) is h


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": "trailer"}, "k='trailer'"),
        ({"uid": "1000"}, r"header\['uid'\] is str, should be int"),
        ({"cwd": "/home"}, r"header\['cwd'\] is str, should be bytes"),
        ({"format": [1]}, "should have 2 items"),
        ({"command": ["a", b"b"]}, r"header\['command'\]\[1\]"),
        ({"clock": {"wall_ns": 1}}, "lacks key 'mono_ns'"),
        ({"login_uid": 1.5}, "float"),
    ],
)
def test_validate_header_rejects(change: dict[str, object], message: str) -> None:
    with pytest.raises(FormatError, match=message) as e:
        fmt.validate_header({**_header(), **change}, "f.srec", 20)
    assert e.value.offset == 20


def test_validate_header_missing_key_and_not_a_map() -> None:
    h = _header()
    del h["session_id"]
    with pytest.raises(FormatError, match="lacks key 'session_id'"):
        fmt.validate_header(h)
    with pytest.raises(FormatError, match="should be a map"):
        fmt.validate_header([1, 2])


def test_validate_trailer_and_stats() -> None:
    from srec_util import TRAILER

    fmt.validate_trailer({"k": "trailer", **TRAILER})
    with pytest.raises(FormatError, match="non-str key"):
        fmt.validate_trailer({"k": "trailer", **TRAILER, "counts": {1: 2}})
    with pytest.raises(FormatError, match="exit_status"):
        fmt.validate_trailer({"k": "trailer", **TRAILER, "exit_status": "0"})
    gap = {"ts": 1, "end": 2, "reason": "restart", "detail": "d"}
    fmt.validate_trailer({"k": "trailer", **TRAILER, "gaps": [gap, {**gap, "dropped": None}]})
    with pytest.raises(FormatError, match=r"\['gaps'\]\[0\]\['dropped'\] should be a map"):
        fmt.validate_trailer({"k": "trailer", **TRAILER, "gaps": [{**gap, "dropped": "x"}]})
    fmt.validate_stats({"k": "stats", "ts": 1, "lost": {"open": 1}})
    with pytest.raises(FormatError, match="lost"):
        fmt.validate_stats({"k": "stats", "ts": 1, "lost": {"open": "1"}})


def _shape(spec: object) -> object:
    """A schema check (format._spec's) as plain data, to compare."""
    if isinstance(spec, fmt._Opt):
        return ("opt", _shape(spec.spec))
    if isinstance(spec, fmt._ListOf):
        return ("list", _shape(spec.spec), spec.length)
    if isinstance(spec, fmt._MapOf):
        return ("map", _shape(spec.spec))
    if isinstance(spec, fmt._OneOf):
        return ("one", spec.types)
    if isinstance(spec, fmt._Maybe):
        return ("maybe", _shape(spec.spec))
    if isinstance(spec, fmt._Short):
        return ("max", spec.spec, spec.n)
    if isinstance(spec, dict):
        return {k: _shape(v) for k, v in spec.items()}
    return spec


def test_the_checks_made_from_the_typed_maps() -> None:
    """The checks format.py derives from its TypedDicts, key by key and in
    order, are those written out by hand before (format 2.1), and a gap's
    drop counts in the trailer are checked as a gap map's are."""
    opt, lst, mp = (lambda s: ("opt", s)), (lambda s, n=None: ("list", s, n)), \
        (lambda s: ("map", s))
    assert [(k, _shape(v)) for k, v in fmt.HEADER_SCHEMA.items()] == list({
        "k": str, "format": lst(int, 2), "session_id": ("max", str, 256),
        "hostname": ("max", str, 255), "kernel": ("max", str, 256),
        "user": ("max", str, 256), "uid": int, "login_uid": opt(int), "audit_session_id": opt(int),
        "command": lst(str), "cwd": ("max", bytes, 4096), "leader_pid": int,
        "started_at": ("max", str, 256),
        "clock": {"wall_ns": int, "mono_ns": int}, "cgroup": ("max", str, 4096), "cgroup_id": int,
        "recorder": {"version": str, "pid": int}, "limits": {"argv_max": int, "path_max": int},
        "abi_version": int}.items())
    assert [(k, _shape(v)) for k, v in fmt.HEADER_OPTIONAL.items()] == list({
        "audit": {"record_type": int, "status": opt(mp(int)), "sender_session_id": opt(int),
                  "start_record": bool, "reason": opt(str)},
        "login": mp(("one", (str, int))), "kind": str,
        "seal": {"node_id": str, "epoch": int, "scheme": str}, "race_check": bool,
        "kernel_features": {"release": str, "ringbuf": bool, "task_pt_regs": bool,
                            "openat2": bool, "exit_group_dead": bool, "headers": str,
                            "headers_match": bool, "notices": lst(str)}}.items())
    assert [(k, _shape(v)) for k, v in fmt.TRAILER_SCHEMA.items()] == list({
        "k": str, "ended_at": str, "counts": mp(int), "lost": mp(int),
        "truncated": {"argv": int, "path": int}, "unknown_types": int,
        "exit_status": opt(int), "end_reason": str}.items())
    assert [(k, _shape(v)) for k, v in fmt.TRAILER_OPTIONAL.items()] == list({
        "audit": {"end_record": bool, "reason": opt(str)}, "tampered": int,
        "left_running": lst(int), "dropped": mp(int),
        "gaps": lst({"ts": int, "end": int, "reason": str, "detail": str,
                     "dropped": ("maybe", opt(mp(int)))}),
        "tty": str}.items())
    assert _shape(dict(fmt.STATS_SCHEMA)) == {"k": str, "ts": int, "lost": mp(int)}
    assert _shape(dict(fmt.GAP_SCHEMA)) == {"k": str, "ts": int, "end": int, "reason": str,
                                            "detail": str, "dropped": opt(mp(int))}


def test_optional_id() -> None:
    assert fmt.optional_id(4294967295) is None
    assert fmt.optional_id(-1) is None
    assert fmt.optional_id(0) == 0
    assert fmt.optional_id(1000) == 1000


def test_decode_exit() -> None:
    assert linux.decode_exit(0) == (0, None, False)
    assert linux.decode_exit(3 << 8) == (3, None, False)
    assert linux.decode_exit(9) == (None, 9, False)
    assert linux.decode_exit(0x80 | 11) == (None, 11, True)
    assert linux.shell_status(3 << 8) == 3
    assert linux.shell_status(255 << 8) == 255
    assert linux.shell_status(9) == 137
    assert linux.shell_status(0x80 | 6) == 134


def _sa(family: int, rest: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "H", family) + rest


def test_decode_sockaddr_inet() -> None:
    sa = _sa(2, struct.pack(">H", 8080) + bytes([10, 1, 2, 3]) + bytes(8))
    assert linux.decode_sockaddr(sa) == (2, "inet", "10.1.2.3", 8080)
    assert linux.decode_sockaddr(sa[:7]) == (2, "inet", None, None)


def test_decode_sockaddr_inet6() -> None:
    addr = bytes.fromhex("fe800000000000000000000000000001")
    sa = _sa(10, struct.pack(">H", 22) + bytes(4) + addr + struct.pack("<I", 3))
    assert linux.decode_sockaddr(sa) == (10, "inet6", "fe80::1%3", 22)
    mapped = bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])
    sa = _sa(10, struct.pack(">H", 80) + bytes(4) + mapped + bytes(4))
    assert linux.decode_sockaddr(sa).address == "::ffff:192.0.2.1"
    assert linux.decode_sockaddr(sa[:24]).address == "::ffff:192.0.2.1"  # without scope id
    assert linux.decode_sockaddr(sa[:20]) == (10, "inet6", None, None)


def test_decode_sockaddr_unix() -> None:
    assert linux.decode_sockaddr(_sa(1, b"/run/x.sock\0garbage")) == (
        1, "unix", "/run/x.sock", None)
    assert linux.decode_sockaddr(_sa(1, b"/run/no-nul")).address == "/run/no-nul"
    assert linux.decode_sockaddr(_sa(1, b"\0abstract")).address == "@abstract"
    assert linux.decode_sockaddr(_sa(1, b"\0bad\xff")).address == "@bad\\xff"
    assert linux.decode_sockaddr(_sa(1, b"")).address == ""


def test_decode_sockaddr_other_and_short() -> None:
    assert linux.decode_sockaddr(b"") == (0, "af_0", None, None)
    assert linux.decode_sockaddr(b"\x02") == (0, "af_0", None, None)
    assert linux.decode_sockaddr(_sa(16, b"\0" * 10)) == (16, "af_16", None, None)


def test_decode_sockaddr_big_endian_family() -> None:
    sa = _sa(2, struct.pack(">H", 53) + bytes([192, 0, 2, 53]) + bytes(8), ">")
    assert linux.decode_sockaddr(sa) == (2, "inet", "192.0.2.53", 53)


def test_protocol_name() -> None:
    assert linux.protocol_name(2, 1, 6) == "tcp"
    assert linux.protocol_name(10, 2, 17) == "udp"
    assert linux.protocol_name(2, 1, 262) == "mptcp"
    assert linux.protocol_name(10, 5, 132) == "sctp"
    assert linux.protocol_name(2, 1, 99) == "proto_99"
    assert linux.protocol_name(2, 2, 0) == "dgram"
    assert linux.protocol_name(1, 1, 0) == "stream"
    assert linux.protocol_name(1, 5, 0) == "seqpacket"
    assert linux.protocol_name(1, 0, 0) is None
    assert linux.protocol_name(16, 3, 0) is None


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        (0, ("O_RDONLY",)),
        (0o1101, ("O_WRONLY", "O_CREAT", "O_TRUNC")),
        (0o2000002, ("O_RDWR", "O_CLOEXEC")),
        (0o4010001, ("O_WRONLY", "O_SYNC")),
        (0o10001, ("O_WRONLY", "O_DSYNC")),
        (0o20200002, ("O_RDWR", "O_TMPFILE")),
        (0o10200000, ("O_RDONLY", "O_DIRECTORY", "O_PATH")),
        (3 | 1 << 40, ("O_ACCMODE", hex(1 << 40))),
    ],
)
def test_open_flag_names(flags: int, names: tuple[str, ...]) -> None:
    assert linux.open_flag_names(flags) == names


def test_times() -> None:
    ns = 1795259402_123456789
    assert fmt.rfc3339_us(ns) == "2026-11-21T11:10:02.123456Z"
    tf = fmt.TimeFormatter()
    assert tf(ns) == "2026-11-21T11:10:02.123456789Z"
    assert tf(ns + 1) == "2026-11-21T11:10:02.123456790Z"
    assert tf(ns + 10**9) == "2026-11-21T11:10:03.123456789Z"
    assert tf(0) == "1970-01-01T00:00:00.000000000Z"


def test_text() -> None:
    assert fmt.text(b"caf\xc3\xa9 \xff") == "café \\xff"


KERNEL_FEATURES = {
    "release": "6.1.0-57-amd64", "ringbuf": True, "task_pt_regs": True,
    "get_current_task_btf": True, "openat2": False, "exit_group_dead": False,
    "headers": "/usr/src/linux-headers-6.1.0-57-amd64", "headers_match": True,
    "notices": ["no openat2 events: this kernel has no syscalls:sys_exit_openat2 tracepoint"],
}


def test_kernel_features_are_validated_when_present() -> None:
    fmt.validate_header({**_header(), "kernel_features": KERNEL_FEATURES})
    bad = {**KERNEL_FEATURES, "notices": ["ok", 7]}
    with pytest.raises(FormatError, match=r"header\['kernel_features'\]\['notices'\]\[1\]"):
        fmt.validate_header({**_header(), "kernel_features": bad})
    with pytest.raises(FormatError, match="lacks key 'headers_match'"):
        fmt.validate_header({**_header(), "kernel_features": {
            k: v for k, v in KERNEL_FEATURES.items() if k != "headers_match"}})


def test_info_shows_the_kernel_features_and_each_notice() -> None:
    from replay.info import describe_kernel_features

    line = describe_kernel_features(KERNEL_FEATURES)
    assert line == ("6.1.0-57-amd64: ringbuf, get_current_task_btf, task_pt_regs; "
                    "without openat2, exit_group_dead; "
                    "headers /usr/src/linux-headers-6.1.0-57-amd64, matching")
    other = describe_kernel_features({**KERNEL_FEATURES, "headers_match": False})
    assert other.endswith("not matching (offsets from BTF)")
