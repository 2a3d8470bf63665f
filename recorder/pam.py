"""What `sessrec pam` learns about a login (docs/NODE.md).

pam_exec.so runs the hook as a child of the process that called
pam_open_session(): under OpenSSH's privilege separation, sshd's `[priv]`
monitor of the connection, which later forks the user's process and so is
the ancestor of the shell. That process (the hook's parent) is the one put
into the session cgroup.

The environment is untrusted. pam_exec puts the PAM environment first, and a
user may add to it (pam_env's user_readenv reads ~/.pam_environment, after
our line at open_session but before close_session). So:
- a PAM_* variable set twice is refused, whichever copy a reader would see;
- every value is bounded, UTF-8 and free of control characters;
- the uid comes from the password database, not from the environment;
- the session to end at close_session is found from the process's own
  cgroup, not from anything in the environment;
- the client's address and port come from the [priv] process's TCP socket,
  not from SSH_CONNECTION.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessrec.errors import UsageError

OPEN, CLOSE = "open_session", "close_session"
MAX_VALUE = 1024            # bytes of any PAM value we keep
MAX_USER = 256
TCP_ESTABLISHED = "01"      # st column of /proc/net/tcp


class PamEnvError(UsageError):
    """The PAM environment is missing something, or is not to be trusted."""


@dataclass(frozen=True)
class PamEnv:
    type: str               # PAM_TYPE: open_session or close_session
    user: str               # PAM_USER
    service: str            # PAM_SERVICE
    rhost: str | None       # PAM_RHOST
    tty: str | None         # PAM_TTY ("ssh" for every sshd login at open_session)
    ruser: str | None       # PAM_RUSER


def parse_environ(raw: bytes) -> PamEnv:
    """The PAM items of a NUL-separated environment (/proc/self/environ)."""
    seen: dict[str, str] = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if not sep or not key.startswith(b"PAM_"):
            continue
        name = key.decode("ascii", "replace")
        if name in seen:
            raise PamEnvError(f"{name} is set twice in the environment: refusing it")
        seen[name] = _value(name, value)
    ptype = seen.get("PAM_TYPE")
    if ptype is None:
        raise PamEnvError("no PAM_TYPE in the environment: 'sessrec pam' is run by "
                          "pam_exec.so in a session line (docs/NODE.md)")
    if ptype not in (OPEN, CLOSE):
        raise PamEnvError(f"PAM_TYPE is {ptype!r}: 'sessrec pam' belongs in the session "
                          "phase ('session ... pam_exec.so ...')")
    user = seen.get("PAM_USER") or ""
    if not user:
        raise PamEnvError("no PAM_USER in the environment")
    if len(user.encode()) > MAX_USER:
        raise PamEnvError(f"PAM_USER is longer than {MAX_USER} bytes")
    service = seen.get("PAM_SERVICE") or ""
    if not service:
        raise PamEnvError("no PAM_SERVICE in the environment")
    return PamEnv(type=ptype, user=user, service=service, rhost=seen.get("PAM_RHOST") or None,
                  tty=seen.get("PAM_TTY") or None, ruser=seen.get("PAM_RUSER") or None)


def _value(name: str, value: bytes) -> str:
    if len(value) > MAX_VALUE:
        raise PamEnvError(f"{name} is longer than {MAX_VALUE} bytes")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise PamEnvError(f"{name} is not UTF-8") from None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise PamEnvError(f"{name} holds a control character")
    return text


@dataclass(frozen=True)
class Peer:
    """One end-to-end TCP connection, as the kernel has it."""

    remote_addr: str
    remote_port: int
    local_addr: str
    local_port: int


def tcp_peer(pid: int, proc: Path = Path("/proc")) -> Peer | None:
    """The established TCP connection among pid's file descriptors (sshd's
    connection to the client), or None when there is none or more than one."""
    inodes = set(_socket_inodes(proc / str(pid) / "fd"))
    found: list[Peer] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / str(pid) / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != TCP_ESTABLISHED or not f[9].isdigit():
                continue
            if int(f[9]) in inodes:
                local, remote = _endpoint(f[1]), _endpoint(f[2])
                if local and remote:
                    found.append(Peer(remote[0], remote[1], local[0], local[1]))
    return found[0] if len(found) == 1 else None


def _socket_inodes(fd_dir: Path) -> Iterable[int]:
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            yield int(target[8:-1])


def _endpoint(field: str) -> tuple[str, int] | None:
    """'0100007F:9B44' (IPv4) or 32 hex digits:port (IPv6) -> (address, port).
    The kernel prints each 32-bit word of the address in host byte order."""
    addr_hex, _, port_hex = field.partition(":")
    try:
        raw = bytes.fromhex(addr_hex)
        port = int(port_hex, 16)
    except ValueError:
        return None
    if len(raw) not in (4, 16):
        return None
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(raw)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), port


@dataclass(frozen=True)
class Login:
    """What the daemon is told about a login at open_session."""

    pid: int
    user: str
    uid: int
    service: str
    rhost: str | None
    tty: str | None
    peer: Peer | None

    def to_wire(self) -> dict[str, Any]:
        """The `login` map of the control protocol's start op (docs/CONTROL.md)."""
        return {
            "user": self.user, "uid": self.uid, "rhost": self.rhost, "tty": self.tty,
            "service": self.service,
            "remote_addr": self.peer.remote_addr if self.peer else None,
            "remote_port": self.peer.remote_port if self.peer else None,
        }


