"""SessionWriter: writes a session file (docs/FORMAT.md) as events arrive.

Two kinds of data are buffered: ring-buffer records, framed as they come
(RECORDS chunks: the recorder's path, with no decoding while recording), and
msgpack event arrays and stats maps (EVENTS chunks). One buffer holds data at
a time, so chunks keep the order of arrival. Each flush writes one chunk
(descriptor plus zstd frame) in a single write() followed by a flush, so that
a reader following the file sees only whole chunks and a recorder killed with
SIGKILL leaves at worst one partial chunk at the end.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import msgpack
import zstandard

from sessrec import format as fmt
from sessrec.errors import SessrecError, UsageError
from sessrec.seal import Sealer

PathArg = str | os.PathLike[str]


class OutputError(SessrecError):
    """The session file cannot be created or written."""


def _cannot_write(path: str, err: OSError) -> OutputError:
    reason = err.strerror or str(err)
    return OutputError(f"cannot write {path}: {reason}")


def check_writable(path: PathArg, force: bool = False) -> None:
    """Fail early, before the command starts, if path cannot be created.

    An existing file without force is a UsageError naming --force; a missing or
    unwritable directory is an OutputError."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise OutputError(f"cannot write {p}: it is a directory")
    if os.path.lexists(p):
        if not force:
            raise UsageError(f"{p} already exists; use --force to overwrite it")
        if not os.access(p, os.W_OK):
            raise OutputError(f"cannot write {p}: Permission denied")
        return
    parent = os.path.dirname(p) or "."
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {p}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {p}: Permission denied")


