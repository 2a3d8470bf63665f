"""replay.text: the Linux errno and signal tables (checked against this
machine's, when it is Linux), results and durations for people."""

from __future__ import annotations

import errno
import signal
import sys

import pytest

from replay.text import duration_text, json_text, printable
from sessrec.linux import ERRNO_NAMES, SIGNAL_NAMES, errno_name, result, signal_name


@pytest.mark.skipif(sys.platform != "linux", reason="the tables are Linux's")
def test_tables_match_linux() -> None:
    checked = 0
    for number, name in ERRNO_NAMES.items():
        if name != "-" and hasattr(errno, name):
            assert getattr(errno, name) == number, name
            checked += 1
    assert checked > 120
    for number, name in SIGNAL_NAMES.items():
        assert getattr(signal, name) == number, name


def test_names() -> None:
    assert errno_name(2) == "ENOENT" and errno_name(115) == "EINPROGRESS"
    assert errno_name(41) == "E41" and errno_name(9999) == "E9999"  # unused, unknown
    assert errno_name(512) == "ERESTARTSYS"
    assert result(3) == "3" and result(-13) == "-13 EACCES" and result(0) == "0"
    assert signal_name(9) == "SIGKILL" and signal_name(34) == "SIG34"


def test_durations() -> None:
    assert duration_text(412_000) == "0.412 ms"
    assert duration_text(25_100_000) == "25.1 ms"
    assert duration_text(1_250_000_000) == "1.25 s"
    assert duration_text(185 * 10**9) == "3m05s"
    assert duration_text(7380 * 10**9) == "2h03m"


def test_printable_escapes_every_invisible_character() -> None:
    """Every control, format, line and paragraph separator character Unicode
    knows (this Python's unicodedata) is escaped: the soft hyphen, U+180E,
    U+206A-206F and the TAG block included."""
    import unicodedata

    missed = [
        f"U+{c:04X}" for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp")
        and printable(chr(c)) == chr(c)
    ]
    assert missed == []
    assert printable("a\u00adb\u180e\u206a\U000e0041") == "a\\xadb\\u180e\\u206a\\U000e0041"


def test_json_text_escapes_what_a_terminal_would_act_on() -> None:
    import io
    import json

    doc = {"host": "caf\u00e9\x9b\x7f\u202e\U000e0041", "n": [1, "\x1b[2J\n"]}
    text = json_text(doc)
    assert json.loads(text) == doc
    assert "café" in text and printable(text) == text.replace("\n", "\\n")
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert json_text(doc, ascii_out).isascii()
