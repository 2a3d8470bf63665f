"""The daemon's side of systemd-logind's session scopes (docs/NODE.md).

With `enrolment = "logind"`, each new scope
(<cgroup2>/<logind_root>/user-UID.slice/session-N.scope) becomes a session
of its own: its cgroup id is the session's key, its processes are adopted
(written into the programs' `members` map), and from then on the programs
record them, their children, and any process moved into the scope
(bpf/proc.bpf.c, cgroup_attach_task: a move into a registered session's
cgroup, at any depth). The scope is systemd's: the daemon never moves a
process out of it nor removes it. The session ends when the scope is empty;
when its leader (the process logind made the scope for: sshd's [priv],
login) exits, `linger` bounds the wait for what is left, as a PAM close does.

A scope whose processes are already recorded (a PAM login: the hook put
sshd's [priv] in its session cgroup, then pam_systemd had systemd move it
into the scope) is linked to that session instead: the session lives on in
the scope, and no second file is made. This is done in either enrolment, as
a PAM login's own cgroup empties at that move.

What is missed: systemd makes the scope and moves the leader in while
pam_systemd waits; the daemon hears of it afterwards (inotify), so what the
login runs until its processes are adopted is not recorded, and what it
runs from then until the session's ring is registered is counted as lost
(bench/logind_latency.py measures both).
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from recorder import pam
from recorder.cgroup import SessionCgroup
from recorder.logind import Scope, ScopeWatcher
from recorder.record import _user
from sessrec.errors import EnvironmentProblem, SessrecError

if TYPE_CHECKING:
    from recorder.daemon import Daemon, Session

# Rounds of reading a scope's processes and adopting the new ones: a process
# forked before its parent was adopted shows up in the next round.
JOIN_ROUNDS = 64
# A scope seen without processes yet (systemd makes it, then moves its
# leader in at once) is looked at every PENDING_POLL s for PENDING_SOON s,
# then every PENDING_EVERY s up to PENDING_FOR s.
PENDING_POLL = 0.001
PENDING_SOON = 0.2
PENDING_EVERY = 0.02
PENDING_FOR = 30.0


class LogindEnrolment:
    """Watches the scopes: adopts new ones (adopt=True, the logind
    enrolment) and links those of PAM logins to their sessions."""

    def __init__(self, d: Daemon, adopt: bool) -> None:
        assert d.mount is not None
        self.d = d
        self.adopt = adopt
        self.root = d.mount.path / d.cfg.logind_root
        check_logind_root(self.root)
        self.watcher = ScopeWatcher(self.root)
        self.pending: dict[Path, tuple[Scope, float]] = {}
        self.gone: list[Path] = []
        self._busy = False

    def fileno(self) -> int:
        return self.watcher.fileno()

    def close(self) -> None:
        self.watcher.close()

    def timer(self, now: float) -> float | None:
        """How soon to look again at scopes waiting for their first process:
        at once while systemd is about to move it in, then now and then."""
        ages = [now - t for _, t in self.pending.values()]
        if any(a < PENDING_SOON for a in ages):
            return PENDING_POLL
        return PENDING_EVERY if any(a < PENDING_FOR for a in ages) else None

    def poll(self, now: float) -> None:
        """The loop's call: new scopes taken in, removed ones checked."""
        self.settle()
        gone, self.gone = self.gone, []
        for path in gone:
            sess = self._session_in(path)
            if sess is not None:
                self.d._maybe_empty(sess, now)

    def settle(self) -> bool:
        """Reads the watcher and takes in each new scope that has processes.
        True when a scope was linked to a session (its cgroup emptied)."""
        if self._busy:      # called back through the daemon while adopting
            return False
        self._busy = True
        try:
            new, gone = self.watcher.read()
            now = time.monotonic()
            for s in new:
                self.pending[s.path] = (s, now)
            for path in gone:
                self.pending.pop(path, None)
            self.gone += gone
            linked = False
            for path, (scope, _) in list(self.pending.items()):
                try:
                    done, was_linked = self._take(scope)
                except Exception as e:  # a bug must cost one scope, not the daemon
                    self.d.log("scope-failed", level="error", scope=str(path), error=repr(e))
                    done, was_linked = True, False
                linked |= was_linked
                if done:
                    self.pending.pop(path, None)
            return linked
        finally:
            self._busy = False

    def _session_in(self, path: Path) -> Session | None:
        for sess in self.d.sessions.values():
            if sess.cg.path == path or any(cg.path == path for cg in sess.linked):
                return sess
        return None

    def _take(self, scope: Scope) -> tuple[bool, bool]:
        """(done with the scope, linked it to a session)."""
        assert self.d.programs is not None and self.d.mount is not None
        if self._session_in(scope.path) is not None:
            return True, False         # a session continued after a restart
        try:
            cg = SessionCgroup.existing(scope.path, self.d.mount)
        except OSError:
            return True, False         # gone already
        pids = cg.pids()
        if not pids:
            return False, False
        owners = {self.d.programs.member_of(p) for p in pids}
        sess = next((self.d.by_cg[o] for o in owners if o in self.d.by_cg), None)
        if sess is not None:
            sess.linked.append(cg)
            self.join([cg], sess.cg.id)
            self.d._save_state(sess)
            self.d.log("scope-linked", session=sess.id, kind=sess.kind, scope=str(cg.path),
                       logind_session=scope.session)
            return True, True
        if self.adopt:
            self._adopt(scope, cg, pids)
        return True, False

    def join(self, cgs: list[SessionCgroup], key: int) -> int:
        """Adopts the processes in cgs into the session keyed key (those not
        in another live session), until no new one shows up. Returns how
        many processes were seen."""
        programs = self.d.programs
        assert programs is not None
        seen: set[int] = set()
        for _ in range(JOIN_ROUNDS):
            added = 0
            for pid in [p for cg in cgs for p in cg.pids() if p not in seen]:
                seen.add(pid)
                owner = programs.member_of(pid)
                if owner is None or (owner != key and owner not in self.d.by_cg):
                    programs.add_member(pid, key)
                    if _alive(pid):
                        added += 1
                    else:   # gone before it was added: its exit removed nothing
                        programs.remove_members([pid])
            # Done when every process is in already: those forked since by
            # members joined by themselves.
            if not added:
                break
        return len(seen)

    def _adopt(self, scope: Scope, cg: SessionCgroup, pids: list[int]) -> None:
        d = self.d
        uid = scope.uid
        user = _user(uid)
        if not d.cfg.enabled or not d.cfg.records_user(user, uid):
            d.log("scope-not-recorded", scope=str(cg.path), user=user, uid=uid,
                  reason="recording is disabled (enabled = false)" if not d.cfg.enabled
                  else "the user is not recorded ([users])")
            return
        t0 = time.monotonic()
        # Members first: until the ring is registered (an RCU grace period:
        # the session's first step) their records are counted as lost, not
        # missed.
        self.join([cg], cg.id)
        joined = time.monotonic() - t0
        leader = _oldest(pids)
        login: dict[str, str | int] = {"user": user, "uid": uid, "logind_session": scope.session}
        peer = pam.tcp_peer(leader)
        if peer is not None:
            login |= {"remote_addr": peer.remote_addr, "remote_port": peer.remote_port}
        try:
            cwd = os.readlink(f"/proc/{leader}/cwd")
        except OSError:
            cwd = "/"
        session_id = str(uuid.uuid4())
        wall_ns = time.time_ns()
        try:
            d.open_session(
                session_id=session_id, kind="logind", pid=leader, uid=uid, user=user, cg=cg,
                output=d.default_output(user, uid, session_id, wall_ns), force=False,
                sealing=True, command=[], cwd=cwd, login=login, wall_ns=wall_ns, owner=None,
                join=lambda: None, owned=False)
        except SessrecError as e:
            d.log("scope-failed", level="error", scope=str(cg.path), error=str(e))
            return
        # Processes that came meanwhile (moved in before the ring was
        # registered, forked before their parent was adopted).
        n = self.join([cg], cg.id)
        d.log("scope-adopted", session=session_id, scope=str(cg.path), processes=n,
              processes_s=round(joined, 4), seconds=round(time.monotonic() - t0, 4))
        with contextlib.suppress(KeyError):
            d._maybe_empty(d.sessions[session_id], time.monotonic())


def check_logind_root(root: Path) -> None:
    if not root.is_dir():
        raise EnvironmentProblem(
            f"enrolment = \"logind\" but there is no {root}: systemd-logind makes it "
            "(each login's scope is there); without logind, use enrolment = \"pam\" "
            "(or set logind_root)")


def _alive(pid: int) -> bool:
    """Whether pid runs (a zombie's exit has been traced already)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] not in ("Z", "X")


def _oldest(pids: list[int]) -> int:
    """The process of pids that started first: the scope's leader."""
    def start(pid: int) -> int:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            return int(stat[stat.rindex(")") + 2:].split()[19])
        except (OSError, ValueError, IndexError):
            return 1 << 62
    return min(pids, key=lambda p: (start(p), p))
