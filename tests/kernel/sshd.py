"""A private OpenSSH server for the login tests (issue 9), and its users.

Everything lives under one temporary directory and a PAM service file of
its own: the machine's /etc/ssh and /etc/pam.d/sshd are never touched.

- OpenSSH 9.2 names its PAM service after its program, so a copy of sshd
  run as <dir>/sessrec-e2e-XXXX reads /etc/pam.d/sessrec-e2e-XXXX (9.2 has
  no PAMServiceName). It is run by absolute path: sshd re-executes itself.
- sshd reads AuthorizedKeysFile as the user, even with StrictModes no: every
  directory on the way is o+x and each key file o+r (so not under pytest's
  0700 tmp_path).
- /run/sshd (privilege separation) is made when missing, and removed after.
- scp speaks SFTP: the config names the sftp-server subsystem.
- PAM modules log through syslog(3), to /dev/log. When nothing listens there
  (no journald or rsyslog on this machine), SyslogCapture binds it for the
  test and removes it after; otherwise the lines go to the real system log.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
PAM_DIR = Path("/etc/pam.d")
DEV_LOG = "/dev/log"


def free_port() -> int:
    """A loopback port nobody listens on now (never 22)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(*cmd: str | os.PathLike[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def kill_user_processes(uid: int) -> None:
    """SIGKILLs, by pid, the processes left running as a test user."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if d.stat().st_uid == uid:
                os.kill(int(d.name), 9)
        except (OSError, ProcessLookupError):
            pass


@dataclass
class User:
    name: str
    uid: int
    home: Path
    key: Path           # the client's private key


class SyslogCapture:
    """Collects what is sent to /dev/log while the test runs, when nothing
    else listens there."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        if os.path.exists(DEV_LOG):
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(DEV_LOG)
        os.chmod(DEV_LOG, 0o666)
        s.settimeout(0.2)
        self._sock = s
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines.append(data.decode("utf-8", "replace"))

    def stop(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            if self._thread is not None:
                self._thread.join(timeout=2)
            s.close()
            with _suppress():
                os.unlink(DEV_LOG)

    def text(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def _suppress() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass


@dataclass
class Sshd:
    """A private sshd on a loopback port with its own PAM service."""

    dir: Path
    service: str
    port: int = field(default_factory=free_port)
    users: list[User] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    made_run_sshd: bool = False
    syslog: SyslogCapture = field(default_factory=SyslogCapture)

    @property
    def pam_file(self) -> Path:
        return PAM_DIR / self.service

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def binary(self) -> Path:
        return self.dir / self.service

    def add_user(self, tag: str) -> User:
        name = f"sre2e{tag}{secrets.token_hex(3)}"
        home = self.dir / "home" / name
        home.parent.mkdir(mode=0o755, exist_ok=True)
        _run("useradd", "-M", "-N", "-g", "users", "-d", str(home), "-s", "/bin/bash", name)
        pw = pwd.getpwnam(name)
        home.mkdir(mode=0o755)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        key = self.dir / f"id_{name}"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key))
        auth = self.dir / "keys" / name
        auth.write_text(Path(f"{key}.pub").read_text())
        auth.chmod(0o644)
        u = User(name=name, uid=pw.pw_uid, home=home, key=key)
        self.users.append(u)
        return u

    def write_pam(self, *hook_lines: str) -> None:
        """The service's PAM file: Debian's sshd stack, with hook_lines right
        after pam_loginuid (where docs/NODE.md tells an administrator to put
        the sessrec line)."""
        out: list[str] = []
        placed = False
        for line in Path("/etc/pam.d/sshd").read_text().splitlines():
            out.append(line)
            if not line.lstrip().startswith("#") and "pam_loginuid.so" in line:
                out.extend(hook_lines)
                placed = True
        if not placed:
            raise RuntimeError("/etc/pam.d/sshd has no pam_loginuid line to put the hook after")
        self.pam_file.write_text("\n".join(out) + "\n")

    def start(self) -> None:
        (self.dir / "keys").mkdir(mode=0o755, exist_ok=True)
        if not Path("/run/sshd").exists():
            os.mkdir("/run/sshd", 0o755)
            self.made_run_sshd = True
        hostkey = self.dir / "host_ed25519"
        if not hostkey.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey))
        shutil.copy2(SSHD, self.binary)
        allowed = " ".join(u.name for u in self.users)
        config = self.dir / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {hostkey}",
            f"PidFile {self.dir}/sshd.pid",
            f"AuthorizedKeysFile {self.dir}/keys/%u",
            "UsePAM yes",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin no",
            f"AllowUsers {allowed}",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "AllowTcpForwarding yes",
            "LogLevel VERBOSE",
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]))
        self.syslog.start()
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def ssh_argv(self, user: User, *args: str, tty: bool = False) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-i", str(user.key), "-p", str(self.port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
                *(["-tt"] if tty else ["-T"]), f"{user.name}@127.0.0.1", *args]

    def ssh(self, user: User, *args: str, input: bytes | None = None, tty: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.ssh_argv(user, *args, tty=tty), input=input,
                              capture_output=True, timeout=timeout)

    def scp(self, user: User, src: str | os.PathLike[str], dest: str,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["scp", "-F", "/dev/null", "-i", str(user.key), "-P", str(self.port),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", str(src),
             f"{user.name}@127.0.0.1:{dest}"],
            capture_output=True, timeout=timeout)

    def sftp(self, user: User, batch: str, timeout: float = 60
             ) -> subprocess.CompletedProcess[bytes]:
        """An interactive sftp session, its commands read from a batch file."""
        return subprocess.run(
            ["sftp", "-F", "/dev/null", "-i", str(user.key), "-P", str(self.port),
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-b", "-",
             f"{user.name}@127.0.0.1"],
            input=batch.encode(), capture_output=True, timeout=timeout)

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self) -> None:
        self.stop()
        self.syslog.stop()
        with _suppress():
            self.pam_file.unlink()
        for u in self.users:
            # Logins may linger for a moment after the client returns.
            for _ in range(50):
                r = subprocess.run(["userdel", u.name], capture_output=True)
                if r.returncode != 8:       # 8: the user is logged in
                    break
                kill_user_processes(u.uid)
                time.sleep(0.1)
        self.users.clear()
        if self.made_run_sshd:
            with _suppress():
                os.rmdir("/run/sshd")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_sshd(user_tags: Sequence[str], *pam_lines: str) -> Iterator[Sshd]:
    """A started private sshd with one user per tag and pam_lines after
    pam_loginuid in its PAM service; everything removed afterwards."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="sessrec-e2e-"))
    d.chmod(0o755)
    srv = Sshd(dir=d, service=f"sessrec-e2e-{secrets.token_hex(3)}")
    try:
        (d / "keys").mkdir(mode=0o755)
        for tag in user_tags:
            srv.add_user(tag)
        srv.write_pam(*pam_lines)
        srv.start()
        yield srv
    finally:
        srv.cleanup()
