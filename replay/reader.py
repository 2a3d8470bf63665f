"""Open a session file of any supported version.

The preamble (magic, signature, major, minor) has the same layout in every
version; everything after it belongs to the reader of that major version. A
newer minor of a known major is read by that major's reader: minor versions
only add map keys, array fields, event types and record kinds, which readers
skip (docs/FORMAT.md)."""

from __future__ import annotations

import os
from typing import Any, BinaryIO

from replay import v1, v2
from replay.base import Damage, Session
from sessrec.errors import FormatError, SessrecError
from sessrec.format import PREAMBLE, unpack_preamble

__all__ = ["SUPPORTED_MAJORS", "Damage", "Session", "open_session", "read_trailer_fast"]

SUPPORTED_MAJORS: tuple[int, ...] = (1, 2)


def _open(path: str | os.PathLike[str]) -> tuple[str, BinaryIO]:
    p = os.fspath(path)
    try:
        return p, open(p, "rb")  # closed by the Session or the caller
    except OSError as e:
        raise SessrecError(f"cannot read {p}: {e.strerror or e}") from None


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


def read_trailer_fast(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The trailer of a completed file, found through the footer in O(1); None
    if the file has no footer (not completed). FormatError if it is damaged."""
    p, f = _open(path)
    with f:
        major, _minor = _preamble(p, f)
        if major in (1, 2):  # the same trailer chunk and footer
            return v1.read_trailer_fast(p, f)
        raise AssertionError(f"major version {major} in SUPPORTED_MAJORS without a reader")
