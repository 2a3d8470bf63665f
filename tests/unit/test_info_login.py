"""`sessrec info` on a PAM login's file: the header's login map, with the
terminal the daemon learned (the trailer's tty), in the text and the JSON."""

from __future__ import annotations

import re
from pathlib import Path

from srec_util import HEADER, TRAILER, write_session

from replay.info import format_info, session_info

LOGIN = {"user": "alice", "uid": 1000, "rhost": "203.0.113.9", "tty": "ssh",
         "service": "sshd", "remote_addr": "203.0.113.9", "remote_port": 51234}


def test_info_shows_the_login(tmp_path: Path) -> None:
    p = tmp_path / "login.srec"
    write_session(p, [], header={**HEADER, "kind": "pam", "login": LOGIN},
                  trailer={**TRAILER, "tty": "pts/3"})
    info = session_info(p)
    assert info["login"] == {**LOGIN, "terminal": "pts/3"}
    assert re.search(r"^login +alice from 203\.0\.113\.9 port 51234, service sshd, tty pts/3$",
                     format_info(info), re.M)


def test_a_login_without_a_terminal_and_a_file_without_a_login(tmp_path: Path) -> None:
    p = tmp_path / "cmd.srec"
    write_session(p, [], header={**HEADER, "kind": "pam",
                                 "login": {"user": "bob\x1b[2J", "tty": "ssh"}})
    text = format_info(session_info(p))
    assert re.search(r"^login +bob\\x1b\[2J, tty ssh$", text, re.M)  # escaped; PAM_TTY as given
    q = tmp_path / "plain.srec"
    write_session(q, [])
    assert "login" not in session_info(q) and "\nlogin " not in format_info(session_info(q))
