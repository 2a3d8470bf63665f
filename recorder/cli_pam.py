"""`sessrec pam`: the PAM session hook, run by pam_exec.so (docs/NODE.md).

At open_session it asks the daemon to move the login's process (the hook's
parent: sshd's [priv] monitor) into a new session cgroup, and waits for the
answer, so that nothing of the login runs unrecorded. At close_session it
tells the daemon that the login closed; the session itself ends when its
last process has exited (or `linger` after the close).

pam_exec sends the hook's output to /dev/null, so every outcome is one line
to the system log (syslog, facility authpriv), and to stderr for a person
running it by hand. Exit 0: recorded, or not to be recorded (a user left out
by [users]). Exit non-zero: the login is not recorded; with `required` in
the PAM line, PAM then refuses the login.
"""

from __future__ import annotations

import argparse
import os
import signal
import syslog
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from recorder import pam
from sessrec.cli import ExitStatus, Streams, add_command
from sessrec.errors import EnvironmentProblem, SessrecError, UsageError

DEFAULT_TIMEOUT = 10.0


class HookTimeout(SessrecError):
    """The whole hook took longer than --timeout."""


def register(sub: Any) -> None:
    p = add_command(
        sub, "pam",
        help="the PAM session hook: record each login (run by pam_exec.so)",
        description="Run by pam_exec.so in a service's session phase. At open_session, "
        "ask the sessrec daemon to put the login's process into a new session cgroup "
        "before PAM returns, so that the login is recorded from its first program; at "
        "close_session, tell the daemon the login closed. Reads PAM_TYPE, PAM_USER, "
        "PAM_SERVICE, PAM_RHOST and PAM_TTY from the environment, and distrusts them. "
        "Every outcome is one line in the system log (authpriv). Exits non-zero when "
        "the login cannot be recorded: with 'required', PAM then refuses the login.",
        example_lines=(
            "# in /etc/pam.d/sshd, right after pam_loginuid.so:",
            "session optional pam_exec.so /usr/local/bin/sessrec pam",
            "session required pam_exec.so /usr/local/bin/sessrec pam   # refuse unrecorded logins",
        ),
        notes="See docs/NODE.md for enabling recording on a node, step by step.",
        func=run,
    )
    p.add_argument("--config", metavar="FILE",
                   help="the daemon's config, for its control socket (default: "
                   "/etc/sessrec/sessrec.toml when it exists)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"give up (and fail) after SECONDS (default {DEFAULT_TIMEOUT:g})")


class _Log:
    """One line per outcome, to syslog (authpriv) and stderr."""

    def __init__(self, io: Streams) -> None:
        self.io = io
        syslog.openlog("sessrec", syslog.LOG_PID, syslog.LOG_AUTHPRIV)

    def __call__(self, priority: int, message: str) -> None:
        syslog.syslog(priority, message)
        print(f"sessrec pam: {message}", file=self.io.stderr)


def _alarm(_sig: int, _frame: FrameType | None) -> None:
    raise HookTimeout("gave up waiting (--timeout): the daemon did not answer in time")


def run(args: argparse.Namespace, io: Streams) -> int:
    log = _Log(io)
    who = "a login"
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(args.timeout, 0.1))
    try:
        env = pam.parse_environ(Path("/proc/self/environ").read_bytes())
        who = f"the login of {env.user!r} (service {env.service!r})"
        pid = os.getppid()
        settings = _settings(args.config)
        if env.type == pam.OPEN:
            return _open(env, pid, settings, log)
        return _close(env, pid, settings, log)
    except SessrecError as e:
        log(syslog.LOG_ERR, f"{who} is NOT recorded: {e}")
        return e.exit_status
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _open(env: pam.PamEnv, pid: int, settings: Settings, log: _Log) -> int:
    login = pam.login_of(env, pid)
    reply = _start(settings, login)
    where = f"from {login.peer.remote_addr} port {login.peer.remote_port}" if login.peer \
        else f"from {login.rhost or 'an unknown host'}"
    if reply.get("excluded"):
        log(syslog.LOG_INFO, f"login of {login.user} (uid {login.uid}) {where} not recorded: "
            f"{reply.get('reason', 'left out by [users] in the config')}")
        return ExitStatus.OK
    log(syslog.LOG_INFO, f"recording login of {login.user} (uid {login.uid}, pid {pid}) "
        f"{where}, service {login.service}: session {reply.get('session')} "
        f"in {reply.get('file')}")
    return ExitStatus.OK


def _close(env: pam.PamEnv, pid: int, settings: Settings, log: _Log) -> int:
    session = pam.session_of(pid, _cgroup_root(settings))
    if session is None:
        log(syslog.LOG_INFO, f"close of the login of {env.user} (pid {pid}): it was not "
            "recorded")
        return ExitStatus.OK
    _end(settings, session)
    log(syslog.LOG_INFO, f"login of {env.user} closed (pid {pid}): session {session} is "
        "recorded until its last process exits")
    return ExitStatus.OK


# --- the daemon's side. Interim, until the daemon's config and client
# modules land (docs/CONTROL.md): the two settings the hook needs, and one
# JSON-lines exchange on the control socket.

DEFAULT_CONFIG = "/etc/sessrec/sessrec.toml"


@dataclass(frozen=True)
class Settings:
    control_socket: str = "/run/sessrec/control.sock"
    cgroup_root: str = "sessrec"


def _settings(path: str | None) -> Settings:
    import tomllib
    if path is None and not os.path.exists(DEFAULT_CONFIG):
        return Settings()
    path = path or DEFAULT_CONFIG
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"cannot read the config {path}: {e}") from None
    d = Settings()
    return Settings(control_socket=str(doc.get("control_socket", d.control_socket)),
                    cgroup_root=str(doc.get("cgroup_root", d.cgroup_root)))


def _cgroup_root(settings: Settings) -> str:
    return settings.cgroup_root


def _ask(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    import json
    import socket
    path = settings.control_socket
    if not os.path.exists(path):
        raise EnvironmentProblem(f"sessrec daemon is not running (no socket at {path})")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            s.sendall(json.dumps({"v": 1, **request}).encode() + b"\n")
            data = s.makefile("rb").readline(1 << 20)
        except OSError as e:
            raise EnvironmentProblem(f"sessrec daemon at {path}: {e.strerror or e}") from None
    try:
        reply = json.loads(data)
    except ValueError:
        raise EnvironmentProblem(f"sessrec daemon at {path} gave no answer") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        err = reply.get("error") if isinstance(reply, dict) else None
        raise EnvironmentProblem(f"sessrec daemon refused: {err or reply!r}")
    return reply


def _start(settings: Settings, login: pam.Login) -> dict[str, Any]:
    return _ask(settings, {"op": "start", "pid": login.pid, "kind": "pam",
                           "login": login.to_wire()})


def _end(settings: Settings, session: str) -> None:
    _ask(settings, {"op": "end", "session": session, "reason": "close_session"})
