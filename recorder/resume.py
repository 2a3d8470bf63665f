"""Continuing a session that an earlier daemon left (recorder/daemon.py).

The cgroup and the state file survived; the file ends at its last whole
chunk, or inside one (a SIGKILL during a write). The file is read back to
count what it holds, cut after its last whole chunk, and continued: first a
"gap" map from the last event it holds to now (events in between are
missing: the programs were detached while no daemon ran), then the records
as they come, and at the end one trailer that counts the whole session.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from recorder.cgroup import SessionCgroup
from recorder.record import SessionSink
from recorder.writer import SessionWriter
from replay.reader import open_session
from replay.verify import sealed_end
from sessrec import seal
from sessrec.event import ARGV_TRUNCATED, PATH_TRUNCATED

if TYPE_CHECKING:
    from recorder.daemon import Daemon, Session


def resume(d: Daemon, state_path: Path) -> Session | None:
    from recorder.daemon import Session

    assert d.programs is not None and d.mount is not None
    st = json.loads(state_path.read_text())
    sid, file, cg_path = str(st["session"]), str(st["file"]), Path(st["cgroup"])
    if not cg_path.is_dir():
        d.log("resume-skipped", session=sid, file=file, why="its cgroup is gone")
        state_path.unlink()
        return None
    cg = SessionCgroup.existing(cg_path, d.mount)
    owned = bool(st.get("owned", True))   # False: a logind scope, systemd's
    linked = [SessionCgroup.existing(Path(p), d.mount) for p in st.get("linked", ())
              if Path(p).is_dir()]
    per_type = [0] * 256
    argv_cut = path_cut = 0
    last_ts = 0
    with open_session(file, strict=False) as s:
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
        return None
    writer = SessionWriter(file, header, resume_at=damage.offset)
    key = seal.seal_key_path(None)
    if "seal" in header and key is not None:
        # A new seal chain, whose first seal covers what the old one left unsealed.
        start = sealed_end(file)
        with open(file, "rb") as f:
            f.seek(start)
            unsealed = f.read(max(0, damage.offset - start))
        writer.seal_from_here(seal.start_file(key), unsealed)
    sink = SessionSink(cg.id, writer)
    sink.per_type = per_type
    sink.truncated_argv, sink.truncated_path, sink.unknown = argv_cut, path_cut, unknown
    sess = Session(id=sid, kind=str(st["kind"]), pid=int(st["pid"]), uid=int(st["uid"]),
                   user=str(st["user"]), file=file, cg=cg, writer=writer, sink=sink,
                   auditing=None, started_at=header["started_at"], owner=None,
                   lost_before=dict(lost_before), owned=owned, linked=linked)
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