def login_of(env: PamEnv, pid: int, proc: Path = Path("/proc")) -> Login:
    """The login whose process is pid, with the user checked against the
    password database."""
    try:
        pw = pwd.getpwnam(env.user)
    except KeyError:
        raise PamEnvError(f"PAM_USER {env.user!r} is not a user of this system") from None
    return Login(pid=pid, user=pw.pw_name, uid=pw.pw_uid, service=env.service,
                 rhost=env.rhost, tty=env.tty, peer=tcp_peer(pid, proc))


def session_of(pid: int, cgroup_root: str, proc: Path = Path("/proc")) -> str | None:
    """The session id of the session cgroup pid is in (its directory's name
    under <cgroup_root>, as the daemon makes them), or None."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            parts = [p for p in line[3:].split("/") if p]
            root = [p for p in cgroup_root.split("/") if p]
            if len(parts) > len(root) and parts[:len(root)] == root:
                return parts[len(root)]
    return None


def tty_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The controlling terminal of pid as PAM names ttys ("pts/3", "tty1"),
    or None. PAM_TTY is "ssh" at sshd's open_session (the pty is made after
    it): the daemon learns the login's tty from its processes instead."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        tty_nr = int(stat[stat.rindex(")") + 2:].split()[4])
    except (OSError, ValueError, IndexError):
        return None
    major = (tty_nr >> 8) & 0xFFF
    minor = (tty_nr & 0xFF) | ((tty_nr >> 12) & 0xFFF00)
    if tty_nr == 0:
        return None
    if 136 <= major < 144:              # UNIX98 ptys: 8 majors of 256 minors
        return f"pts/{(major - 136) * 256 + minor}"
    if major == 4:
        return f"tty{minor}" if minor < 64 else f"ttyS{minor - 64}"
    return f"{major}:{minor}"


def user_side_ran(path: str | os.PathLike[str]) -> bool:
    """Whether the user's side of a recorded sshd login ran any program.

    sshd's [priv] process (the session's leader) forks the user's child,
    which never execs: it runs the shell, the command or the SFTP server as
    its own child. The PAM modules that run programs (pam_motd's run-parts,
    this hook at close_session) are children of the leader that exec
    themselves. So the user ran something exactly when a grandchild of the
    leader, through a child that did not exec, exec'd successfully. A port
    forwarding without a shell (ssh -N) runs nothing there: it is not a
    session, and the daemon removes its file."""
    from replay.model import ProcessModel
    from replay.reader import open_session

    with open_session(path, strict=False) as session:
        model = ProcessModel.build(session, index=False)
        leader = session.header["leader_pid"]
    for p in model.processes:
        q = p.parent
        if (q is not None and q.pid != leader and q.ppid == leader and not q.execs
                and any(e.ret == 0 for e in p.execs)):
            return True
    return False
