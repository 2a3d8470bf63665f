"""Every SSH login recorded, end to end (issue 9): a private OpenSSH server
(tests/kernel/sshd.py) whose PAM service runs `sessrec pam` with
`required`, the sessrec daemon, auditd, and real logins:

- an interactive `ssh -tt` login that runs commands (one failing), opens a
  file, connects to a loopback listener and exits;
- at the same time, a second user's `ssh host cmd`;
- an `scp` of a file;
- an interactive `sftp` session (commands from a batch: put, get, mkdir,
  rename, ls);
- a port forwarding without a shell (`ssh -N -L`), which is no session;
- a login of the second user that tries, without root, to reach or stop
  the recording;
- then, the daemon stopped: a login with `optional` and one with `required`.

One scenario runs once per module; each test asserts one part of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sshd
from krec import SESSREC, export, header, info
from test_audit import Auditd, auditd, tool, wait_for  # noqa: F401  (auditd: a fixture)
from test_pam_sshd import hook_line

from replay.reader import read_trailer_fast
from sessrec import control

pytestmark = pytest.mark.kernel

MISSING = "/nonexistent-sessrec-e2e"


class Listener:
    """A loopback TCP listener that accepts and closes, counting."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            c.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


@dataclass
class Daemon:
    dir: Path
    config: Path
    socket: str
    output: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([SESSREC, "daemon", "--config", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(lambda: control.running(self.socket) or self._died(), "the daemon to answer",
                 timeout=60)
        assert not self._died(), f"the daemon exited: {self.log.read_text()[-3000:]}"

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def make_daemon(d: Path, **extra: str) -> Daemon:
    d.mkdir(mode=0o755, exist_ok=True)
    sock = str(d / "run" / "control.sock")
    out = d / "sessions"
    lines = [f'output_dir = "{out}"', f'control_socket = "{sock}"',
             f'cgroup_root = "sessrec-e2e-{secrets.token_hex(3)}"', 'linger = "30s"']
    if "users_exclude" in extra:
        lines += ["[users]", f'exclude = ["{extra["users_exclude"]}"]']
    config = d / "sessrec.toml"
    config.write_text("\n".join(lines) + "\n")
    return Daemon(dir=d, config=config, socket=sock, output=out, log=d / "daemon.log")


@dataclass
class Login:
    """One login of the scenario, and what it printed."""

    user: sshd.User
    stdout: str
    returncode: int
    audit_session: int | None = None
    tty: str | None = None


@dataclass
class Scenario:
    srv: sshd.Sshd
    daemon: Daemon
    listener: Listener
    interactive: Login
    command: Login
    scp: Login
    sftp: Login
    forward_accepted: int
    files: dict[str, Path] = field(default_factory=dict)   # login name -> its file
    headers: dict[Path, dict[str, Any]] = field(default_factory=dict)
    syslog_after_stop: dict[str, str] = field(default_factory=dict)
    refused_after_stop: subprocess.CompletedProcess[bytes] | None = None
    optional_after_stop: subprocess.CompletedProcess[bytes] | None = None
    attack: Login | None = None
    excluded: subprocess.CompletedProcess[bytes] | None = None
    daemon_alive_after_attack: bool = False


def _number(pattern: str, text: str) -> int | None:
    m = re.findall(pattern, text)
    return int(m[-1]) if m else None


def _wait_all_ended(daemon: Daemon, timeout: float = 60) -> None:
    def ended() -> bool:
        sessions = control.request("list", socket_path=daemon.socket)["sessions"]
        return not sessions
    wait_for(ended, "every login's session to end", timeout=timeout)


@pytest.fixture(scope="module")
def scenario(auditd: Auditd) -> Iterator[Scenario]:  # noqa: F811
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="sessrec-e2e-node-"))
    base.chmod(0o755)
    daemon = make_daemon(base / "daemon")
    listener = Listener()
    with sshd.private_sshd(["a", "b", "x", "s"], hook_line("required", daemon.config)) as srv:
        try:
            a, b, x, s = srv.users
            # The same paths, now with the third user left out by [users].
            make_daemon(base / "daemon", users_exclude=x.name)
            daemon.start()
            script = (
                "echo SID=$(cat /proc/self/sessionid)\n"
                "echo TTY=$(tty)\n"
                f"ls {MISSING}\n"
                "head -c 4 /etc/hostname >/dev/null\n"
                f"exec 3<>/dev/tcp/127.0.0.1/{listener.port}; exec 3>&-\n"
                # A person's login lasts longer than the daemon's look for
                # its terminal takes (every 20 ms; under load, later): a login
                # over before it looked has no tty (docs/NODE.md).
                "sleep 0.5\n"
                "echo A-DONE\n"
                "exit\n"
            ).encode()
            pa = subprocess.Popen(srv.ssh_argv(a, tty=True), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            pb = subprocess.Popen(srv.ssh_argv(b, "echo SID=$(cat /proc/self/sessionid); "
                                               "cat /etc/os-release >/dev/null; sleep 1; "
                                               "echo B-DONE"),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
            out_a, _ = pa.communicate(script, timeout=90)
            out_b, _ = pb.communicate(timeout=90)
            sa, sb = out_a.decode(errors="replace"), out_b.decode(errors="replace")
            inter = Login(a, sa, pa.returncode, _number(r"SID=(\d+)", sa),
                          (re.findall(r"TTY=/dev/(\S+)", sa) or [None])[-1])
            cmd = Login(b, sb, pb.returncode, _number(r"SID=(\d+)", sb))
            payload = base / "payload.txt"
            payload.write_text("sessrec e2e\n" * 100)
            payload.chmod(0o644)
            r = srv.scp(a, payload, "copied.txt")
            scp = Login(a, r.stderr.decode(errors="replace"), r.returncode)
            r = srv.sftp(s, f"put {payload} up.txt\nget up.txt {base}/down.txt\n"
                            "mkdir d\nrename up.txt d/up2.txt\nls d\n")
            sftp = Login(s, (r.stdout + r.stderr).decode(errors="replace"), r.returncode)
            # A port forwarding without a shell: used once, then closed.
            fport = sshd.free_port()
            fwd = subprocess.Popen(srv.ssh_argv(a, "-N", "-L",
                                                f"{fport}:127.0.0.1:{listener.port}"),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            before = listener.accepted
            try:
                wait_for(lambda: _connects(fport), "the forwarded port", timeout=20)
                wait_for(lambda: listener.accepted > before, "a forwarded connection")
            finally:
                fwd.terminate()
                fwd.wait(timeout=20)
            attack = _attack(srv, b, daemon)
            excluded = srv.ssh(x, "echo excluded-in")
            _wait_all_ended(daemon)
            sc = Scenario(srv, daemon, listener, inter, cmd, scp, sftp,
                          listener.accepted - before, attack=attack,
                          daemon_alive_after_attack=daemon.proc is not None
                          and daemon.proc.poll() is None, excluded=excluded)
            # The daemon stopped: optional goes on and says so; required refuses.
            daemon.stop()
            srv.write_pam(hook_line("optional", daemon.config))
            sc.optional_after_stop = srv.ssh(a, "echo still-in")
            srv.write_pam(hook_line("required", daemon.config))
            sc.refused_after_stop = srv.ssh(a, "echo still-in")
            yield sc
        finally:
            daemon.stop()
            listener.close()
            # The daemon leaves its (empty) cgroup root behind: ours is a test's.
            from recorder.cgroup import cgroup2_mount
            root = re.search(r'cgroup_root = "([^"]+)"', daemon.config.read_text())
            if root:
                with contextlib.suppress(OSError):
                    (cgroup2_mount().path / root.group(1)).rmdir()
            import shutil
            shutil.rmtree(base, ignore_errors=True)


# What a user without root tries, from inside a recorded login, to see the
# recording or stop it. Each attempt prints "refused: ..." or "ESCAPED: ...".
ATTACK = r"""
CG={mount}$(sed -n 's/^0:://p' /proc/self/cgroup)
echo "CG=$CG"
stat -c 'OWNER %U %a %n' "$CG" "$CG/cgroup.procs"
try() {{
  if out=$("$@" 2>&1); then echo "ESCAPED: $*"; else echo "refused: $* :: ${{out##*$'\n'}}"; fi
}}
try python3 -c "import socket; socket.socket(socket.AF_UNIX).connect('{sock}')"
try ls {out}
try cat {file}
try sh -c "echo $$ > {mount}/cgroup.procs"
try sh -c "echo $$ > $CG/../cgroup.procs"
try rmdir "$CG"
try mkdir "$CG/mine"
try kill -KILL {daemon}
try unshare -Ur -C sh -c "echo \$\$ > {mount}/cgroup.procs"
mkdir -p ~/cg
try unshare -Urm -C sh -c \
  "mount -t cgroup2 none ~/cg && mkdir ~/cg/mine && echo \$\$ > ~/cg/mine/cgroup.procs"
unshare -Ur -C sh -c \
  'echo "NS-CGROUP $(sed -n "s/^0:://p" /proc/self/cgroup)"; cat /etc/issue.net >/dev/null'
echo ATTACK-DONE
"""
ATTEMPTS = 10


def _attack(srv: sshd.Sshd, user: sshd.User, daemon: Daemon) -> Login:
    from recorder.cgroup import cgroup2_mount
    assert daemon.proc is not None
    some_file = next(daemon.output.glob("*.srec"), daemon.output / "x.srec") \
        if daemon.output.exists() else daemon.output / "x.srec"
    script = ATTACK.format(mount=cgroup2_mount().path, sock=daemon.socket, out=daemon.output,
                           file=some_file, daemon=daemon.proc.pid)
    r = srv.ssh(user, "bash -s", input=script.encode())
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    return Login(user, out, r.returncode, None)


def _connects(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def files_of(sc: Scenario) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for p in sorted(sc.daemon.output.glob("*.srec")):
        out.append((p, header(p)))
    return out


def file_of(sc: Scenario, login: Login, pick: str) -> tuple[Path, dict[str, Any]]:
    """The one file of login's audit session (pick: 'interactive', 'command'),
    or, for the scp, the other file of its user."""
    matches = [(p, h) for p, h in files_of(sc) if h["login"]["user"] == login.user.name
               and (login.audit_session is None or h["audit_session_id"] == login.audit_session)]
    if pick == "scp":
        matches = [(p, h) for p, h in matches
                   if h["audit_session_id"] != sc.interactive.audit_session]
    assert len(matches) == 1, f"{pick}: {len(matches)} files: {[str(p) for p, _ in matches]}"
    return matches[0]


def test_the_logins_worked(scenario: Scenario) -> None:
    assert scenario.interactive.returncode == 0, scenario.interactive.stdout
    assert "A-DONE" in scenario.interactive.stdout
    assert scenario.command.returncode == 0 and "B-DONE" in scenario.command.stdout
    assert scenario.scp.returncode == 0, scenario.scp.stdout
    assert scenario.interactive.audit_session and scenario.command.audit_session
    assert scenario.interactive.audit_session != scenario.command.audit_session
    assert scenario.forward_accepted >= 1


def test_one_file_per_session_and_none_for_the_forwarding(scenario: Scenario) -> None:
    """Five sessions (the interactive login, the command, the scp, the sftp
    and the attack below), five files: the forwarding without a shell left
    none."""
    files = files_of(scenario)
    assert len(files) == 5, [str(p) for p, _ in files]
    assert "session-discarded" in scenario.daemon.log.read_text()
    out = scenario.daemon.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and out.stat().st_uid == 0
    for p, _ in files:
        st = p.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, p


def test_headers_name_the_login(scenario: Scenario) -> None:
    log = scenario.srv.log.read_text()
    for login, pick in ((scenario.interactive, "interactive"), (scenario.command, "command"),
                        (scenario.scp, "scp"), (scenario.sftp, "sftp")):
        p, h = file_of(scenario, login, pick)
        lg = h["login"]
        assert h["user"] == login.user.name and h["uid"] == login.user.uid
        assert (lg["user"], lg["uid"]) == (login.user.name, login.user.uid)
        assert lg["service"] == scenario.srv.service
        assert lg["rhost"] == "127.0.0.1"
        assert h["login_uid"] == login.user.uid
        # sshd logs each accepted login with the client's port.
        assert lg["remote_addr"] == "127.0.0.1"
        assert f"Accepted publickey for {login.user.name} from 127.0.0.1 port " \
            f"{lg['remote_port']} " in log
        assert h["audit_session_id"] is not None
        if login.audit_session is not None:
            assert h["audit_session_id"] == login.audit_session
        assert read_trailer_fast(p) is not None, f"{pick}: the file is not finished"


def test_the_interactive_tty_is_learned(scenario: Scenario) -> None:
    """PAM_TTY is "ssh" at sshd's open_session; the daemon learns the pty
    from the login's processes and puts it in the trailer."""
    p, h = file_of(scenario, scenario.interactive, "interactive")
    assert scenario.interactive.tty and scenario.interactive.tty.startswith("pts/")
    assert h["login"]["tty"] == "ssh"
    trailer = read_trailer_fast(p)
    assert trailer is not None and trailer.get("tty") == scenario.interactive.tty
    pb, _ = file_of(scenario, scenario.command, "command")
    trailer_b = read_trailer_fast(pb)
    assert trailer_b is not None and "tty" not in trailer_b      # ssh host cmd: no tty


def _events(p: Path) -> list[dict[str, Any]]:
    events, err = export(p)
    assert "warning" not in err, err
    return events


def test_the_interactive_login_is_all_there(scenario: Scenario) -> None:
    p, _ = file_of(scenario, scenario.interactive, "interactive")
    ev = _events(p)
    execs = [e for e in ev if e["type"] == "exec" and e["return_code"] == 0]
    paths = [e["path"] for e in execs]
    assert "/usr/bin/bash" in paths or "/bin/bash" in paths
    ls = [e for e in execs if e["argv"][1:] == [MISSING]]
    assert len(ls) == 1, "the failing ls"
    exits = [e for e in ev if e["type"] == "exit" and e["pid"] == ls[0]["pid"]]
    assert [e["exit_code"] for e in exits] == [2]
    opens = [e for e in ev if e["type"] == "open" and e["path"] == "/etc/hostname"
             and e["return_code"] >= 0 and e["comm"] == "head"]
    assert len(opens) == 1
    conns = [e for e in ev if e["type"] == "connect" and e["dst_port"] == scenario.listener.port
             and e["dst_addr"] == "127.0.0.1"]
    assert len(conns) == 1 and conns[0]["return_code"] == 0
    inf = info(p)
    assert inf["complete"] and not any(inf["lost"].values()), inf


def test_the_command_login_is_all_there_and_unmixed(scenario: Scenario) -> None:
    pa, _ = file_of(scenario, scenario.interactive, "interactive")
    pb, _ = file_of(scenario, scenario.command, "command")
    ea, eb = _events(pa), _events(pb)
    cats = [e for e in eb if e["type"] == "exec" and e["argv"] == ["cat", "/etc/os-release"]]
    assert len(cats) == 1
    # The path is the file the kernel opened (a symlink on Debian), the
    # requested one what cat passed.
    assert any(e["type"] == "open" and e["requested_path"] == "/etc/os-release"
               and e["path"] == os.path.realpath("/etc/os-release")
               and e["pid"] == cats[0]["pid"] for e in eb)
    assert any(e["type"] == "exec" and e["argv"][:1] == ["sleep"] for e in eb)
    # No mixing: no process is in both, and neither has the other's programs.
    assert not {e["pid"] for e in ea} & {e["pid"] for e in eb}
    assert not any(e["type"] == "exec" and e["argv"] == ["cat", "/etc/os-release"] for e in ea)
    assert not any(e["type"] == "exec" and MISSING in e["argv"] for e in eb)
    inf = info(pb)
    assert inf["complete"] and not any(inf["lost"].values()), inf


def test_the_scp_is_recorded(scenario: Scenario) -> None:
    p, _ = file_of(scenario, scenario.scp, "scp")
    ev = _events(p)
    sftp = [e for e in ev if e["type"] == "exec" and e["path"] == sshd.SFTP_SERVER]
    assert len(sftp) == 1
    target = str(scenario.scp.user.home / "copied.txt")
    writes = [e for e in ev if e["type"] == "open" and e["path"] == target
              and e["pid"] == sftp[0]["pid"] and "O_WRONLY" in e["flag_names"]]
    assert writes, "the copied file's open for writing"


def test_the_sftp_session_is_recorded(scenario: Scenario) -> None:
    assert scenario.sftp.returncode == 0, scenario.sftp.stdout
    assert "up2.txt" in scenario.sftp.stdout
    p, _ = file_of(scenario, scenario.sftp, "sftp")
    ev = _events(p)
    [server] = [e for e in ev if e["type"] == "exec" and e["path"] == sshd.SFTP_SERVER]
    home = scenario.sftp.user.home
    opens = [(e["path"], "O_WRONLY" in e["flag_names"]) for e in ev if e["type"] == "open"
             and e["pid"] == server["pid"] and e["return_code"] >= 0]
    assert (str(home / "up.txt"), True) in opens         # put
    assert (str(home / "up.txt"), False) in opens        # get
    assert any(path == str(home / "d") for path, _ in opens)   # ls d
    inf = info(p)
    assert inf["complete"] and not any(inf["lost"].values()), inf


def test_ausearch_finds_sshd_and_sessrec_for_each_login(scenario: Scenario) -> None:
    for login, pick in ((scenario.interactive, "interactive"), (scenario.command, "command")):
        _, h = file_of(scenario, login, pick)
        ses = h["audit_session_id"]
        out = ""

        def found(ses: int = ses, sid: str = h["session_id"]) -> bool:
            nonlocal out
            out = subprocess.run([tool("ausearch"), "--session", str(ses), "--raw"],
                                 capture_output=True, text=True).stdout
            return (f"sessrec_session={sid} " in out and "op=sessrec-start" in out
                    and "op=sessrec-end" in out)

        wait_for(found, f"sessrec's records of audit session {ses}")
        for rtype in ("LOGIN", "USER_START", "USER_END"):
            assert f"type={rtype} " in out, f"{pick}: no {rtype} for session {ses}"


def test_daemon_stopped_optional_logs_in_required_refuses(scenario: Scenario) -> None:
    opt, req = scenario.optional_after_stop, scenario.refused_after_stop
    assert opt is not None and opt.returncode == 0 and opt.stdout == b"still-in\n"
    assert req is not None and req.returncode != 0 and b"still-in" not in req.stdout
    if scenario.srv.syslog.active:
        text = scenario.srv.syslog.text()
        assert "is NOT recorded: sessrec daemon is not running" in text


def test_no_session_cgroup_left(scenario: Scenario) -> None:
    for p, h in files_of(scenario):
        assert not Path(h["cgroup"]).exists(), p




def attack_file(sc: Scenario) -> Path:
    assert sc.attack is not None
    cg = re.findall(r"CG=\S+/([^/\s]+)$", sc.attack.stdout, re.M)
    assert cg, sc.attack.stdout
    matches = [p for p, h in files_of(sc) if h["session_id"] == cg[-1]]
    assert len(matches) == 1
    return matches[0]


def test_a_user_cannot_reach_or_stop_the_recording(scenario: Scenario) -> None:
    """From inside a recorded login, without root: no talking to the control
    socket, no reading session files or listing output_dir, no moving out of
    the session cgroup (root's, 0644 or stricter), no removing it, no
    killing the daemon, and a cgroup namespace (even with its own cgroup2
    mount) changes what the user sees, not what is recorded."""
    a = scenario.attack
    assert a is not None and "ATTACK-DONE" in a.stdout, a and a.stdout
    assert "ESCAPED" not in a.stdout, a.stdout
    refusals = re.findall(r"^refused: (.*) :: (.*)$", a.stdout, re.M)
    assert len(refusals) == ATTEMPTS, a.stdout
    for what, why in refusals:
        assert re.search(r"[Pp]ermission denied|not permitted|busy", why), (what, why)
    for owner, mode in re.findall(r"^OWNER (\S+) (\d+) ", a.stdout, re.M):
        assert owner == "root" and int(mode, 8) & 0o022 == 0, a.stdout
    assert len(re.findall(r"^OWNER ", a.stdout, re.M)) == 2
    assert scenario.daemon_alive_after_attack
    # Inside the cgroup namespace the login sees itself at the root...
    assert re.search(r"^NS-CGROUP /$", a.stdout, re.M), a.stdout
    # ...and is recorded all the same, to the end.
    ev = _events(attack_file(scenario))
    assert any(e["type"] == "exec" and e["argv"][:1] == ["unshare"] for e in ev)
    assert any(e["type"] == "open" and e["path"] == "/etc/issue.net" and e["comm"] == "cat"
               for e in ev)
    assert sum(1 for e in ev if e["type"] == "exec" and e["argv"][:1] == ["rmdir"]) == 1


def test_an_excluded_user_logs_in_unrecorded(scenario: Scenario) -> None:
    """[users] exclude: the login goes on, even with `required`, no file is
    made, and the system log says why."""
    x = scenario.srv.users[2]
    r = scenario.excluded
    assert r is not None and r.returncode == 0 and r.stdout == b"excluded-in\n", r
    assert not [p for p, h in files_of(scenario) if h["user"] == x.name]
    if scenario.srv.syslog.active:
        assert re.search(rf"login of {x.name} \(uid {x.uid}\) from 127\.0\.0\.1 port \d+ "
                         rf"not recorded: user {x.name} \(uid {x.uid}\) is not recorded "
                         r"\(\[users\]\)", scenario.srv.syslog.text()), scenario.srv.syslog.text()
