"""`sessrec verify` (replay/verify.py) on sealed files, tampered in every way
the issue lists, on unsealed files, with bad and wrong keys, on hostile input."""

from __future__ import annotations

import copy
import hashlib
import io
import random
import re
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
import zstandard
from srec_util import HEADER, TRAILER, KeepOpen, ev, read_all

from recorder.writer import SessionWriter
from replay.verify import sealed_end, verify_file
from sessrec import format as fmt
from sessrec import seal
from sessrec.cli import ExitStatus, main
from sessrec.errors import SessrecError

CHUNKS = 6  # data chunks in the test file, each sealed


@dataclass
class Node:
    state: Path
    key: seal.VerifyKey

    @property
    def key_arg(self) -> str:
        return str(self.key)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    state = tmp_path / "seal.key"
    return Node(state, seal.create_seal_key(str(state)))


def write(path: Path, sealer: seal.Sealer | None, *, close: bool = True,
          chunks: int = CHUNKS) -> None:
    w = SessionWriter(path, HEADER, sealer=sealer)
    for i in range(chunks):
        w.add(ev(4, pid=1000 + i, ts=i + 1))
        w.add(ev(2, pid=1000 + i, ts=i + 1))
        w.flush()
    if close:
        w.close(TRAILER)
    else:
        w.flush()
        w._stream.close()  # as if killed: no trailer, no final seal


@pytest.fixture
def sealed(tmp_path: Path, node: Node) -> Path:
    path = tmp_path / "s.srec"
    write(path, seal.start_file(str(node.state)))
    return path


def verify(path: Path, key: str | None = None) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["verify", str(path)] + (["--key", key] if key else [])
    status = main(argv, out, err)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return status, out.getvalue() + err.getvalue()


# --- the file's frames, to tamper with -------------------------------------------


@dataclass
class Frame:
    start: int
    data: bytes
    kind: str  # PREAMBLE, HEADER, EVENTS, RECORDS, TRAILER, SEAL, FOOTER

    def raw(self) -> bytes:
        return zstandard.ZstdDecompressor().decompress(self.data[fmt.DESCRIPTOR.size:])


def frames(data: bytes) -> list[Frame]:
    out = [Frame(0, data[: fmt.PREAMBLE.size], "PREAMBLE")]
    pos = fmt.PREAMBLE.size
    while pos < len(data):
        magic, _ = fmt.FRAME_HEAD.unpack_from(data, pos)
        if magic == fmt.FOOTER_MAGIC:
            out.append(Frame(pos, data[pos:], "FOOTER"))
            break
        _, _, kind, clen, _ = fmt.DESCRIPTOR.unpack_from(data, pos)
        end = pos + fmt.DESCRIPTOR.size + clen
        f = Frame(pos, data[pos:end], fmt.ChunkKind(kind).name)
        if f.kind == "EVENTS":
            objs = list(msgpack.Unpacker(io.BytesIO(f.raw()), raw=False))
            if len(objs) == 1 and isinstance(objs[0], dict) and objs[0].get("k") == "seal":
                f.kind = "SEAL"
        out.append(f)
        pos = end
    return out


def join(fs: list[Frame]) -> bytes:
    return b"".join(f.data for f in fs)


def rechunk(kind: int, raw: bytes) -> bytes:
    """A chunk with valid checksums, as anyone can make without the key."""
    cctx = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True)
    frame = cctx.compress(raw)
    return fmt.pack_descriptor(kind, len(frame), len(raw)) + frame


def data_chunks(fs: list[Frame]) -> list[int]:
    return [i for i, f in enumerate(fs) if f.kind in ("EVENTS", "RECORDS")]


def edit_events(f: Frame) -> bytes:
    """The chunk with one byte of its content changed, checksum recomputed:
    /etc/passwd becomes /etc/passwe."""
    raw = f.raw()
    assert b"/etc/passwd" in raw
    return rechunk(fmt.ChunkKind.EVENTS, raw.replace(b"/etc/passwd", b"/etc/passwe", 1))