def open_output(path: PathArg, force: bool = False) -> int:
    """Creates the session file, 0600, and returns its descriptor (write
    only, close-on-exec): a new file, or with force an existing one emptied.
    `record` opens its file here, with or without a daemon (which then
    writes to the descriptor it is handed: docs/CONTROL.md)."""
    p = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
    flags |= os.O_TRUNC if force else os.O_EXCL
    try:
        return os.open(p, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{p} already exists; use --force to overwrite it") from None
    except OSError as e:
        raise _cannot_write(p, e) from None


class SessionWriter:
    """Write one session file.

    header: the header map without "k" and "format" (both are filled in; if
    given they must match). It is validated here, once.
    stream: write to this binary file object instead of creating path (an
    already-open file: the descriptor a `record` client handed the daemon;
    tests, pipes); path is then only used in messages. It is closed with
    the writer.
    sealer: seal the file (sessrec.seal): each write() of a chunk carries the
    seal chunk that covers it, and the trailer is preceded by the final seal.

    The hot paths are add() and `records` (a bytearray the recorder appends
    framed records to, after begin_records()); neither validates. Call
    maybe_flush() from the event loop, and close(trailer) at the end."""

    def __init__(
        self,
        path: PathArg,
        header: Mapping[str, object],
        *,
        force: bool = False,
        flush_interval: float = 1.0,
        max_chunk_bytes: int = 1 << 20,
        level: int = 3,
        stream: BinaryIO | None = None,
        resume_at: int | None = None,
        sealer: Sealer | None = None,
    ):
        """resume_at: continue an existing file (a session a killed daemon
        left; stream, or else path) from this byte offset, the end of its
        last whole chunk: the file is cut there and nothing is written until
        the caller adds."""
        self.path = os.fspath(path)
        if not 0 < max_chunk_bytes <= fmt.MAX_MSGPACK_RAW_LEN // 2:
            raise ValueError(f"max_chunk_bytes must be in 1..{fmt.MAX_MSGPACK_RAW_LEN // 2}")
        self._sealer = sealer
        self._carry = b""
        self._unwritten_seal: bytes | None = None
        if sealer is not None:
            header = {**header, "seal": sealer.header_info()}
        self.header = fmt.validate_header(
            {"k": "header", "format": [fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR], **header}
        )
        if self.header["format"] != [fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR]:
            raise ValueError(f"this writer writes format {fmt.FORMAT_MAJOR}.{fmt.FORMAT_MINOR}")
        self.flush_interval = flush_interval
        self.max_chunk_bytes = max_chunk_bytes
        self.bytes_written = 0
        self.events_written = 0
        self.closed = False
        self._buf = bytearray()
        self.records = bytearray()
        self._packer = msgpack.Packer(use_bin_type=True, datetime=False)
        self._cctx = zstandard.ZstdCompressor(
            level=level, write_checksum=True, write_content_size=True
        )
        self._last_flush = time.monotonic()
        self._failed: OutputError | None = None
        # Set by the daemon: a write that fails is cut back to the last whole
        # chunk and the data handed to on_drop(kind, raw) instead of
        # failing the writer for good, so that it recovers when space returns.
        self.on_drop: Callable[[fmt.ChunkKind, bytes], None] | None = None
        self._stream: BinaryIO
        if resume_at is not None:
            try:
                if stream is None:
                    stream = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CLOEXEC), "wb",
                                       buffering=0)
                os.ftruncate(stream.fileno(), resume_at)
                os.lseek(stream.fileno(), resume_at, os.SEEK_SET)
            except OSError as e:
                if stream is not None:
                    stream.close()
                raise _cannot_write(self.path, e) from None
            self._stream = stream
            self.bytes_written = resume_at
            return
        if stream is None:
            stream = os.fdopen(open_output(self.path, force), "wb", buffering=0)
        self._stream = stream
        packed = self._pack(self.header)
        if len(packed) > fmt.MAX_MSGPACK_RAW_LEN:  # readers refuse it
            raise UsageError(f"the session header would take {len(packed)} bytes, more than "
                             f"the {fmt.MAX_MSGPACK_RAW_LEN} a file allows: shorten the command")
        header_chunk = self._chunk(fmt.ChunkKind.HEADER, packed)
        try:
            self._write(self._sealed(fmt.pack_preamble() + header_chunk))
        except OutputError:
            self.closed = True
            with contextlib.suppress(OSError):
                stream.close()
            raise

    # --- the hot path ---

    def add(self, event: list[Any]) -> None:
        """Append one event array (format.EVENT_FIELDS layout), not validated."""
        if self.records:
            self._flush_records()
        buf = self._buf
        buf += self._packer.pack(event)
        self.events_written += 1
        if len(buf) >= self.max_chunk_bytes:
            self.flush()

    def begin_records(self) -> bytearray:
        """The buffer to append framed records (format.RECORD_FRAME, then the
        record) to; buffered event arrays are flushed first, to keep the order."""
        if self._buf:
            self._flush_events()
        return self.records

    def add_stats(self, stats: dict[str, Any]) -> None:
        """Write a stats map, {"ts": int, "lost": {type_name: int}} (cumulative),
        at once, after everything buffered: the recorder appends to `records`
        at any time, so stats are not left in a buffer behind them. (Stats are
        written when losses grow, at most about once a second.)"""
        packed = self._pack(fmt.validate_stats({"k": "stats", **stats}))
        self.flush()
        self._write_map(packed)

    def add_map(self, kind: str, body: dict[str, Any]) -> None:
        """Write a map of a kind format.py validates ("gap"), at once, after
        everything buffered."""
        validate = {"gap": fmt.validate_gap, "stats": fmt.validate_stats}[kind]
        packed = self._pack(validate({"k": kind, **body}))
        self.flush()
        self._write_map(packed)

    def maybe_flush(self, now_monotonic: float) -> None:
        """Flush if flush_interval has passed since the last flush, or if
        max_chunk_bytes of records are buffered."""
        if (now_monotonic - self._last_flush >= self.flush_interval
                or len(self.records) >= self.max_chunk_bytes):
            self.flush()
            self._last_flush = now_monotonic

    def flush(self) -> None:
        """Write what is buffered as one chunk (nothing if nothing is)."""
        self._last_flush = time.monotonic()
        if self.records:
            self._flush_records()
        if self._buf:
            self._flush_events()

    def _flush_events(self) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        self._write_or_drop(fmt.ChunkKind.EVENTS, raw)

    def _flush_records(self) -> None:
        raw = bytes(self.records)
        self.records.clear()
        self._write_or_drop(fmt.ChunkKind.RECORDS, raw)

    def _write_or_drop(self, kind: fmt.ChunkKind, raw: bytes) -> None:
        if self.on_drop is None:
            self._write(self._sealed(self._chunk(kind, raw)))
            return
        start = self.bytes_written
        try:
            self._write(self._sealed(self._chunk(kind, raw)))
        except OutputError:
            if not self._cut_back(start):
                raise
            self.on_drop(kind, raw)
            raise

    def _write_map(self, packed: bytes) -> None:
        """An EVENTS chunk of one map; with on_drop set, a failed write is cut
        back as _write_or_drop does (the map is the caller's to retry)."""
        start = self.bytes_written
        try:
            self._write(self._sealed(self._chunk(fmt.ChunkKind.EVENTS, packed)))
        except OutputError:
            if self.on_drop is not None:
                self._cut_back(start)
            raise

    def _cut_back(self, offset: int) -> bool:
        """Undo a partly written chunk, so the file ends with a whole one."""
        try:
            fd = self._stream.fileno()
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
        except (OSError, ValueError):
            return False
        self.bytes_written = offset
        self._failed = None
        return True

    def fileno(self) -> int:
        return self._stream.fileno()

    def close(self, trailer: dict[str, Any] | None) -> None:
        """Write the remaining events, the trailer and the footer, fsync, close.

        trailer: the trailer map without "k" (filled in), validated here.
        None leaves the file without trailer, as an interrupted recording
        (a reader then reports it as truncated)."""
        if self.closed:
            return
        body = None if trailer is None else fmt.validate_trailer({"k": "trailer", **trailer})
        try:
            self.flush()
            if body is not None:
                chunk = self._chunk(fmt.ChunkKind.TRAILER, self._pack(body))
                final = self._seal_chunk(b"", chunk)
                offset = self.bytes_written + len(final)
                self._write(final + chunk + fmt.pack_footer(offset))
            self._fsync()
        finally:
            self.closed = True
            if self._sealer is not None:
                self._sealer.close()
            try:
                self._stream.close()
            except OSError as e:
                raise _cannot_write(self.path, e) from None

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        """Without close(trailer) first, leave an incomplete (trailer-less) file."""
        if not self.closed:
            self.close(None)

    # --- internals ---

    def _fsync(self) -> None:
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError):
            return  # not a file (BytesIO): nothing to sync
        try:
            os.fsync(fd)
        except OSError as e:
            if e.errno != errno.EINVAL:  # EINVAL: a pipe or socket
                raise _cannot_write(self.path, e) from None

    def _pack(self, obj: object) -> bytes:
        data: bytes = self._packer.pack(obj)
        return data

    def _chunk(self, kind: fmt.ChunkKind, raw: bytes) -> bytes:
        frame = self._cctx.compress(raw)
        return fmt.pack_descriptor(kind, len(frame), len(raw)) + frame

    def seal_from_here(self, sealer: Sealer, unsealed: bytes = b"") -> None:
        """Seal what is written from now on with a new chain: for a file that
        another process wrote and sealed (a session a daemon left), continued
        here. unsealed: the file's bytes from the end of its last seal chunk
        to where this writer continues (replay.verify.sealed_end), which the
        new chain's first seal covers."""
        sealer.resumed = True
        self._sealer, self._carry = sealer, unsealed

    def _seal_chunk(self, segment: bytes, tail: bytes | None = None) -> bytes:
        """The seal chunk for segment, about to be written at bytes_written
        (b"" when not sealing). tail: the trailer chunk, for the final seal."""
        if self._sealer is None:
            return b""
        offset = self.bytes_written + len(segment)
        seal = self._sealer.seal(self._carry + segment, offset, tail)
        chunk = self._chunk(fmt.ChunkKind.EVENTS, self._pack(seal))
        self._unwritten_seal = chunk  # its key is used up once _write succeeds
        return chunk

    def _sealed(self, data: bytes) -> bytes:
        """data followed by its seal chunk, for one write()."""
        return data + self._seal_chunk(data)

    def _write(self, data: bytes) -> None:
        """Write data completely (one write() for a regular file), then flush."""
        if self._failed is not None:
            raise self._failed
        if self.closed:
            raise ValueError(f"{self.path}: the session writer is closed")
        view = memoryview(data)
        seal, self._unwritten_seal = self._unwritten_seal, None
        try:
            while view:
                n = self._stream.write(view)
                if n is None:  # a non-blocking stream that would block
                    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
                self.bytes_written += n
                view = view[n:]
            self._stream.flush()
        except OSError as e:
            self._failed = _cannot_write(self.path, e)
            raise self._failed from None
        if seal is not None and self._sealer is not None:
            self._sealer.written(seal)
            self._carry = b""
