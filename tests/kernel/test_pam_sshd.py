"""Logins through a real private OpenSSH server with `sessrec pam` in its
PAM stack (issue 9; tests/kernel/sshd.py builds the server). Root."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sshd
from krec import SESSREC

pytestmark = pytest.mark.kernel

SUITE_LOCK = "/tmp/sessrec-suite.lock"


@pytest.fixture(scope="module", autouse=True)
def _machine() -> Iterator[None]:
    """The tests bind /dev/log when nothing listens there and add users:
    machine-wide state, so under the suite lock (unless tests/run holds it)."""
    if shutil.which("ssh") is None or not Path(sshd.SSHD).exists():
        pytest.skip("needs openssh-server and openssh-client (./setup.sh installs them)")
    with open(SUITE_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass        # held: by tests/run around this whole run, or by a bench
        yield


def hook_line(control: str, config: Path) -> str:
    return f"session {control} pam_exec.so {SESSREC} pam --config {config}"


@pytest.mark.parametrize("control", ["optional", "required"])
def test_daemon_down(control: str, tmp_path: Path) -> None:
    """No daemon: with optional the login goes on, with required it is
    refused (sshd ends it before any shell); either way the system log has
    the hook's one-line reason and pam_exec's exit code."""
    config = tmp_path / "sessrec.toml"
    config.write_text(f'control_socket = "{tmp_path}/none.sock"\n')
    with sshd.private_sshd(["a"], hook_line(control, config)) as srv:
        user = srv.users[0]
        r = srv.ssh(user, "echo logged-in")
        if control == "optional":
            assert r.returncode == 0 and r.stdout == b"logged-in\n", r.stderr
        else:
            assert r.returncode != 0 and b"logged-in" not in r.stdout
            assert "pam_open_session(): System error" in srv.log.read_text()
        if srv.syslog.active:
            log = srv.syslog.text()
            assert f"the login of '{user.name}' (service '{srv.service}') is NOT recorded: " \
                f"sessrec daemon is not running (no socket at {tmp_path}/none.sock)" in log
            assert "failed: exit code 3" in log     # pam_exec's own line
