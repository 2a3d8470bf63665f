"""`sessrec pam`'s reading of an untrusted PAM environment and of /proc
(recorder/pam.py): no root needed."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recorder import pam


def env(**kv: str | bytes) -> bytes:
    base: dict[str, str | bytes] = {
        "PAM_TYPE": "open_session", "PAM_USER": "root", "PAM_SERVICE": "sshd",
        "PAM_RHOST": "10.0.0.7", "PAM_TTY": "ssh", "PATH": "/bin",
    }
    base.update(kv)
    out = []
    for k, v in base.items():
        out.append(k.encode() + b"=" + (v if isinstance(v, bytes) else v.encode()))
    return b"\0".join(out) + b"\0"


def test_parses_the_pam_items() -> None:
    e = pam.parse_environ(env())
    assert e == pam.PamEnv(type="open_session", user="root", service="sshd",
                           rhost="10.0.0.7", tty="ssh", ruser=None)
    assert pam.parse_environ(env(PAM_TYPE="close_session", PAM_RHOST="")).rhost is None


def test_a_pam_variable_set_twice_is_refused() -> None:
    raw = env() + b"PAM_USER=alice\0"
    with pytest.raises(pam.PamEnvError, match="PAM_USER is set twice"):
        pam.parse_environ(raw)


@pytest.mark.parametrize("kv, message", [
    ({"PAM_TYPE": "auth"}, "belongs in the session phase"),
    ({"PAM_TYPE": "open_session\nx"}, "PAM_TYPE holds a control character"),
    ({"PAM_USER": ""}, "no PAM_USER"),
    ({"PAM_USER": "a" * 300}, "PAM_USER is longer than 256 bytes"),
    ({"PAM_RHOST": "h" * 2000}, "PAM_RHOST is longer than 1024 bytes"),
    ({"PAM_RHOST": b"\xff\xfe"}, "PAM_RHOST is not UTF-8"),
    ({"PAM_TTY": "pts/0\x1b[2J"}, "PAM_TTY holds a control character"),
    ({"PAM_SERVICE": ""}, "no PAM_SERVICE"),
])
def test_bad_values_get_one_clear_reason(kv: dict[str, str | bytes], message: str) -> None:
    with pytest.raises(pam.PamEnvError, match=message):
        pam.parse_environ(env(**kv))


def test_no_pam_type_says_how_the_hook_is_run() -> None:
    with pytest.raises(pam.PamEnvError, match=r"run by pam_exec\.so"):
        pam.parse_environ(b"PATH=/bin\0HOME=/root\0")


def test_the_uid_comes_from_the_password_database() -> None:
    me = pwd.getpwuid(os.getuid())
    login = pam.login_of(pam.parse_environ(env(PAM_USER=me.pw_name)), os.getpid())
    assert (login.user, login.uid) == (me.pw_name, me.pw_uid)
    with pytest.raises(pam.PamEnvError, match="is not a user of this system"):
        pam.login_of(pam.parse_environ(env(PAM_USER="no-such-user-xq")), os.getpid())


CLIENT = ("import socket, sys; c = socket.create_connection((sys.argv[1], int(sys.argv[2])));"
          " sys.stdin.read()")


def _peer_of_real_connection(family: socket.AddressFamily, host: str) -> None:
    """A real TCP connection from a child process, found through this
    process's /proc entries, as the hook finds sshd's connection through
    the [priv] process."""
    with socket.socket(family) as srv:
        try:
            srv.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} on this machine")
        srv.listen(1)
        assert pam.tcp_peer(os.getpid()) is None     # a listener is no connection
        port = srv.getsockname()[1]
        client = subprocess.Popen([sys.executable, "-c", CLIENT, host, str(port)],
                                  stdin=subprocess.PIPE)
        try:
            a, _ = srv.accept()
            with a:
                peer = pam.tcp_peer(os.getpid())
                assert peer is not None
                assert (peer.remote_addr, peer.remote_port) == a.getpeername()[:2]
                assert (peer.local_addr, peer.local_port) == a.getsockname()[:2]
                with socket.create_connection((host, port)) as second:
                    b, _ = srv.accept()
                    with b:
                        # Ours and the child's: more than one, so no answer.
                        assert second and pam.tcp_peer(os.getpid()) is None
        finally:
            assert client.stdin is not None
            client.stdin.close()
            client.wait()


def test_the_peer_of_a_real_loopback_connection() -> None:
    _peer_of_real_connection(socket.AF_INET, "127.0.0.1")


def test_the_peer_of_an_ipv6_connection() -> None:
    _peer_of_real_connection(socket.AF_INET6, "::1")


def fake_proc(tmp_path: Path, pid: int, net: str, inodes: list[int]) -> Path:
    d = tmp_path / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "net").mkdir()
    for i, ino in enumerate(inodes):
        (d / "fd" / str(i)).symlink_to(f"socket:[{ino}]")
    (d / "fd" / "9").symlink_to("/dev/null")
    head = "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode\n"
    (d / "net" / "tcp").write_text(head + net)
    return tmp_path


def test_mapped_ipv4_and_listeners_in_a_fake_proc(tmp_path: Path) -> None:
    net = (
        # a listener (state 0A) among our sockets: not the connection
        "   0: 0100007F:0016 00000000:0000 0A 0:0 0:0 0 0 0 111 1\n"
        # the connection: 127.0.0.1:22 <- 10.1.2.3:40000
        "   1: 0100007F:0016 0302010A:9C40 01 0:0 0:0 0 0 0 222 1\n"
        # someone else's connection
        "   2: 0100007F:0016 0302010A:9C41 01 0:0 0:0 0 0 0 333 1\n"
        "garbage line\n"
    )
    proc = fake_proc(tmp_path, 42, net, [111, 222])
    assert pam.tcp_peer(42, proc) == pam.Peer("10.1.2.3", 40000, "127.0.0.1", 22)
    v6 = tmp_path / "42" / "net" / "tcp6"
    v6.write_text("head\n   0: 0000000000000000FFFF00000100007F:0016 "
                  "0000000000000000FFFF00000B0A0A0A:1F90 01 0:0 0:0 0 0 0 444 1\n")
    (tmp_path / "42" / "net" / "tcp").write_text("head\n")
    (tmp_path / "42" / "fd" / "5").symlink_to("socket:[444]")
    assert pam.tcp_peer(42, proc) == pam.Peer("10.10.10.11", 8080, "127.0.0.1", 22)
    assert pam.tcp_peer(43, proc) is None


def test_the_session_comes_from_the_process_cgroup(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "cgroup").write_text("1:name=systemd:/\n0::/sessrec/abc-123\n")
    assert pam.session_of(7, "sessrec", tmp_path) == "abc-123"
    assert pam.session_of(7, "other", tmp_path) is None
    (tmp_path / "7" / "cgroup").write_text("0::/sessrec\n")
    assert pam.session_of(7, "sessrec", tmp_path) is None
    (tmp_path / "7" / "cgroup").write_text("0::/a/b/sessrec/s1/sub\n")
    assert pam.session_of(7, "a/b/sessrec", tmp_path) == "s1"
    assert pam.session_of(8, "sessrec", tmp_path) is None


def test_the_tty_of_a_process_on_a_pty() -> None:
    """A process whose controlling terminal is a new pty (setsid -c), as a
    login shell's is: tty_of names it as PAM would (pts/N)."""
    master, slave = os.openpty()
    try:
        name = os.ttyname(slave).removeprefix("/dev/")
        p = subprocess.Popen(["setsid", "-c", "sleep", "10"], stdin=slave)
        try:
            for _ in range(200):
                if pam.tty_of(p.pid) == name:
                    break
                time.sleep(0.01)
            assert pam.tty_of(p.pid) == name
        finally:
            p.kill()
            p.wait()
    finally:
        os.close(master)
        os.close(slave)
    assert pam.tty_of(os.getpid()) != name


def test_tty_numbers_in_a_fake_proc(tmp_path: Path) -> None:
    def stat(tty_nr: int) -> None:
        (tmp_path / "5").mkdir(exist_ok=True)
        (tmp_path / "5" / "stat").write_text(f"5 (a) b) S 1 5 5 {tty_nr} 5 0 0\n")
    for nr, name in (((136 << 8) | 3, "pts/3"), ((137 << 8) | 1, "pts/257"),
                     ((4 << 8) | 1, "tty1"), ((4 << 8) | 64, "ttyS0"), (0, None),
                     ((0x300 << 12) | (136 << 8) | 0x10, "pts/784")):
        stat(nr)
        assert pam.tty_of(5, tmp_path) == name, nr
    assert pam.tty_of(6, tmp_path) is None
