"""Continuing a session that an earlier daemon left (recorder/daemon.py).

The cgroup and the state file survived; the file ends at its last whole
chunk, or inside one (a SIGKILL during a write). The file is read back to
count what it holds, cut after its last whole chunk, and continued: first a
"gap" map from the last event it holds to now (events in between are
missing: the programs were detached while no daemon ran), then the records
as they come, and at the end one trailer that counts the whole session.

The file is opened by its path and must be the file the session was
written to (its device and inode are in the state). A `record` client's
file may be where this daemon cannot see it (it was passed as an open
descriptor: docs/CONTROL.md): then FileUnreachable, and the daemon waits
for the client to hand the file again (`reattach`), which calls resume()
with it. Everything is read and written through the one descriptor.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from recorder.cgroup import SessionCgroup
from recorder.record import SessionSink
from recorder.writer import SessionWriter
from replay.reader import open_session
from replay.verify import sealed_end
from sessrec import seal
from sessrec.errors import SessrecError
from sessrec.event import ARGV_TRUNCATED, PATH_TRUNCATED

if TYPE_CHECKING:
    from recorder.daemon import Daemon, Session


class FileUnreachable(SessrecError):
    """A session's file that its client passed is not at its path here."""


def read_state(path: Path) -> dict[str, Any]:
    st = json.loads(path.read_text())
    if not isinstance(st, dict):
        raise ValueError(f"{path}: not a session state")
    return st


def file_id(st: dict[str, Any]) -> tuple[int, int] | None:
    """The (device, inode) of the session's file, when the state has it."""
    fid = st.get("file_id")
    return None if fid is None else (int(fid[0]), int(fid[1]))


def _reopen(st: dict[str, Any]) -> BinaryIO:
    """The session's file, opened by its path: the same file (device and
    inode), or FileUnreachable for a file its client passed."""
    file = str(st["file"])
    passed = st.get("passed") is True
    try:
        fd = os.open(file, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        if passed:
            raise FileUnreachable(f"cannot open {file}: {e.strerror} (its `record` client "
                                  "passed the file; this daemon does not see the path)"
                                  ) from None
        raise
    st_ = os.fstat(fd)
    want = file_id(st)
    if want is not None and (st_.st_dev, st_.st_ino) != want:
        os.close(fd)
        if passed:
            raise FileUnreachable(f"{file} is another file here (its `record` client "
                                  "passed the file; this daemon sees another one at its path)")
        raise SessrecError(f"{file} is not the session's file any more")
    return os.fdopen(fd, "wb", buffering=0)


def resume(d: Daemon, state_path: Path, stream: BinaryIO | None = None) -> Session | None:
    """The session of a state file, continued in its file: stream (handed by
    its client), else the file opened by its path. None: nothing to continue
    (its cgroup is gone, or the file is complete); the state file is removed."""
    st = read_state(state_path)
    sid, file, cg_path = str(st["session"]), str(st["file"]), Path(st["cgroup"])
    if not cg_path.is_dir():
        d.log("resume-skipped", session=sid, file=file, why="its cgroup is gone")
        state_path.unlink()
        if stream is not None:
            stream.close()
        return None
    if stream is None:
        stream = _reopen(st)
    try:
        return _continue(d, state_path, st, stream)
    except BaseException:
        stream.close()
        raise


def _continue(d: Daemon, state_path: Path, st: dict[str, Any],
              stream: BinaryIO) -> Session | None:
    from recorder.daemon import Session

    assert d.programs is not None and d.mount is not None
    sid, file, cg_path = str(st["session"]), str(st["file"]), Path(st["cgroup"])
    # Read back through the descriptor: the path may not be this file here.
    src = f"/proc/self/fd/{stream.fileno()}"
    cg = SessionCgroup.existing(cg_path, d.mount)
    owned = bool(st.get("owned", True))   # False: a logind scope, systemd's
    linked = [SessionCgroup.existing(Path(p), d.mount) for p in st.get("linked", ())
              if Path(p).is_dir()]
    per_type = [0] * 256
    argv_cut = path_cut = 0
    last_ts = 0
    with open_session(src, strict=False) as s:
        for ev in s.records():
            per_type[ev.type] += 1
            argv_cut += bool(ev.flags & ARGV_TRUNCATED)
            path_cut += bool(ev.flags & PATH_TRUNCATED)
            last_ts = max(last_ts, ev.ts)
        header, trailer, damage, lost_before = s.header, s.trailer, s.damage, s.stats_lost
        gaps = [{k: v for k, v in g.items() if k != "k"} for g in s.gaps]
        unknown = sum(s.unknown_types.values())
    if trailer is not None or damage is None:
        d.log("resume-skipped", session=sid, file=file, why="the file is complete")
        if owned:
            cg.remove()
        state_path.unlink()
        stream.close()
        return None
    writer = SessionWriter(file, header, resume_at=damage.offset, stream=stream)
    key = seal.seal_key_path(None)
    if "seal" in header and key is not None:
        # A new seal chain, whose first seal covers what the old one left unsealed.
        start = sealed_end(src)
        with open(src, "rb") as f:
            f.seek(start)
            unsealed = f.read(max(0, damage.offset - start))
        writer.seal_from_here(seal.start_file(key), unsealed)
    sink = SessionSink(cg.id, writer)
    sink.per_type = per_type
    sink.truncated_argv, sink.truncated_path, sink.unknown = argv_cut, path_cut, unknown
    sess = Session(id=sid, kind=str(st["kind"]), pid=int(st["pid"]), uid=int(st["uid"]),
                   user=str(st["user"]), file=file, cg=cg, writer=writer, sink=sink,
                   auditing=None, started_at=header["started_at"], owner=None,
                   lost_before=dict(lost_before), owned=owned, linked=linked,
                   file_id=file_id(st), passed=st.get("passed") is True,
                   client=None if st.get("client") is None
                   else (int(st["client"][0]), int(st["client"][1])))
    writer.on_drop = lambda k, raw: d._on_drop(sess, k, raw)
    d.dispatcher.sinks[cg.id] = sink
    d.programs.add_session(cg.id)
    d.expect_login_scope(cg.id, sess.kind, sess.uid, header["audit_session_id"])
    # Its processes join again: the programs' members map went with the old
    # daemon. (One that moved out of the cgroup meanwhile is not found.)
    for pid in sess.pids():
        d.programs.add_member(pid, cg.id)
    end = time.monotonic_ns() - header["clock"]["mono_ns"]
    gap = {"ts": last_ts, "end": end, "reason": "restart",
           "detail": "the daemon was restarted or killed; the file continues from byte "
           f"{damage.offset}", "dropped": None}
    writer.add_map("gap", gap)
    sess.gaps = [*gaps, gap]
    d.log("session-resumed", session=sid, kind=sess.kind, user=sess.user, pid=sess.pid,
          file=file, gap_s=round((end - last_ts) / 1e9, 3), events_before=sum(per_type))
    return sess
