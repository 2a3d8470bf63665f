"""Showing untrusted text to people: the one escaping function, and
durations for people. (The names of errno values and signals are
sessrec/linux.py's.)

A session file records what programs passed to the kernel: argv, paths and
comm may hold escape sequences (``\\x1b]0;title\\x07``, ``\\x1b[2J``) or
bidirectional overrides meant to drive or fool the analyst's terminal. Every
piece of such text goes through printable() (or show() for bytes) before it
is written anywhere a terminal may read it: replay, tree, info.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final, TextIO

# What a terminal must not be sent raw: C0 controls, DEL, C1 controls, and
# every invisible format character (Unicode's Cc, Cf, Zl and Zp categories,
# which tests/unit/test_text.py checks against unicodedata): the soft hyphen,
# Arabic and Syriac marks, the Mongolian vowel separator, zero-width and
# directional marks, line and paragraph separators, bidi embeddings,
# overrides and isolates, invisible operators and the deprecated format
# characters (U+206A-206F), BOM, interlinear annotation, and the TAG block.
_FORMAT_CHARS: Final = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f"
)
_UNSAFE: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT_CHARS}]")
# The same but C0, which JSON escapes itself (and whose newline is a JSON
# document's layout).
_JSON_UNSAFE: Final = re.compile(f"[\x7f-\x9f{_FORMAT_CHARS}]")


_SHORT: Final = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group()
    short = _SHORT.get(ch)
    if short is not None:
        return short
    c = ord(ch)
    if c < 0x100:
        return f"\\x{c:02x}"
    return f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def printable(text: str) -> str:
    """text with every control character and invisible format character
    written as an escape (\\x1b, \\x07, \\u202e; \\n, \\t and \\r as such): safe
    for a terminal."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def _json_escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    if c < 0x10000:
        return f"\\u{c:04x}"
    c -= 0x10000  # a surrogate pair, as JSON spells a character past U+FFFF
    return f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}"


def json_safe(text: str) -> str:
    """JSON text with the characters printable() escapes that JSON does not
    (DEL, C1, invisible format characters) written as \\u escapes: the same
    data to a JSON reader, nothing a terminal acts on. The exports' last
    step: ASCII text without DEL (the common case) costs one scan."""
    if text.isascii() and "\x7f" not in text:
        return text
    return _JSON_UNSAFE.sub(_json_escape, text)


def json_text(obj: object, stream: TextIO | None = None) -> str:
    """obj as indented JSON for people (`--json`), with the characters
    printable() escapes written as \\u escapes: the same data, but nothing a
    terminal would act on. ASCII only when stream does not take UTF-8."""
    ascii_only = stream is not None and not encodable(stream)
    return json_safe(json.dumps(obj, indent=2, ensure_ascii=ascii_only))


def show(data: bytes) -> str:
    """Kernel bytes for display: UTF-8, undecodable bytes as \\xNN, then
    printable()."""
    return printable(data.decode("utf-8", "backslashreplace"))


def encodable(stream: TextIO) -> bool:
    """Whether stream takes any str (UTF-8); else callers stay in ASCII."""
    enc = (getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-")
    return enc in ("utf-8", "utf8")


def ascii_safe(text: str) -> str:
    """Non-ASCII characters as \\xNN / \\uNNNN, for a stream that is not UTF-8."""
    return text.encode("ascii", "backslashreplace").decode("ascii")



def duration_text(ns: int) -> str:
    """'0.412 ms', '25.0 ms', '1.25 s', '3m05s', '2h03m'."""
    if ns < 1_000_000:
        return f"{ns / 1e6:.3f} ms"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    s = ns / 1e9
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"

def use_color(choice: str, stream: TextIO, environ: Mapping[str, str]) -> bool:
    """--color=always|never|auto. auto: colour only on a terminal, and not
    when NO_COLOR is set (https://no-color.org) or TERM is dumb."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())
