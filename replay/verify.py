"""`sessrec verify`: check a session file's seals (sessrec.seal) and checksums.

This walks the file's framing itself, chunk by chunk, rather than through the
readers: it must hash the exact bytes between seals, and it must go on past a
damaged chunk to find what else was changed. It shares only the framing
constants of sessrec.format and the limits on untrusted sizes.

What it finds, for a sealed file checked with the node's verification key:
a chunk altered (it does not match its seal), a seal forged (its MAC does not
verify), seals missing (chunks removed), seals out of order (chunks
reordered), a tail that is not sealed or is cut (truncation, with the time of
the last good seal), and bad checksums. Without the key only accidental
damage shows: an editor who recomputes the checksums and digests is caught by
the MACs alone. docs/SECURITY.md says what this protects and from when.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import msgpack
import zstandard

from sessrec import format as fmt
from sessrec import seal
from sessrec.errors import FormatError, SessrecError

MAX_FINDINGS = 50  # then stop: a hostile file must not make the report unbounded
MAX_SEAL_GAP = 1 << 22  # seals a verifier hashes forward over a gap (a few seconds)
_CHECKPOINT = 1024  # keep every 1024th file-chain key, for seals out of order

_HEAD = fmt.FRAME_HEAD.size
_PAYLOAD = fmt.DESCRIPTOR_PAYLOAD_LEN
_DESC_PAYLOAD = fmt.DESCRIPTOR.size - _HEAD
_FOOT_PAYLOAD = struct.Struct("<Q")
_SEAL_SCHEMA: dict[str, type] = {
    "n": int, "time_ns": int, "offset": int, "prev": bytes, "digest": bytes,
    "final": bool, "mac": bytes,
}


class Verdict(enum.IntEnum):
    """From best to worst; the CLI maps each to its exit status."""

    INTACT = 0      # sealed, every seal verified, complete
    TRUNCATED = 1   # sealed, intact up to the last seal, the end missing
    UNSEALED = 2    # no seals: only the checksums were checked
    UNVERIFIED = 3  # sealed, but checked without the key
    WRONG_KEY = 4   # sealed by another node than the key's
    TAMPERED = 5    # something altered, removed, reordered, forged or damaged


@dataclass
class SealRead:
    """A seal as found in the file, at byte `at`."""

    at: int
    n: int
    time_ns: int
    offset: int
    final: bool

    @property
    def when(self) -> str:
        return fmt.rfc3339_us(self.time_ns)


@dataclass
class Report:
    path: str
    node: str | None = None  # the sealing node, from the header
    epoch: int | None = None
    keyed: bool = False  # MACs were checked
    key_node: str | None = None
    chunks: int = 0
    seals: int = 0
    findings: list[str] = field(default_factory=list)
    first_good: SealRead | None = None
    last_good: SealRead | None = None  # the last seal verified before the first finding
    complete: bool = False  # the final seal, the trailer it covers and the footer
    tail: str | None = None  # why the file is not complete
    stopped: bool = False
    resumes: list[str] = field(default_factory=list)  # where a new chain continues the file
    epochs: list[int] = field(default_factory=list)  # the node's session file numbers used
    sealed_end: int = 0  # the end of the last seal chunk

    @property
    def sealed(self) -> bool:
        return self.node is not None

    @property
    def verdict(self) -> Verdict:
        if self.findings:
            return Verdict.TAMPERED
        if self.sealed and self.key_node is not None and self.key_node != self.node:
            return Verdict.WRONG_KEY
        if not self.sealed:
            return Verdict.UNSEALED
        if not self.keyed:
            return Verdict.UNVERIFIED
        return Verdict.INTACT if self.complete and not self.resumes else Verdict.TRUNCATED

    def lines(self) -> list[str]:
        p = self.path
        out = []
        if self.sealed:
            out.append(f"{p}: sealed by node {self.node}, session file #{self.epoch} "
                       f"of that node")
        else:
            out.append(f"{p}: unsealed: recorded without a seal key, so only its "
                       "checksums can be checked")
        out += [f"{p}: {f}" for f in self.resumes]
        out += [f"{p}: {f}" for f in self.findings]
        if self.stopped:
            out.append(f"{p}: too many problems; stopped looking")
        out.append(f"{p}: {self._summary()}")
        return out

    def _upto(self) -> str:
        g = self.last_good
        if g is None:
            return "no seal verifies before the first problem"
        return f"intact up to seal #{g.n} (byte {g.at}, sealed {g.when})"

    def _end(self) -> str:
        return "complete" if self.complete else f"incomplete: {self.tail}"

    def _summary(self) -> str:
        v = self.verdict
        if v == Verdict.TAMPERED:
            n = len(self.findings)
            return f"TAMPERED: {n} problem{'s' if n != 1 else ''}; {self._upto()}"
        if v == Verdict.UNSEALED:
            return f"checksums of {self.chunks} chunks intact; {self._end()}"
        if v == Verdict.UNVERIFIED:
            return (f"not verified (no --key): {self.seals} seals present, checksums of "
                    f"{self.chunks} chunks intact; {self._end()}")
        if v == Verdict.WRONG_KEY:
            return (f"not verified: the key is node {self.key_node}'s, not this file's "
                    f"node; checksums of {self.chunks} chunks intact")
        g = self.last_good
        assert g is not None  # a keyed, finding-free file with seals
        if self.resumes and self.complete:
            n = len(self.resumes)
            return (f"truncated before {'each' if n > 1 else 'its'} resume: intact up to the "
                    f"last seal (#{g.n}, sealed {g.when}) and complete, but continued "
                    f"{n} time{'s' if n > 1 else ''} after the recorder stopped without "
                    "its final seal: the end of each part before a resume may be missing")
        if v == Verdict.INTACT:
            first = self.first_good.when if self.first_good else g.when
            return (f"intact up to the last seal (#{g.n}, sealed {g.when}) and complete: "
                    f"{self.seals} seals cover all {self.chunks} chunks, the first sealed "
                    f"{first}")
        return (f"truncated: intact up to the last good seal (#{g.n} at byte {g.at}, "
                f"sealed {g.when}); {self.tail}")


class _Stop(Exception):
    """Too many findings, or framing that cannot be followed."""


class _Chain:
    """The file chain's keys K(n) for a verifier, forward from K(0), with
    checkpoints for seals met out of order."""

    def __init__(self, k0: bytes):
        self._checkpoints = {0: k0}
        self._n = 0
        self._key = k0

    def key(self, n: int) -> bytes | None:
        """K(n), or None if n is implausibly far ahead."""
        if n >= self._n:
            if n - self._n > MAX_SEAL_GAP:
                return None
            while self._n < n:
                self._key = seal.next_seal_key(self._key)
                self._n += 1
                if self._n % _CHECKPOINT == 0:
                    self._checkpoints[self._n] = self._key
            return self._key
        base = n - n % _CHECKPOINT
        key = self._checkpoints[base]
        for _ in range(n - base):
            key = seal.next_seal_key(key)
        return key


def _decompress(data: bytes, raw_len: int) -> bytes | str:
    """The content, or why it cannot be had (a bad checksum among others)."""
    try:
        declared = zstandard.frame_content_size(data)
        if declared != raw_len:
            return f"its zstd frame declares {declared} bytes, its descriptor {raw_len}"
        raw: bytes = zstandard.ZstdDecompressor().decompress(
            data, max_output_size=raw_len, allow_extra_data=False)
    except (zstandard.ZstdError, ValueError) as e:
        return f"corrupt zstd frame or bad checksum ({e})"
    if len(raw) != raw_len:
        return f"its zstd frame holds {len(raw)} bytes, its descriptor says {raw_len}"
    return raw


def _one_map(raw: bytes) -> object:
    """The single msgpack object of a small chunk, or None."""
    unpacker = msgpack.Unpacker(None, raw=False, strict_map_key=True,
                                max_buffer_size=max(len(raw), 1), **fmt.UNPACK_LIMITS)
    unpacker.feed(raw)
    try:
        objs = [next(unpacker)]
        for _ in unpacker:
            return None
    except (StopIteration, ValueError, TypeError, msgpack.UnpackException):
        return None
    return objs[0]


def _seal_map(obj: dict[object, object]) -> seal.SealMap | str:
    """obj as a seal map, or what is wrong with it (its "epoch" is
    _Walker._chain_start's to check)."""
    for key, want in _SEAL_SCHEMA.items():
        if type(obj.get(key)) is not want:
            return f"its field {key!r} is missing or not {want.__name__}"
    s = cast(seal.SealMap, obj)  # its required fields' types are checked
    for key, value in (("prev", s["prev"]), ("digest", s["digest"]), ("mac", s["mac"])):
        if len(value) != seal.DIGEST_LEN:
            return f"its field {key!r} is not {seal.DIGEST_LEN} bytes"
    tail = obj.get("tail")
    if s["final"] and (type(tail) is not bytes or len(tail) != seal.DIGEST_LEN):
        return "a final seal without a 32-byte 'tail'"
    if not 0 <= s["n"] < 1 << 64 or not 0 <= s["offset"] < 1 << 64 \
            or not 0 <= s["time_ns"] < 1 << 64:
        return "a field out of range"
    return s


class _Walker:
    def __init__(self, path: str, f: BinaryIO, key: seal.VerifyKey | None):
        self.r = Report(path, key_node=key.node if key else None)
        self.f = f
        self.key = key
        self.chain: _Chain | None = None
        self.seg = hashlib.sha256()
        self.seg_chunks: list[tuple[int, str]] = []
        self.seg_bytes = 0
        self.next_n = 0
        self.prev_chunk = seal.ZERO  # SHA-256 of the last seal chunk's bytes
        self.shift: int | None = None  # stored offset - actual offset, at the last good seal
        self.resync = False  # after a bad seal: take the next good seal's shift as it is
        self.final: seal.SealMap | None = None
        self.final_end = 0
        self.trailer_at: int | None = None

    def find(self, message: str) -> None:
        self.r.findings.append(message)
        if len(self.r.findings) >= MAX_FINDINGS:
            self.r.stopped = True
            raise _Stop

    # --- the walk ---

    def run(self) -> Report:
        try:
            self._walk()
        except _Stop:
            pass
        return self.r

    def _walk(self) -> None:
        f = self.f
        pre = f.read(fmt.PREAMBLE.size)
        major, minor = fmt.unpack_preamble(pre, self.r.path)
        if major not in (1, 2):
            raise FormatError(f"format version {major}.{minor} is not supported", self.r.path, 0)
        self.seg.update(pre)
        self.seg_bytes = len(pre)
        pos = len(pre)
        while True:
            head = f.read(_HEAD)
            if len(head) < _HEAD:
                self._end(pos, partial=len(head))
                return
            magic, size = fmt.FRAME_HEAD.unpack(head)
            if magic == fmt.DESCRIPTOR_MAGIC and size == _PAYLOAD:
                pos = self._chunk(pos, head)
                if pos < 0:
                    return
            elif magic == fmt.FOOTER_MAGIC and size == fmt.FOOTER_PAYLOAD_LEN:
                self._footer(pos, f.read(fmt.FOOTER_PAYLOAD_LEN))
                return
            else:
                self.find(f"bad frame at byte {pos} (magic {magic:#x}): the framing is "
                          "broken here; nothing after it can be checked")
                return

    def _chunk(self, pos: int, head: bytes) -> int:
        """Read the chunk at pos; its end, or -1 if the file ends inside it."""
        desc = self.f.read(_DESC_PAYLOAD)
        if len(desc) < _DESC_PAYLOAD:
            self._end(pos, partial=_HEAD + len(desc))
            return -1
        kind, clen, rlen = fmt.DESCRIPTOR.unpack(head + desc)[2:]
        if rlen > fmt.MAX_RAW_LEN or clen > fmt.MAX_COMPRESSED_LEN:
            self.find(f"chunk at byte {pos} declares {rlen} bytes ({clen} compressed), "
                      "more than allowed; nothing after it can be checked")
            return -1
        data = self.f.read(clen)
        if len(data) < clen:
            self._end(pos, partial=_HEAD + _DESC_PAYLOAD + len(data))
            return -1
        chunk = head + desc + data
        end = pos + len(chunk)
        raw = _decompress(data, rlen)
        name = _kind_name(kind)
        if isinstance(raw, str):
            self.find(f"{name} chunk at byte {pos} is damaged: {raw}")
        elif kind == fmt.ChunkKind.EVENTS:
            obj = _one_map(raw)
            if type(obj) is dict and obj.get("k") == "seal":
                self._seal(obj, pos, chunk)
                return end
        if pos == fmt.PREAMBLE.size:
            if kind != fmt.ChunkKind.HEADER:
                self.find(f"the first chunk, at byte {pos}, is not the header")
            elif not isinstance(raw, str):
                self._header(raw, pos)
        if kind == fmt.ChunkKind.TRAILER:
            self.trailer_at = pos
        self.r.chunks += 1
        self.seg.update(chunk)
        self.seg_chunks.append((pos, name))
        self.seg_bytes += len(chunk)
        return end

    def _header(self, raw: bytes, pos: int) -> None:
        header = _one_map(raw)
        info = header.get("seal") if type(header) is dict else None
        if info is None:
            return
        try:
            fmt.validate_header(header)
        except FormatError as e:
            self.find(f"the header at byte {pos} is malformed: {e}")
            return
        self.r.node, self.r.epoch = info["node_id"], info["epoch"]
        self.r.epochs.append(info["epoch"])
        if info["scheme"] != seal.SCHEME:
            self.find(f"the header names seal scheme {info['scheme']!r}; this sessrec "
                      f"checks {seal.SCHEME!r}")
        elif self.key is not None and self.key.node == self.r.node:
            if not 0 <= self.r.epoch <= seal.MAX_EPOCH:
                self.find(f"the header's epoch {self.r.epoch} is out of range")
            else:
                self.chain = _Chain(self.key.file_key(self.r.epoch))
                self.r.keyed = True

    # --- seals ---

    def _seal(self, raw: dict[object, object], at: int, chunk: bytes) -> None:
        r = self.r
        r.seals += 1
        digest = self.seg.digest()
        chunks, seg_bytes = self.seg_chunks, self.seg_bytes
        self.seg = hashlib.sha256()
        self.seg_chunks, self.seg_bytes = [], 0
        if not r.sealed:
            self.find(f"a seal at byte {at} in a file whose header is not sealed: "
                      "the header was replaced")
            return
        obj = _seal_map(raw)
        if isinstance(obj, str):
            self.find(f"the seal at byte {at} is malformed: {obj}")
            self.prev_chunk, self.resync = hashlib.sha256(chunk).digest(), True
            self.next_n += 1
            return
        s = SealRead(at, obj["n"], obj["time_ns"], obj["offset"], obj["final"])
        covered = _covered(chunks, at, seg_bytes)
        start = raw.get("epoch")  # a new chain's first seal's, checked by _chain_start
        if start is not None and not self._chain_start(s, start):
            return
        epoch = start if type(start) is int else None
        if self.final is not None:
            self.find(f"seal #{s.n} at byte {at} follows the final seal")
        if self.chain is not None:
            key = self.chain.key(s.n)
            if key is None:
                self.find(f"seal #{s.n} at byte {at} is implausibly far ahead of #{self.next_n}")
                raise _Stop
            tail = obj["tail"] if s.final else seal.ZERO
            mac = seal.seal_mac(key, s.n, s.time_ns, s.offset, s.final, obj["prev"],
                                obj["digest"], tail, epoch)
            if not hmac.compare_digest(mac, obj["mac"]):
                self.find(f"seal #{s.n} at byte {at} is forged or altered (its MAC does not "
                          f"verify); {covered} is not covered by a good seal")
                # Go on as if a seal was here: later seals are judged by their own MACs.
                self.prev_chunk, self.resync = hashlib.sha256(chunk).digest(), True
                self.next_n += 1
                return
        altered = obj["digest"] != digest
        if altered:
            self.find(f"{covered} was altered: it does not match seal #{s.n} "
                      f"(sealed {s.when})")
        self._order(s, obj, altered)
        self.prev_chunk = hashlib.sha256(chunk).digest()
        r.sealed_end = at + len(chunk)
        if not r.findings:
            r.last_good = s
            r.first_good = r.first_good or s
        if s.final:
            self.final, self.final_end = obj, at + len(chunk)

    def _chain_start(self, s: SealRead, epoch: object) -> bool:
        """A seal that starts a new chain, continuing the file (a daemon
        restarted): whether to go on checking it."""
        r = self.r
        if type(epoch) is not int or not 0 <= epoch <= seal.MAX_EPOCH or s.n != 0:
            self.find(f"the seal at byte {s.at} is malformed: a bad chain start")
            return False
        if self.final is not None:
            self.find(f"a new chain starts at byte {s.at}, after the final seal")
        last = r.last_good
        before = "no seal" if last is None else f"seal #{last.n} (sealed {last.when})"
        r.resumes.append(f"resumed: a new chain, session file #{epoch}, seals from byte "
                         f"{r.sealed_end} on (its first seal at byte {s.at}, sealed {s.when}); "
                         f"the part before ends at {before} without its final seal")
        r.epochs.append(epoch)
        if self.chain is not None and self.key is not None:
            self.chain = _Chain(self.key.file_key(epoch))
        self.next_n, self.prev_chunk, self.shift = 0, seal.ZERO, None
        return True

    def _order(self, s: SealRead, obj: seal.SealMap, altered: bool) -> None:
        """Seals must come in order, each after the one before it, at the
        offset it was written at (shifted by what was already reported)."""
        shift = s.offset - s.at
        if s.n > self.next_n:
            last = s.n - 1
            which = f"#{self.next_n}" if last == self.next_n else f"#{self.next_n} to #{last}"
            gone = "" if self.shift is None else f" ({shift - self.shift} bytes)"
            self.find(f"seal{'s' if last > self.next_n else ''} {which} missing before byte "
                      f"{s.at}: chunks removed{gone}")
        elif s.n < self.next_n:
            self.find(f"seal #{s.n} at byte {s.at} comes after seal #{self.next_n - 1}: "
                      "chunks reordered or repeated")
        elif obj["prev"] != self.prev_chunk and not self.resync:
            self.find(f"the seal chunk before seal #{s.n} (at byte {s.at}) was altered or "
                      "re-encoded, or replaced")
        elif altered or self.resync:
            pass  # a segment changed length, reported already
        elif self.shift is not None and shift != self.shift:
            self.find(f"{shift - self.shift} bytes removed or inserted before seal #{s.n} "
                      f"at byte {s.at}")
        elif self.shift is None and shift != 0:
            self.find(f"seal #{s.n} says it was at byte {s.offset}, it is at byte {s.at}")
        self.shift, self.resync = shift, False
        self.next_n = max(self.next_n, s.n + 1)

    # --- the end ---

    def _footer(self, pos: int, payload: bytes) -> None:
        r = self.r
        if len(payload) < fmt.FOOTER_PAYLOAD_LEN:
            self._end(pos, partial=_HEAD + len(payload))
            return
        (target,) = _FOOT_PAYLOAD.unpack(payload)
        if self.f.read(1):
            self.find(f"data after the footer at byte {pos}")
        if self.trailer_at is None or target != self.trailer_at:
            self.find(f"the footer at byte {pos} points to byte {target}, the trailer is at "
                      f"{self.trailer_at}")
        if not r.sealed:
            r.complete = not r.findings
            return
        if self.final is None:
            if self.trailer_at is not None:
                self.find(f"the trailer at byte {self.trailer_at} is not sealed: the final "
                          "seal before it was removed")
            self._unsealed_tail(pos)
            return
        if self.trailer_at != self.final_end or self.seg.digest() != self.final["tail"]:
            self.find(f"the trailer after the final seal (byte {self.final_end}) was "
                      "altered: it does not match the final seal")
            return
        r.complete = True

    def _end(self, pos: int, partial: int) -> None:
        """The file ends at pos + partial, without a footer."""
        r = self.r
        if pos == fmt.PREAMBLE.size:
            self.find("the file ends before its header: nothing can be checked")
            return
        cut = f"the file ends inside the frame at byte {pos}" if partial else \
            f"the file ends at byte {pos}"
        if not r.sealed:
            r.tail = f"{cut}, without a trailer" if self.trailer_at is None else \
                f"{cut}, before the footer"
            return
        if self.final is not None:
            if self.trailer_at == self.final_end and self.seg.digest() == self.final["tail"]:
                r.tail = f"{cut}: the trailer is sealed and intact, its footer is missing"
            else:
                r.tail = f"{cut}: the trailer that the final seal covers is cut or missing"
            return
        self._unsealed_tail(pos + partial, partial)

    def _unsealed_tail(self, end: int, partial: int = 0) -> None:
        loose = self.seg_bytes + partial
        if loose:
            self.r.tail = (f"the {loose} bytes after it (from byte {end - loose}) are not "
                           "sealed; the recording did not finish, or its end was cut off")
        else:
            self.r.tail = ("the file ends there without its final seal: the recording did "
                           "not finish, or its end was cut off")


def _kind_name(kind: int) -> str:
    try:
        return fmt.ChunkKind(kind).name
    except ValueError:
        return f"kind-{kind}"


def _covered(chunks: list[tuple[int, str]], at: int, nbytes: int) -> str:
    """What a seal covers, for a message: 'the RECORDS chunk at byte N'."""
    if not chunks:
        return f"the {nbytes} bytes before byte {at}" if nbytes else "nothing"
    pos, name = chunks[0]
    if pos == 0 or (pos == fmt.PREAMBLE.size and name == "HEADER"):
        return "the header chunk"
    if len(chunks) == 1:
        return f"the {name} chunk at byte {pos}"
    return f"the {len(chunks)} chunks from byte {pos}"


def verify_file(path: str | os.PathLike[str], key: seal.VerifyKey | None) -> Report:
    """Check one file. FormatError if it is not a session file at all."""
    p = os.fspath(path)
    try:
        f = open(p, "rb")
    except OSError as e:
        raise SessrecError(f"cannot read {p}: {e.strerror or e}") from None
    with f:
        return _Walker(p, f, key).run()


def sealed_end(path: str | os.PathLike[str]) -> int:
    """Where the sealed part of a file ends (after its last seal chunk; 0 if
    it has none): a writer continuing the file (SessionWriter.seal_from_here)
    covers the bytes from there to where it continues."""
    return verify_file(path, None).sealed_end


def epoch_gaps(reports: Iterable[Report]) -> list[str]:
    """For each node, the session files missing between the ones given."""
    by_node: dict[str, set[int]] = {}
    for r in reports:
        if r.node is not None:
            by_node.setdefault(r.node, set()).update(r.epochs)
    lines = []
    for node, epochs in sorted(by_node.items()):
        lo, hi = min(epochs), max(epochs)
        missing = sorted(set(range(lo, hi + 1)) - epochs) if hi - lo < 1 << 20 else []
        shown = ", ".join(f"#{e}" for e in missing[:20]) + (" ..." if len(missing) > 20 else "")
        line = f"node {node}: session files #{lo} to #{hi} given"
        lines.append(line + (f"; missing {shown}" if missing else "; none missing between"))
    return lines