# --- intact, unsealed, no key ----------------------------------------------------


def test_an_intact_sealed_file(sealed: Path, node: Node) -> None:
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.OK, out
    fs = frames(sealed.read_bytes())
    nseals = sum(f.kind == "SEAL" for f in fs)
    assert nseals == CHUNKS + 2  # the header's, one per chunk, the final seal
    assert f"sealed by node {node.key.node}, session file #0" in out
    last = re.search(rf"intact up to the last seal \(#{nseals - 1}, sealed (\S+)\) and "
                     rf"complete: {nseals} seals cover all {CHUNKS + 2} chunks", out)
    assert last, out


def test_every_chunk_is_followed_by_its_seal(sealed: Path) -> None:
    kinds = [f.kind for f in frames(sealed.read_bytes())]
    assert kinds == (["PREAMBLE", "HEADER", "SEAL"] + ["EVENTS", "SEAL"] * CHUNKS
                     + ["SEAL", "TRAILER", "FOOTER"])


def test_readers_skip_the_seals(sealed: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.srec"
    write(plain, None)
    events, session = read_all(sealed)
    assert events == read_all(plain)[0]
    assert session.unknown_records == 0 and session.damage is None
    assert session.header["seal"]["epoch"] == 0
    assert session.version == (2, 1)


def test_an_unsealed_file_verifies_its_checksums(tmp_path: Path, node: Node) -> None:
    path = tmp_path / "plain.srec"
    write(path, None)
    for key in (None, node.key_arg):
        status, out = verify(path, key)
        assert status == ExitStatus.UNSEALED, out
        assert "unsealed: recorded without a seal key" in out
        assert f"checksums of {CHUNKS + 2} chunks intact; complete" in out


def test_an_unsealed_file_with_a_bad_checksum(tmp_path: Path) -> None:
    path = tmp_path / "plain.srec"
    write(path, None)
    fs = frames(path.read_bytes())
    i = data_chunks(fs)[2]
    data = bytearray(fs[i].data)
    data[-6] ^= 1  # in the zstd frame's last block or checksum
    fs[i].data = bytes(data)
    path.write_bytes(join(fs))
    status, out = verify(path)
    assert status == ExitStatus.TAMPERED
    assert f"EVENTS chunk at byte {fs[i].start} is damaged" in out


def test_a_sealed_file_without_the_key(sealed: Path) -> None:
    status, out = verify(sealed)
    assert status == ExitStatus.UNVERIFIED, out
    assert f"not verified (no --key): {CHUNKS + 2} seals present" in out


# --- tampering -------------------------------------------------------------------


def test_a_chunk_altered_with_its_checksum_recomputed(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    i = data_chunks(fs)[1]
    fs[i].data = edit_events(fs[i])
    sealed.write_bytes(join(fs))
    assert read_all(sealed)[1].damage is None  # a valid file to every reader
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert f"the EVENTS chunk at byte {fs[i].start} was altered: it does not match seal #2" in out
    assert "intact up to seal #1 " in out


def reseal_without_key(fs: list[Frame]) -> None:
    """Recompute every unkeyed field of every seal: its digest and its link to
    the seal chunk before it. Only the MACs stay as they were."""
    segment, prev = b"", seal.ZERO
    for f in fs:
        if f.kind != "SEAL":
            segment += f.data
            continue
        s = msgpack.unpackb(f.raw(), raw=False)
        s["digest"], s["prev"] = hashlib.sha256(segment).digest(), prev
        f.data = rechunk(fmt.ChunkKind.EVENTS, msgpack.packb(s, use_bin_type=True))
        segment, prev = b"", hashlib.sha256(f.data).digest()
        if s["final"]:
            break


def test_an_altered_chunk_with_its_seals_recomputed_too_needs_the_key(
        sealed: Path, node: Node) -> None:
    """Everything that can be recomputed without the key is: the checksum, the
    seals' digests and their chain. Without the key nothing shows; with it
    the MAC of the altered chunk's seal fails (and of every seal re-encoded
    after it)."""
    fs = frames(sealed.read_bytes())
    i = data_chunks(fs)[1]
    fs[i].data = edit_events(fs[i])
    reseal_without_key(fs)
    sealed.write_bytes(join(fs))
    status, out = verify(sealed)
    assert status == ExitStatus.UNVERIFIED, out  # not detectable without the key
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED, out
    start = frames(sealed.read_bytes())[i].start
    problems = [line for line in out.splitlines() if "forged or altered" in line]
    assert f"seal #2 at byte {start + len(fs[i].data)} is forged or altered (its MAC does " \
        f"not verify); the EVENTS chunk at byte {start} is not covered by a good seal" \
        in problems[0]
    assert "intact up to seal #1 " in out


def test_a_chunk_removed(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    i = data_chunks(fs)[2]
    removed = len(fs[i].data) + len(fs[i + 1].data)
    del fs[i : i + 2]  # a chunk and its seal
    sealed.write_bytes(join(fs))
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert (f"seal #3 missing before byte {fs[i + 1].start - removed}: chunks removed "
            f"({removed} bytes)") in out
    status, out = verify(sealed)  # the gap shows without the key too
    assert status == ExitStatus.TAMPERED and "seal #3 missing" in out


def test_chunks_removed_without_their_seals(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    i = data_chunks(fs)[2]
    del fs[i]
    sealed.write_bytes(join(fs))
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert "does not match seal #3" in out


def test_chunks_reordered(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    a, b = data_chunks(fs)[1:3]
    fs[a : b + 2] = fs[b : b + 2] + fs[a : a + 2]  # swap two chunks with their seals
    sealed.write_bytes(join(fs))
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert "seal #2 missing" in out
    assert "seal #2 at byte" in out and "comes after seal #3: chunks reordered" in out


def test_the_footer_cut_or_the_trailer_cut(sealed: Path, node: Node) -> None:
    data = sealed.read_bytes()
    sealed.write_bytes(data[:-16])
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TRUNCATED, out
    assert "the trailer is sealed and intact, its footer is missing" in out
    sealed.write_bytes(data[:-40])
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TRUNCATED, out
    assert "the trailer that the final seal covers is cut or missing" in out


@pytest.mark.parametrize("cut", ["at-a-seal", "inside-a-chunk", "killed"])
def test_a_truncated_tail(sealed: Path, node: Node, cut: str, tmp_path: Path) -> None:
    fs = frames(sealed.read_bytes())
    i = data_chunks(fs)[3]
    last_seal = fs[i - 1]
    if cut == "killed":
        sealed = tmp_path / "killed.srec"
        write(sealed, seal.start_file(str(node.state)), close=False)
        fs = frames(sealed.read_bytes())
        last_seal = fs[-1]
        data = sealed.read_bytes()
    elif cut == "at-a-seal":
        data = join(fs[:i])
    else:
        data = join(fs[:i]) + fs[i].data[:30]
    sealed.write_bytes(data)
    n = msgpack.unpackb(last_seal.raw(), raw=False)["n"]
    when = fmt.rfc3339_us(msgpack.unpackb(last_seal.raw(), raw=False)["time_ns"])
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TRUNCATED, out
    assert (f"truncated: intact up to the last good seal (#{n} at byte {last_seal.start}, "
            f"sealed {when})") in out
    if cut == "inside-a-chunk":
        assert f"the 30 bytes after it (from byte {fs[i].start}) are not sealed" in out
    else:
        assert "ends there without its final seal" in out


def test_the_trailer_altered(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    t = next(i for i, f in enumerate(fs) if f.kind == "TRAILER")
    trailer = msgpack.unpackb(fs[t].raw(), raw=False)
    trailer["exit_status"] = 0 if trailer["exit_status"] else 1
    fs[t].data = rechunk(fmt.ChunkKind.TRAILER, msgpack.packb(trailer, use_bin_type=True))
    data = join(fs[:-1])
    sealed.write_bytes(data + fmt.pack_footer(fs[t].start))
    assert read_all(sealed)[1].damage is None
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert "the trailer after the final seal" in out and "was altered" in out


def test_the_final_seal_removed(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    t = next(i for i, f in enumerate(fs) if f.kind == "TRAILER")
    gone = len(fs[t - 1].data)
    del fs[t - 1]
    sealed.write_bytes(join(fs[:-1]) + fmt.pack_footer(fs[t - 1].start - 0 * gone))
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert "is not sealed: the final seal before it was removed" in out


def test_the_header_altered(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    header = msgpack.unpackb(fs[1].raw(), raw=False)
    header["user"] = "someone-else"
    fs[1].data = rechunk(fmt.ChunkKind.HEADER, msgpack.packb(header, use_bin_type=True))
    sealed.write_bytes(join(fs))
    status, out = verify(sealed, node.key_arg)
    assert status == ExitStatus.TAMPERED
    assert "the header chunk was altered: it does not match seal #0" in out


def test_seals_stripped_from_a_sealed_file(sealed: Path, node: Node) -> None:
    """Making a sealed file look unsealed needs a new header without its seal key."""
    fs = [f for f in frames(sealed.read_bytes()) if f.kind != "SEAL"]
    header = msgpack.unpackb(fs[1].raw(), raw=False)
    del header["seal"]
    fs[1].data = rechunk(fmt.ChunkKind.HEADER, msgpack.packb(header, use_bin_type=True))
    sealed.write_bytes(join(fs[:-1]) + fmt.pack_footer(fs[-2].start - 0))
    status, out = verify(sealed, node.key_arg)
    # It reads as an unsealed file: the node's other files' epochs show the gap,
    # and an auditor who knows the node seals everything rejects it.
    assert status in (ExitStatus.UNSEALED, ExitStatus.TAMPERED)
    assert "sealed by node" not in out


# --- the attacker who becomes root at time T ---------------------------------------


def test_root_at_t_cannot_reseal_what_was_sealed_before_t(
        tmp_path: Path, node: Node) -> None:
    """Root at T reads the recorder's memory (its current key) and the seal key
    on disk. An earlier chunk altered and sealed again with that key shows:
    its seal number is later than the seals it replaces."""
    path = tmp_path / "s.srec"
    sealer = seal.start_file(str(node.state))
    w = SessionWriter(path, HEADER, sealer=sealer)
    for i in range(CHUNKS):
        w.add(ev(4, pid=1000 + i, ts=i + 1))
        w.flush()
    stolen = copy.deepcopy(sealer)  # time T: what root reads from the process
    w.close(TRAILER)
    fs = frames(path.read_bytes())
    i = data_chunks(fs)[1]  # sealed long before T
    head = join(fs[:i])
    chunk = edit_events(fs[i])
    stolen._prev = hashlib.sha256(fs[i - 1].data).digest()  # chained to seal #1
    forged_seal = stolen.seal(chunk, len(head) + len(chunk))
    assert forged_seal["n"] == CHUNKS + 1
    seal_chunk = rechunk(fmt.ChunkKind.EVENTS, msgpack.packb(forged_seal, use_bin_type=True))
    path.write_bytes(head + chunk + seal_chunk)
    status, out = verify(path, node.key_arg)
    assert status == ExitStatus.TAMPERED, out
    assert f"seals #2 to #{CHUNKS} missing" in out
    # Claiming the altered chunk's own seal number needs that number's key:
    forged_seal["n"] = 2
    seal_chunk = rechunk(fmt.ChunkKind.EVENTS, msgpack.packb(forged_seal, use_bin_type=True))
    path.write_bytes(head + chunk + seal_chunk)
    status, out = verify(path, node.key_arg)
    assert status == ExitStatus.TAMPERED and "seal #2 at byte" in out and "forged" in out

    # The seal key on disk is the next file's: a whole file forged with it, as
    # if it were this one (epoch 0), fails at every seal.
    forged = tmp_path / "forged.srec"
    thief = seal.start_file(str(node.state))
    assert thief.epoch == 1
    thief.epoch = 0
    write(forged, thief)
    status, out = verify(forged, node.key_arg)
    assert status == ExitStatus.TAMPERED and "seal #0 at byte" in out and "forged" in out


# --- keys ------------------------------------------------------------------------


def test_another_nodes_key(sealed: Path) -> None:
    status, out = verify(sealed, str(seal.VerifyKey.generate()))
    assert status == ExitStatus.WRONG_KEY, out
    assert "not verified: the key is node" in out


def test_a_key_of_the_right_node_with_another_seed(sealed: Path, node: Node) -> None:
    fake = seal.VerifyKey(node.key.node_id, bytes(32))
    status, out = verify(sealed, str(fake))
    assert status == ExitStatus.TAMPERED
    assert "seal #0 at byte" in out and "forged or altered" in out


@pytest.mark.parametrize("key", ["sessrec-verify-1:00", "/nonexistent/key", "-"])
def test_a_bad_key(sealed: Path, key: str) -> None:
    status, out = verify(sealed, key)
    assert status == 1
    assert out.startswith("sessrec: error: ") and out.count("\n") == 1


# --- several files, hostile input -------------------------------------------------


def test_missing_session_files_of_a_node(tmp_path: Path, node: Node) -> None:
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.srec"
        write(p, seal.start_file(str(node.state)), chunks=1)
        paths.append(p)
    paths[2].unlink()
    out, err = io.StringIO(), io.StringIO()
    status = main(["verify", "--key", node.key_arg, *map(str, [paths[0], paths[1], paths[3]])],
                  out, err)
    assert status == ExitStatus.OK
    assert f"node {node.key.node}: session files #0 to #3 given; missing #2" in out.getvalue()


def test_the_worst_verdict_is_the_exit_status(tmp_path: Path, sealed: Path, node: Node) -> None:
    plain = tmp_path / "plain.srec"
    write(plain, None)
    out, err = io.StringIO(), io.StringIO()
    assert main(["verify", "--key", node.key_arg, str(sealed), str(plain)],
                out, err) == ExitStatus.UNSEALED


@pytest.mark.parametrize("content", [b"", b"hello", b"\x50\x2a\x4d\x18" + bytes(30)])
def test_not_a_session_file(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "x.srec"
    p.write_bytes(content)
    status, out = verify(p)
    assert status == 1 and out.count("\n") == 1 and "error" in out


def test_hostile_seals(sealed: Path, node: Node) -> None:
    fs = frames(sealed.read_bytes())
    base = msgpack.unpackb(fs[4].raw(), raw=False)
    for change in ({"n": "1"}, {"n": -1}, {"n": 1 << 40}, {"mac": b"x"}, {"final": 1},
                   {"final": True}, {"prev": None}, {"time_ns": -5}, {"offset": 1.5}):
        s = {**base, **change}
        fs2 = list(fs)
        fs2[4] = Frame(fs[4].start, rechunk(fmt.ChunkKind.EVENTS,
                                            msgpack.packb(s, use_bin_type=True)), "SEAL")
        sealed.write_bytes(join(fs2))
        for key in (node.key_arg, None):
            status, out = verify(sealed, key)
            assert status == ExitStatus.TAMPERED, (change, out)


def test_random_damage_never_raises(sealed: Path, node: Node) -> None:
    data = sealed.read_bytes()
    rng = random.Random(12)
    for _ in range(300):
        d = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            d[rng.randrange(len(d))] = rng.randrange(256)
        if rng.random() < 0.3:
            d = d[: rng.randrange(len(d))]
        sealed.write_bytes(bytes(d))
        report = None
        try:
            report = verify_file(sealed, node.key)
        except fmt.FormatError:
            continue  # the preamble itself: "not a session file"
        assert report.verdict.name in ("TAMPERED", "TRUNCATED", "INTACT"), report.lines()
        if bytes(d) != data and report.verdict.name == "INTACT":
            pytest.fail(f"a change went unnoticed: {report.lines()}")


# --- a file continued by another process (a daemon restarted) ----------------------


def test_a_file_continued_with_a_new_chain(tmp_path: Path, node: Node) -> None:
    """A daemon killed mid-write leaves a chunk without its seal; the next
    daemon continues the file with a chain of its own (a new session file
    number), whose first seal covers that chunk too. verify checks both
    chains and says where the first one stopped."""
    path = tmp_path / "s.srec"
    write(path, seal.start_file(str(node.state)), close=False)
    fs = frames(path.read_bytes())
    old = join(fs[:-1])  # the last chunk's seal never made it to the disk
    path.write_bytes(old)
    last_good = msgpack.unpackb(fs[-3].raw(), raw=False)
    end = sealed_end(path)
    assert end == fs[-2].start
    resumed = seal.start_file(str(node.state))
    w = SessionWriter(path, HEADER, stream=KeepOpen())
    w._stream.seek(0)
    w._stream.truncate()  # as the daemon's writer does with resume_at: no new header
    w.bytes_written = len(old)
    w.seal_from_here(resumed, old[end:])
    w.add_stats({"ts": 99, "lost": {}})
    w.add(ev(4, pid=2000, ts=100))
    w.close(TRAILER)
    path.write_bytes(old + w._stream.getvalue())
    events, session = read_all(path)
    assert session.damage is None and len(events) == 2 * CHUNKS + 1

    status, out = verify(path, node.key_arg)
    assert status == ExitStatus.TRUNCATED, out
    assert f"resumed: a new chain, session file #1, seals from byte {end} on" in out
    assert (f"the part before ends at seal #{last_good['n']} (sealed "
            f"{fmt.rfc3339_us(last_good['time_ns'])}) without its final seal") in out
    assert "truncated before its resume: intact up to the last seal" in out
    assert "continued 1 time after the recorder stopped" in out
    assert verify(path)[0] == ExitStatus.UNVERIFIED

    # The continued part is sealed like any other: a change in it shows.
    fs = frames(path.read_bytes())
    i = max(data_chunks(fs))
    fs[i].data = edit_events(fs[i])
    path.write_bytes(join(fs))
    status, out = verify(path, node.key_arg)
    assert status == ExitStatus.TAMPERED and "was altered" in out


class Flaky(KeepOpen):
    """Fails one write() after writing part of it (a full disk)."""

    fail = False

    def write(self, b: bytes) -> int:  # type: ignore[override]
        if self.fail:
            self.fail = False
            super().write(bytes(b)[:10])
            raise OSError(28, "No space left on device")
        return super().write(b)


def test_a_failed_write_cut_back_is_sealed_again(tmp_path: Path, node: Node) -> None:
    """The daemon cuts a failed write back to the last whole chunk and goes
    on: the seal that did not reach the disk is made again, with its number
    and key, for what is written in its place."""
    stream = Flaky()
    w = SessionWriter(tmp_path / "s.srec", HEADER, stream=stream,
                      sealer=seal.start_file(str(node.state)))
    w.add(ev(4, ts=1))
    w.flush()
    start = w.bytes_written
    stream.fail = True
    w.add(ev(4, ts=2))
    with pytest.raises(SessrecError, match="No space left"):
        w.flush()
    stream.truncate(start)  # as recorder/daemon's cut-back does
    stream.seek(start)
    w.bytes_written, w._failed = start, None
    w.add(ev(4, ts=3))
    w.close(TRAILER)
    path = tmp_path / "s.srec"
    path.write_bytes(stream.getvalue())
    status, out = verify(path, node.key_arg)
    assert status == ExitStatus.OK, out
    assert [e[1] for e in read_all(path)[0]] == [1, 3]
