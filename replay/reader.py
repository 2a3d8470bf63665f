"""Open a session file of any supported version.

The preamble (magic, signature, major, minor) has the same layout in every
version; everything after it belongs to the reader of that major version. A
newer minor of a known major is read by that major's reader: minor versions
only add map keys, array fields, event types and record kinds, which readers
skip (docs/FORMAT.md)."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from replay import v1, v2
from replay.base import Damage, Session
from sessrec.errors import FormatError, SessrecError
from sessrec.format import PREAMBLE, Trailer, unpack_preamble

__all__ = ["SUPPORTED_MAJORS", "Damage", "Session", "open_session", "read_trailer_fast"]

SUPPORTED_MAJORS: tuple[int, ...] = (1, 2)


# How long to wait for a pipe, FIFO or terminal to have something to read:
# a FIFO without a writer would block open() (and read()) forever.
PIPE_WAIT = 10.0


def _open(path: str | os.PathLike[str], spool: bool = True) -> tuple[str, BinaryIO]:
    """path opened for reading (closed by the Session or the caller). A
    pipe, FIFO or device (/dev/stdin) is read to its end into an anonymous
    temporary file first, as the readers seek; spool=False gives None for
    one instead."""
    p = os.fspath(path)
    try:
        # O_NONBLOCK: opening a FIFO without a writer returns at once.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise SessrecError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise SessrecError(f"cannot read {p}: Is a directory")
        if not stat.S_ISREG(mode):
            if not spool:
                raise _NotAFile
            import select  # here: pipes are rare, and every command reads a file

            if not select.select([fd], [], [], PIPE_WAIT)[0]:
                raise SessrecError(f"cannot read {p}: nothing came in {PIPE_WAIT:g} s "
                                   "(a pipe or FIFO without a writer?)")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    if stat.S_ISREG(mode):
        return p, f
    with f:
        return p, _spooled(p, f)


class _NotAFile(Exception):
    pass


def _spooled(p: str, f: BinaryIO) -> BinaryIO:
    head = f.read(PREAMBLE.size)
    unpack_preamble(head, p)  # not a session file: say so before copying anything
    import tempfile  # here: it imports random, a tenth of `sessrec info`'s start-up

    tmp = tempfile.TemporaryFile()
    try:
        tmp.write(head)
        while block := f.read(1 << 20):
            tmp.write(block)
        tmp.seek(0)
    except OSError as e:
        tmp.close()
        raise SessrecError(f"cannot read {p}: {e.strerror or e}") from None
    return tmp


def _preamble(p: str, f: BinaryIO) -> tuple[int, int]:
    major, minor = unpack_preamble(f.read(PREAMBLE.size), p)
    if major not in SUPPORTED_MAJORS:
        supported = ", ".join(str(m) for m in SUPPORTED_MAJORS)
        raise FormatError(
            f"format version {major}.{minor} is not supported; "
            f"this sessrec reads major version {supported}",
            p,
            0,
        )
    return major, minor


def open_session(path: str | os.PathLike[str], *, strict: bool = True) -> Session:
    """Open a session file and read its header.

    strict=True: a corrupt chunk raises FormatError (after the records before it
    were yielded). strict=False: reading stops there and sets session.damage.
    Either way a file that simply ends early sets session.damage. Errors in the
    preamble or the header chunk always raise FormatError."""
    p, f = _open(path)
    try:
        major, minor = _preamble(p, f)
        if major == 1:
            return v1.SessionV1(p, f, minor, strict=strict)
        if major == 2:
            return v2.SessionV2(p, f, minor, strict=strict)
        raise AssertionError(f"major version {major} in SUPPORTED_MAJORS without a reader")
    except BaseException:
        f.close()
        raise


def read_trailer_fast(path: str | os.PathLike[str]) -> Trailer | None:
    """The trailer of a completed file, found through the footer in O(1); None
    if the file has no footer (not completed) or is not a file (a pipe: read
    it with open_session). FormatError if it is damaged."""
    try:
        p, f = _open(path, spool=False)
    except _NotAFile:
        return None
    with f:
        major, _minor = _preamble(p, f)
        if major in (1, 2):  # the same trailer chunk and footer
            return v1.read_trailer_fast(p, f)
        raise AssertionError(f"major version {major} in SUPPORTED_MAJORS without a reader")
