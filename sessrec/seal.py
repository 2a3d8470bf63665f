"""Forward-secure sealing of session files: the keys and the seals.

The scheme (docs/SECURITY.md says what it protects, docs/FORMAT.md where the
seals are in a file) follows Schneier and Kelsey's secure audit log and
journald's Forward Secure Sealing, with hash chains instead of journald's
FSPRG:

- `sessrec keygen` draws a node id and a 32-byte seed. The seed, with the node
  id, is the *verification key*; it goes to the auditor and is not kept on the
  host. The host keeps only the *seal key state*: the node chain's current
  key, which cannot be turned back into an earlier one.
- Node chain: each session file takes the next epoch e of its node, and its
  file key from the node key of epoch e. The state on disk is advanced (and
  the old key overwritten) before the file key is used, so a restart never
  reuses a key. Two levels, so that a verifier reaches epoch e in at most
  about 2 * 2**16 hashes:  T(0) = seed, T(h+1) = H(top | T(h));
  N(h, 0) = H(node | T(h)), N(h, l+1) = H(next | N(h, l)); epoch e = h*BLOCK + l.
  The host holds N(h, l) and T(h+1): neither leads back to an earlier epoch.
- File chain: K(0) = H(file | N(e)), K(j+1) = H(seal-next | K(j)). Seal j is
  HMAC-SHA256 under H(mac | K(j)) of its fields, the SHA-256 of the bytes it
  covers and the SHA-256 of the previous seal chunk's bytes (the chain); then
  K(j) is replaced by K(j+1) in memory. Someone who becomes
  root at time T holds at best the next unused K: every seal made before T
  stays out of reach.

H is SHA-256 and every use has its own label (domain separation). Standard
library only (hashlib, hmac, secrets): a hash chain and an HMAC need nothing
else, and a symmetric scheme keeps verification as fast as reading the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import stat
import struct
import time
from dataclasses import dataclass
from typing import Final, NotRequired, TypedDict, cast

from sessrec.errors import SessrecError
from sessrec.format import SealInfo

SCHEME: Final = "hmac-sha256-chain-1"
DEFAULT_SEAL_KEY: Final = "/etc/sessrec/seal.key"
BLOCK: Final = 1 << 16  # node epochs per block of the node chain's lower level
MAX_EPOCH: Final = BLOCK * BLOCK - 1  # about 4e9 session files per key
DIGEST_LEN: Final = 32
ZERO: Final = bytes(DIGEST_LEN)

_TOP: Final = b"sessrec/top\0"
_NODE: Final = b"sessrec/node\0"
_NEXT: Final = b"sessrec/next\0"
_FILE: Final = b"sessrec/file\0"
_SEAL_NEXT: Final = b"sessrec/seal-next\0"
_MAC: Final = b"sessrec/mac\0"
_SEAL_MSG: Final = b"sessrec/seal-1\0"
_SEAL_FIELDS: Final = struct.Struct("<QQQB")  # n, time_ns, offset, final

VERIFY_KEY_PREFIX: Final = "sessrec-verify-1"
_VERIFY_RE: Final = re.compile(r"sessrec-verify-1:([0-9a-f]{32}):([0-9a-f]{64})")
_STATE_TAG: Final = "sessrec-seal-key-1"
_STATE_RE: Final = re.compile(
    r"sessrec-seal-key-1 node=([0-9a-f]{32}) epoch=([0-9]{20}) "
    r"key=([0-9a-f]{64}) top=([0-9a-f]{64}) check=([0-9a-f]{16})\n"
)


class SealKeyError(SessrecError):
    """A seal key or verification key that is missing, unreadable or malformed."""


def _h(label: bytes, key: bytes | bytearray) -> bytes:
    return hashlib.sha256(label + key).digest()


def _wipe(buf: bytearray) -> None:
    """Overwrite a key in place. Best effort: Python may hold short-lived
    copies (docs/SECURITY.md)."""
    buf[:] = bytes(len(buf))


# --- the verification key (off the host) ----------------------------------------


@dataclass(frozen=True)
class VerifyKey:
    """The node id and the seed: verifies every seal of the node, and could
    make them too, so it is kept secret, off the host."""

    node_id: bytes
    seed: bytes

    @classmethod
    def generate(cls) -> VerifyKey:
        return cls(secrets.token_bytes(16), secrets.token_bytes(DIGEST_LEN))

    def __str__(self) -> str:
        return f"{VERIFY_KEY_PREFIX}:{self.node_id.hex()}:{self.seed.hex()}"

    def __repr__(self) -> str:  # never print the seed by accident
        return f"VerifyKey(node_id={self.node_id.hex()})"

    @classmethod
    def parse(cls, text: str, source: str = "the key") -> VerifyKey:
        """From 'sessrec-verify-1:NODE:SEED', alone or on a line of a file
        (lines starting with # are comments)."""
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _VERIFY_RE.fullmatch(line)
            if m is None:
                break
            return cls(bytes.fromhex(m[1]), bytes.fromhex(m[2]))
        raise SealKeyError(f"{source} is not a sessrec verification key "
                           f"(expected a line '{VERIFY_KEY_PREFIX}:NODE:SEED', "
                           "as `sessrec keygen` prints)")

    @classmethod
    def load(cls, arg: str) -> VerifyKey:
        """--key: the key itself, or a file holding it."""
        if arg.startswith(VERIFY_KEY_PREFIX + ":"):
            return cls.parse(arg, "--key")
        try:
            with open(arg, "rb") as f:
                data = f.read(4096)
        except OSError as e:
            raise SealKeyError(f"cannot read key {arg}: {e.strerror or e}") from None
        return cls.parse(data.decode("ascii", "replace"), arg)

    @property
    def node(self) -> str:
        return self.node_id.hex()

    def node_key(self, epoch: int) -> bytes:
        """N(epoch): at most about 2 * BLOCK hashes."""
        if not 0 <= epoch <= MAX_EPOCH:
            raise ValueError(f"epoch {epoch} out of range")
        h, low = divmod(epoch, BLOCK)
        top = self.seed
        for _ in range(h):
            top = _h(_TOP, top)
        key = _h(_NODE, top)
        for _ in range(low):
            key = _h(_NEXT, key)
        return key

    def file_key(self, epoch: int) -> bytes:
        """K(0) of the session file of this epoch."""
        return _h(_FILE, self.node_key(epoch))


def next_seal_key(key: bytes | bytearray) -> bytes:
    return _h(_SEAL_NEXT, key)


def seal_mac(key: bytes | bytearray, n: int, time_ns: int, offset: int, final: bool,
             prev: bytes, digest: bytes, tail: bytes, epoch: int | None = None) -> bytes:
    """The MAC of seal n under its file-chain key K(n). epoch: only in the
    first seal of a chain that continues a file (Sealer.resumed)."""
    msg = _SEAL_FIELDS.pack(n, time_ns, offset, final) + prev + digest + tail
    if epoch is not None:
        msg += struct.pack("<Q", epoch)
    return hmac.new(_h(_MAC, key), _SEAL_MSG + msg, hashlib.sha256).digest()


# --- the seal key state (on the host) ----------------------------------------------


@dataclass
class _State:
    node_id: bytes
    epoch: int
    key: bytearray  # N(h, l)
    top: bytearray  # T(h + 1)

    def line(self) -> bytes:
        body = (f"{_STATE_TAG} node={self.node_id.hex()} epoch={self.epoch:020d} "
                f"key={self.key.hex()} top={self.top.hex()}")
        check = hashlib.sha256(body.encode()).hexdigest()[:16]
        return f"{body} check={check}\n".encode()

    @classmethod
    def first(cls, vk: VerifyKey) -> _State:
        return cls(vk.node_id, 0, bytearray(_h(_NODE, vk.seed)), bytearray(_h(_TOP, vk.seed)))

    def advance(self) -> None:
        """Epoch e -> e + 1, overwriting the old key."""
        if self.epoch >= MAX_EPOCH:
            raise SealKeyError("the seal key has sealed its last session file; "
                               "run `sessrec keygen --force` for a new one")
        self.epoch += 1
        if self.epoch % BLOCK:
            self.key[:] = _h(_NEXT, self.key)
        else:
            self.key[:] = _h(_NODE, self.top)
            self.top[:] = _h(_TOP, self.top)

    def wipe(self) -> None:
        _wipe(self.key)
        _wipe(self.top)


def _parse_state(data: bytes, path: str) -> _State:
    m = _STATE_RE.fullmatch(data.decode("ascii", "replace"))
    if m is None:
        raise SealKeyError(f"{path} is not a sessrec seal key (or it is damaged)")
    state = _State(bytes.fromhex(m[1]), int(m[2]), bytearray.fromhex(m[3]),
                   bytearray.fromhex(m[4]))
    if state.line() != data:
        raise SealKeyError(f"{path}: the seal key is damaged (its check does not match)")
    if state.epoch > MAX_EPOCH:
        raise SealKeyError(f"{path}: epoch {state.epoch} out of range")
    return state


STATE_LEN: Final = len(_State(bytes(16), 0, bytearray(32), bytearray(32)).line())


def create_seal_key(path: str, *, force: bool = False) -> VerifyKey:
    """`sessrec keygen`: a new node identity. Writes the seal key state (mode
    0600) at path and returns the verification key, which is not stored."""
    vk = VerifyKey.generate()
    state = _State.first(vk)
    try:
        write_private(path, state.line(), force=force)
    finally:
        state.wipe()
    return vk


def write_private(path: str, data: bytes, *, force: bool = False) -> None:
    """Create path, mode 0600 (its directory 0700 if missing), with data, synced."""
    parent = os.path.dirname(path) or "."
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_TRUNC if force else os.O_EXCL)
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise SealKeyError(f"{path} already exists; --force replaces it (files sealed "
                           "from then on need the new verification key)") from None
    except OSError as e:
        raise SealKeyError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    except OSError as e:
        raise SealKeyError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    _fsync_dir(parent)


