"""BPF ABI 2 without a kernel: argv parts joined to their exec (in order,
across records chunks), lost and orphaned parts counted and flagged, hostile
part records refused, and the kernel's word (replay/trust.py) on the
records captured on a real kernel (tests/golden/raw-abi2)."""

from __future__ import annotations

import struct

from srec_util import capture

from replay import trust
from sessrec import records
from sessrec.event import ARGV_TRUNCATED, TAMPERED, Cgroup, Connect, Exec, Open

ABI = records.ABI_2
HDR = records.HEADER


def header(t: int, tid: int = 100, flags: int = 0, size: int = 0) -> bytes:
    return struct.pack(HDR.fmt, t, flags, size, 1000, 7, tid, tid, 1, 0, b"x")


def exec_record(argv_head: bytes, total: int, parts: int, tid: int = 100) -> bytes:
    # ret, argc, filename_len, argv_len, old_pid, syscall, pad, k (4), total, parts
    body = struct.pack(ABI.types[records.EXEC].body.fmt, 0, 3, 2, len(argv_head), tid, 0, 0,
                       0, 0, 0, 0, total, parts)
    return header(records.EXEC, tid) + body + b"/x" + argv_head


def part(index: int, data: bytes, tid: int = 100) -> bytes:
    body = struct.pack(ABI.types[records.ARGV].body.fmt, records.ARGV_MAX + index * 4, len(data),
                       index, 0)
    return header(records.ARGV, tid) + body + data


def test_parts_are_joined_to_the_exec_after_them() -> None:
    dec = records.Decoder(0, ABI)
    assert dec.decode(part(0, b"cd\0e")) is records.CONSUMED
    assert dec.decode(part(1, b"f\0")) is records.CONSUMED
    ev = dec.decode(exec_record(b"a\0b", 9, 2))
    assert type(ev) is Exec
    assert ev.argv == [b"a", b"bcd", b"ef"] and not ev.flags & ARGV_TRUNCATED
    assert (ev.argv_total, ev.argv_parts) == (9, 2)
    assert dec.argv_missing == dec.argv_orphans == 0


def test_a_lost_part_flags_the_argv_truncated() -> None:
    dec = records.Decoder(0, ABI)
    dec.decode(part(0, b"cd\0"))
    ev = dec.decode(exec_record(b"a\0b", 9, 2))
    assert type(ev) is Exec
    assert ev.argv == [b"a", b"bcd"] and ev.flags & ARGV_TRUNCATED
    assert dec.argv_missing == 1


def test_parts_of_another_thread_or_out_of_order_are_orphans() -> None:
    dec = records.Decoder(0, ABI)
    dec.decode(part(0, b"zz\0", tid=555))  # its exec never comes
    dec.decode(part(1, b"yy\0"))  # no part 0 before it
    ev = dec.decode(exec_record(b"a\0", 2, 0))
    assert type(ev) is Exec and ev.argv == [b"a"]
    assert dec.argv_orphans == 1
    dec.decode(part(0, b"ww\0", tid=555))  # a new part 0: the old parts were orphans
    assert dec.argv_orphans == 2


def test_a_part_longer_than_its_record_is_malformed() -> None:
    dec = records.Decoder(0, ABI)
    raw = part(0, b"abc")
    assert dec.decode(raw[:-1]) is None and dec.malformed == 1
    too_big = bytearray(raw)
    struct.pack_into("<I", too_big, records.HEADER_SIZE + 4, records.ARGV_PART + 1)
    assert dec.decode(bytes(too_big)) is None and dec.malformed == 2


def test_held_parts_are_bounded() -> None:
    dec = records.Decoder(0, ABI)
    big = b"a" * records.ARGV_PART
    n = records.ARGV_HELD_MAX // records.ARGV_PART
    for i in range(n + 3):
        dec.decode(part(i, big))
    assert dec.argv_orphans == 3  # refused once the bound is reached, counted


def test_abi_1_has_no_parts_and_reads_as_before() -> None:
    raw, expected = capture("raw-abi1")
    dec = records.Decoder(expected["mono_origin_ns"], records.ABI_1)
    evs = [dec.decode(r) for r in raw]
    assert all(e is not None and e is not records.CONSUMED for e in evs)
    opens = [e for e in evs if type(e) is Open]
    assert opens and all(e.kpath == b"" and trust.path_source(e) == "request" for e in opens)


def test_the_captured_records_say_what_the_kernel_did() -> None:
    raw, expected = capture("raw-abi2")
    dec = records.Decoder(expected["mono_origin_ns"], ABI)
    evs = [e for e in (dec.decode(r) for r in raw) if e is not None and e is not records.CONSUMED]
    # A symlink opened: the kernel's path is the file it names.
    (link,) = [e for e in evs if type(e) is Open
               and e.requested_path == b"/tmp/sessrec-capture-link"]
    assert (link.kpath, trust.path_source(link)) == (b"/etc/hostname", "kernel")
    # argv of 40 KiB: one part, joined.
    (big,) = [e for e in evs if type(e) is Exec and e.argv_parts]
    assert len(big.argv[1]) == 40000 and big.argv[2] == b"end"
    assert big.argv_total == sum(len(a) + 1 for a in big.argv)
    # A refused connect: the kernel had no destination; the caller's stands.
    (conn,) = [e for e in evs if type(e) is Connect]
    assert trust.kernel_dst(conn) is None and trust.dst_source(conn) == "caller"
    # The shell left the session's cgroup: recorded, flagged, and still traced.
    (move,) = [e for e in evs if type(e) is Cgroup]
    assert move.flags & TAMPERED and trust.tampered(move) and move.dst_path == b"/"
    assert any(e.ts > move.ts and type(e) is Open for e in evs)
    assert sum(trust.tampered(e) for e in evs) == 1
