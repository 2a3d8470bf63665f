"""recorder.pam.user_side_ran: a login whose user ran nothing (a port
forwarding, ssh -N) is told from one that ran a shell, a command or the
SFTP server, on session files laid out as sshd's logins are (process
trees seen in real logins on OpenSSH 9.2: tests/kernel/test_pam_sshd.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srec_util import HEADER, write_session
from test_model import exec_, fork

from recorder.pam import user_side_ran

PRIV = 500          # sshd's [priv] process: the session's leader


def session(tmp_path: Path, records: list[Any]) -> Path:
    p = tmp_path / "login.srec"
    write_session(p, records, header={**HEADER, "leader_pid": PRIV})
    return p


def motd(start: int) -> list[Any]:
    """pam_motd: [priv] forks sh, which execs itself, and run-parts under it."""
    return [fork(1, PRIV, start, ppid=1), exec_(2, start, b"/bin/sh", [b"sh"], PRIV),
            fork(3, start, start + 1, ppid=PRIV),
            exec_(4, start + 1, b"/usr/bin/run-parts", [b"run-parts"], start)]


def test_a_forwarding_without_a_shell_ran_nothing(tmp_path: Path) -> None:
    # motd's programs, sshd's user child (never execs), and the close hook.
    recs = [*motd(600), fork(5, PRIV, 700, ppid=1),
            fork(9, PRIV, 800, ppid=1),
            exec_(10, 800, b"/usr/local/bin/sessrec", [b"sessrec", b"pam"], PRIV)]
    assert not user_side_ran(session(tmp_path, recs))


def test_a_shell_or_a_command_ran(tmp_path: Path) -> None:
    recs = [*motd(600), fork(5, PRIV, 700, ppid=1), fork(6, 700, 701, ppid=PRIV),
            exec_(7, 701, b"/bin/bash", [b"-bash"], 700)]
    assert user_side_ran(session(tmp_path, recs))


def test_a_failed_exec_alone_is_not_a_program_run(tmp_path: Path) -> None:
    recs = [fork(5, PRIV, 700, ppid=1), fork(6, 700, 701, ppid=PRIV),
            exec_(7, 701, b"/bin/nosuch", [b"x"], 700, ret=-2)]
    assert not user_side_ran(session(tmp_path, recs))
