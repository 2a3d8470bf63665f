"""The summary of a session file shown by `sessrec info` (and --json).

A completed file is summarised from its header and its trailer, found through
the footer without reading the events. A file without a valid footer (killed
recorder, damage) is scanned, and the counts come from the events read."""

from __future__ import annotations

import os
import shlex
from typing import Any

from replay.auditlog import audit_info, describe_audit
from replay.base import describe_gap
from replay.reader import open_session, read_trailer_fast
from replay.text import duration_text, printable
from replay.timeline import rfc3339_ns
from sessrec import format as fmt
from sessrec.errors import FormatError
from sessrec.event import ARGV_TRUNCATED, PATH_TRUNCATED, TYPE_NAMES, Exit


def _per_type(counts: dict[str, int]) -> dict[str, int]:
    """Every known type name (0 if absent), then any others the file has."""
    out = {name: counts.get(name, 0) for name in TYPE_NAMES.values()}
    out.update((k, v) for k, v in counts.items() if k not in out)
    return out


def _from_trailer(t: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
    """counts, lost, truncated, unknown_types, exit_status."""
    return t["counts"], t["lost"], t["truncated"], t["unknown_types"], t["exit_status"]


def session_info(path: str | os.PathLike[str], check: bool = False) -> dict[str, Any]:
    """The summary dict for `sessrec info --json` (keys in display order).

    check: read every event of a completed file too, to find damage between
    its header and trailer (by default only those two are read)."""
    with open_session(path, strict=False) as session:
        header = session.header
        try:
            trailer = read_trailer_fast(path)
        except FormatError:
            trailer = None  # a damaged footer: the scan below says where
        damage = None
        checked = trailer is None or check  # the scan reads every event
        if trailer is not None:
            counts, lost, truncated, unknown, exit_status = _from_trailer(trailer)
            if check:
                for _ev in session.records():
                    pass
                damage = session.damage
        else:
            leader = header["leader_pid"]
            argv_trunc = path_trunc = 0
            exit_status = None
            for ev in session.records():
                flags = ev.flags
                if flags:
                    argv_trunc += bool(flags & ARGV_TRUNCATED)
                    path_trunc += bool(flags & PATH_TRUNCATED)
                if type(ev) is Exit and ev.pid == leader:
                    exit_status = fmt.shell_status(ev.exit_code_raw)
            damage = session.damage
            trailer = session.trailer  # there when only the footer is missing
            if trailer is not None:
                counts, lost, truncated, unknown, exit_status = _from_trailer(trailer)
            else:
                counts = session.counts
                lost = session.stats_lost
                truncated = {"argv": argv_trunc, "path": path_trunc}
                unknown = sum(session.unknown_types.values())
        info: dict[str, Any] = {
            "session_id": header["session_id"],
            "audit_session_id": header["audit_session_id"],
            "login_uid": header["login_uid"],
            "user": header["user"],
            "uid": header["uid"],
            "hostname": header["hostname"],
            "kernel": header["kernel"],
            "command": header["command"],
            "cwd": fmt.text(header["cwd"]),
            "started_at": header["started_at"],
            "ended_at": None if trailer is None else trailer["ended_at"],
            "format_version": session.format_version,
            "exit_status": exit_status,
            "end_reason": None if trailer is None else trailer["end_reason"],
            "counts": _per_type(counts),
            "lost": _per_type(lost),
            "truncated": dict(truncated),
            "unknown_types": unknown,
            "complete": trailer is not None,
            "damage": None if damage is None else damage.as_dict(),
            "checked": checked,
        }
        # A finished file's trailer repeats its gaps (2.1); an unfinished one was scanned.
        gaps = session.gaps if trailer is None else trailer.get("gaps", [])
        if gaps:  # the key only when there are any: summaries of older files stay as they were
            info["gaps"] = [dict(g) for g in gaps]
        if "audit" in header:  # format 1.1 and later
            info["audit"] = audit_info(header, trailer)
        if "kernel_features" in header:  # 2.1 and later
            info["kernel_features"] = header["kernel_features"]
        return info


def _duration(info: dict[str, Any]) -> str:
    """ended_at - started_at, for people; 'unknown' for an unfinished file."""
    if info["ended_at"] is None:
        return "unknown: the recording did not finish"
    start = rfc3339_ns(info["started_at"])
    end = rfc3339_ns(info["ended_at"])
    if start is None or end is None:
        return "unknown"
    return duration_text(end - start)


def _file_state(info: dict[str, Any]) -> str:
    """'complete', or 'truncated: ...' with where and why the reading stopped."""
    d = info["damage"]
    if d is None and not info.get("checked", True):
        return "complete (its events were not read: `sessrec info --check` reads them)"
    if d is None:
        return "complete" if info["complete"] else "truncated"
    what = "complete, but damaged" if info["complete"] else "truncated"
    return f"{what}: read up to byte {d['offset']}: {d['reason']}"


def describe_kernel_features(kf: dict[str, Any]) -> str:
    """The detected features as one line: what there was, what was not."""
    names = ("ringbuf", "task_pt_regs", "openat2", "exit_group_dead")
    have = [n for n in names if kf.get(n) is True]
    lack = [n for n in names if kf.get(n) is False]
    text = f"{kf['release']}: {', '.join(have) or 'nothing detected'}"
    if lack:
        text += f"; without {', '.join(lack)}"
    match = "matching" if kf["headers_match"] else "not matching (offsets from BTF)"
    return f"{text}; headers {kf['headers'] or 'none'}, {match}"


def format_info(info: dict[str, Any]) -> str:
    """session_info() as text for people, one "name  value" line each.

    Values come from the (untrusted) file: control characters are escaped."""

    def ids() -> str:
        parts = [f"uid {info['uid']}"]
        if info["login_uid"] is not None:
            parts.append(f"login uid {info['login_uid']}")
        if info["audit_session_id"] is not None:
            parts.append(f"audit session {info['audit_session_id']}")
        return ", ".join(parts)

    def per_type(counts: dict[str, int]) -> str:
        items = [f"{n} {name}" for name, n in counts.items() if n]
        return ", ".join(items) or "none"

    if info["complete"]:
        ended = f"{info['ended_at']} ({info['end_reason']})"
    else:
        ended = "unknown: the recording did not finish"
    rows = [
        ("session", info["session_id"]),
        ("user", f"{info['user']} ({ids()})"),
        ("host", f"{info['hostname']}, kernel {info['kernel']}"),
        ("command", shlex.join(info["command"])),
        ("cwd", info["cwd"]),
        ("started", info["started_at"]),
        ("ended", ended),
        ("duration", _duration(info)),
        ("exit status", "unknown" if info["exit_status"] is None else str(info["exit_status"])),
        ("events", per_type(info["counts"])),
        ("lost", per_type(info["lost"])),
        ("truncated", f"argv {info['truncated']['argv']}, path {info['truncated']['path']}"),
    ]
    if "audit" in info:
        rows.insert(2, ("audit", describe_audit(info["audit"])))
    if "kernel_features" in info:
        kf = info["kernel_features"]
        at = [name for name, _ in rows].index("host") + 1
        rows[at:at] = [("kernel", describe_kernel_features(kf)),
                       *(("notice", n) for n in kf["notices"])]
    if info["unknown_types"]:
        rows.append(("unknown", f"{info['unknown_types']} events of unknown types"))
    for gap in info.get("gaps", []):
        rows.append(("gap", describe_gap(gap).removeprefix("gap ")))
    rows.append(("format", info["format_version"]))
    rows.append(("file", _file_state(info)))
    width = max(len(name) for name, _ in rows) + 2
    return "".join(f"{name:<{width}}{printable(value)}\n" for name, value in rows)
