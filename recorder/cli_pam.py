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
from pathlib import Path
from types import FrameType
from typing import Any

from recorder import pam
from sessrec import config, control
from sessrec.cli import ExitStatus, Streams, add_command
from sessrec.errors import SessrecError

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
    failed = "a login is NOT recorded"
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(args.timeout, 0.1))
    try:
        env = pam.parse_environ(Path("/proc/self/environ").read_bytes())
        who = f"the login of {env.user!r} (service {env.service!r})"
        failed = f"{who} is NOT recorded" if env.type == pam.OPEN \
            else f"the close of {who} did not reach the daemon"
        pid = os.getppid()
        cfg = config.load(args.config)
        if env.type == pam.OPEN:
            return _open(env, pid, cfg, log, args.timeout)
        return _close(env, pid, cfg, log, args.timeout)
    except SessrecError as e:
        log(syslog.LOG_ERR, f"{failed}: {e}")
        return e.exit_status
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _open(env: pam.PamEnv, pid: int, cfg: config.Config, log: _Log, timeout: float) -> int:
    login = pam.login_of(env, pid)
    reply = control.request("start", socket_path=cfg.control_socket, timeout=timeout,
                            pid=pid, kind="pam", login=login.to_wire())
    where = f"from {login.peer.remote_addr} port {login.peer.remote_port}" if login.peer \
        else f"from {login.rhost or 'an unknown host'}"
    if not reply.get("recorded"):
        log(syslog.LOG_INFO, f"login of {login.user} (uid {login.uid}) {where} not recorded: "
            f"{reply.get('reason')}")
        return ExitStatus.OK
    session, file = str(reply.get("session")), str(reply.get("file"))
    log(syslog.LOG_INFO, f"recording login of {login.user} (uid {login.uid}, pid {pid}) "
        f"{where}, service {login.service}: session {session} in {file}")
    _audit_record("sessrec-start", session, file, pid, {"kind": "pam"})
    return ExitStatus.OK


def _audit_record(op: str, session: str, file: str, pid: int,
                  fields: dict[str, object]) -> None:
    """A start or end record in the audit trail (docs/AUDIT.md), sent from
    a grandchild of the hook: the hook is a child of the login's process, in
    its audit session, so `ausearch --session N` finds the record with
    sshd's records of the login (the daemon is in no login's audit session).
    Detached, so that the login waits neither for the netlink library's
    import (about 0.5 s here) nor for auditd. auditd not running is no
    error; another failure is one line in the system log."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        if os.fork() == 0:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            from recorder import audit
            answer = audit.AuditSession(session, file, pid).note(
                op, {"leader_pid": pid, **fields})
            quiet = ("not running", "disabled")     # no auditd here: nothing to say
            reason = answer["reason"]
            if not answer["sent"] and reason and not any(q in reason for q in quiet):
                syslog.syslog(syslog.LOG_WARNING, f"session {session}: no {op} audit "
                              f"record: {reason}")
    finally:
        os._exit(0)


def _close(env: pam.PamEnv, pid: int, cfg: config.Config, log: _Log, timeout: float) -> int:
    session = pam.session_of(pid, cfg.cgroup_root)
    if session is None:
        log(syslog.LOG_INFO, f"close of the login of {env.user} (pid {pid}): it was not "
            "recorded")
        return ExitStatus.OK
    # wait=False: sshd's close must not wait for the user's leftover
    # processes; the daemon ends the session when they are gone, or after
    # `linger`.
    file = next((str(s.get("file")) for s in control.request(
        "list", socket_path=cfg.control_socket, timeout=timeout)["sessions"]
        if s.get("session") == session), "?")
    control.request("end", socket_path=cfg.control_socket, timeout=timeout,
                    session=session, reason="pam-close", wait=False)
    _audit_record("sessrec-end", session, file, pid, {"kind": "pam",
                                                           "end_reason": "pam-close"})
    log(syslog.LOG_INFO, f"login of {env.user} closed (pid {pid}): session {session} is "
        f"recorded until its last process exits (at most {cfg.linger:g} s more)")
    return ExitStatus.OK