def seal_key_path(flag: str | None) -> str | None:
    """The seal key a recorder uses: the one given, else the node's default
    if it exists, else none (the file is not sealed)."""
    if flag is not None:
        return flag
    return DEFAULT_SEAL_KEY if os.path.lexists(DEFAULT_SEAL_KEY) else None


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _open_state(path: str, writable: bool) -> int:
    try:
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
    except OSError as e:
        raise SealKeyError(f"cannot read seal key {path}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
        os.close(fd)
        raise SealKeyError(f"seal key {path} must be a regular file of mode 0600 "
                           f"(it is {stat.filemode(st.st_mode)}): chmod 600 {path}")
    return fd


def _read_state(fd: int, path: str) -> _State:
    data = os.pread(fd, STATE_LEN + 1, 0)
    return _parse_state(data, path)


@dataclass(frozen=True)
class SealKeyStatus:
    node: str
    next_epoch: int


def seal_key_status(path: str) -> SealKeyStatus:
    """The node id and the epoch the next session file will take; reads the
    state without advancing it (and checks that it is usable)."""
    fd = _open_state(path, writable=False)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        state = _read_state(fd, path)
    finally:
        os.close(fd)
    state.wipe()
    return SealKeyStatus(state.node_id.hex(), state.epoch)


def start_file(path: str) -> Sealer:
    """Take the next epoch of the node's seal key for one session file.

    Under an exclusive lock (recorders and the daemon may start sessions at
    once), the state is read, advanced, written back in place and fsynced
    before the file key is handed out: a crash after this loses an epoch (a
    gap that verify reports) but never reuses a key."""
    fd = _open_state(path, writable=True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        state = _read_state(fd, path)
        epoch, node_id = state.epoch, state.node_id
        file_key = bytearray(_h(_FILE, state.key))
        state.advance()
        try:
            # In place, same length: the old key's bytes are overwritten where
            # they were (a rename would leave them in a freed block).
            if os.pwrite(fd, state.line(), 0) != STATE_LEN:
                raise OSError("short write")
            os.fsync(fd)
        except OSError as e:
            _wipe(file_key)
            raise SealKeyError(f"cannot update seal key {path}: {e}") from None
        finally:
            state.wipe()
    finally:
        os.close(fd)
    return Sealer(node_id, epoch, file_key)


# --- sealing one file ------------------------------------------------------------


class SealMap(TypedDict):
    """A "seal" map (format 2.1, in an EVENTS chunk; docs/FORMAT.md)."""

    k: str
    n: int
    time_ns: int
    offset: int
    prev: bytes
    digest: bytes
    final: bool
    epoch: NotRequired[int]  # a new chain's first seal: its session file number
    tail: NotRequired[bytes]  # the final seal's: SHA-256 of the trailer chunk
    mac: bytes


class Sealer:
    """The file chain of one session file, held in memory by its writer
    (recorder.writer.SessionWriter(sealer=...)). Each seal uses K(n) once:
    seal(), then written() replaces it by K(n+1)."""

    def __init__(self, node_id: bytes, epoch: int, file_key: bytes | bytearray):
        self.node_id = node_id
        self.epoch = epoch
        self._key = bytearray(file_key)
        self.n = 0
        self._prev = ZERO
        # Continuing a file that another process sealed (a daemon restarted):
        # this chain's first seal names its epoch (recorder.writer.seal_from_here).
        self.resumed = False

    def header_info(self) -> SealInfo:
        """The header's "seal" map."""
        return {"node_id": self.node_id.hex(), "epoch": self.epoch, "scheme": SCHEME}

    def seal(self, segment: bytes, offset: int, tail: bytes | None = None) -> SealMap:
        """The seal map for segment, the file's bytes since the previous seal
        chunk, whose seal chunk starts at byte offset. tail: for the final
        seal, the bytes that follow it (the trailer chunk).

        The key is used up by written(), once the seal chunk is on disk: a
        write that failed (and was cut back) leaves the number and its key
        for the seal made again in its place."""
        now = time.time_ns()
        digest = hashlib.sha256(segment).digest()
        final = tail is not None
        tail_digest = hashlib.sha256(tail).digest() if tail is not None else ZERO
        chain_start = self.epoch if self.resumed and self.n == 0 else None
        mac = seal_mac(self._key, self.n, now, offset, final, self._prev, digest, tail_digest,
                       chain_start)
        seal: dict[str, object] = {
            "k": "seal", "n": self.n, "time_ns": now, "offset": offset,
            "prev": self._prev, "digest": digest, "final": final,
        }
        if chain_start is not None:
            seal["epoch"] = chain_start  # a new chain: K(0) of this session file number
        if final:
            seal["tail"] = tail_digest
        seal["mac"] = mac  # last, as written since 2.1
        return cast(SealMap, seal)

    def written(self, seal_chunk: bytes) -> None:
        """The seal chunk is on disk: erase its key (K(n) becomes K(n+1));
        the next seal chains to these bytes."""
        self._key[:] = next_seal_key(self._key)
        self.n += 1
        self._prev = hashlib.sha256(seal_chunk).digest()

    def close(self) -> None:
        _wipe(self._key)
