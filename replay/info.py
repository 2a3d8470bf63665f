"""The summary of a session file shown by `sessrec info` (and --json).

A completed file is summarised from its header and its trailer, found through
the footer without reading the events. A file without a valid footer (killed
recorder, damage) is scanned, and the counts come from the events read."""

from __future__ import annotations

import os
import shlex
from typing import NotRequired, TypedDict

from replay.auditlog import AuditInfo, audit_info, describe_audit
from replay.base import describe_gap
from replay.reader import open_session, read_trailer_fast
from replay.summary import SessionSummary, Tally, from_trailer
from replay.text import duration_text, printable
from sessrec import format as fmt
from sessrec.errors import FormatError


def session_summary(path: str | os.PathLike[str], check: bool = False) -> SessionSummary:
    """The file's summary: from its header and its trailer, found through the
    footer, when it has them and check is false; else from reading every
    event (check: to find damage between the header and the trailer)."""
    with open_session(path, strict=False) as session:
        try:
            trailer = read_trailer_fast(path)
        except FormatError:
            trailer = None  # a damaged footer: the scan below says where
        if trailer is not None and not check:
            return from_trailer(session, trailer)
        tally = Tally(session.header)
        add = tally.add
        for ev in session.records():
            add(ev)
        return tally.summary(session)


class Info(TypedDict):
    """`sessrec info --json`'s document (docs/FORMAT.md's header and trailer
    keys, as the summary judges them)."""

    session_id: str
    audit_session_id: int | None
    login_uid: int | None
    user: str
    uid: int
    hostname: str
    kernel: str
    command: list[str]
    cwd: str
    started_at: str
    ended_at: str | None
    duration_ns: int | None
    format_version: str
    exit_status: int | None
    end_reason: str | None
    counts: dict[str, int]
    lost: dict[str, int]
    truncated: fmt.Truncated
    tampered: int
    unknown_types: int
    complete: bool
    status: str
    damage: dict[str, object] | None
    checked: bool
    gaps: NotRequired[list[fmt.Gap | fmt.GapSpan]]
    audit: NotRequired[AuditInfo]
    kernel_features: NotRequired[fmt.KernelFeatures]
    race_check: NotRequired[bool]
    login: NotRequired[dict[str, str | int]]


def info_dict(summary: SessionSummary) -> Info:
    """The summary as `sessrec info --json` gives it (keys in display order)."""
    header = summary.header
    damage = summary.damage
    info: Info = {
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
        "ended_at": summary.ended_at,
        "duration_ns": summary.duration_ns,
        "format_version": summary.format_version,
        "exit_status": summary.exit_status,
        "end_reason": summary.end_reason,
        "counts": summary.counts,
        "lost": summary.lost,
        "truncated": summary.truncated,
        # Events the kernel's objects contradict, and moves out of the
        # session's cgroup (replay/trust.py): evidence of tampering.
        "tampered": summary.tampered,
        "unknown_types": summary.unknown_types,
        "complete": summary.complete,
        "status": summary.status,
        "damage": None if damage is None else damage.as_dict(),
        "checked": summary.body_checked,
    }
    if summary.gaps:  # the key only when there are any: summaries of older files stay as they were
        info["gaps"] = [g.copy() for g in summary.gaps]
    if "audit" in header:  # format 1.1 and later
        info["audit"] = audit_info(header, summary.trailer)
    if "kernel_features" in header:  # 2.1 and later
        info["kernel_features"] = header["kernel_features"]
    if "race_check" in header:  # 2.1 and later
        info["race_check"] = header["race_check"]
    if "login" in header:  # format 2.1: a login enrolled by the PAM hook (docs/NODE.md)
        info["login"] = dict(header["login"])
        tty = None if summary.trailer is None else summary.trailer.get("tty")
        if tty is not None:
            info["login"]["terminal"] = tty  # learned during the session; login.tty is PAM_TTY
    return info


def session_info(path: str | os.PathLike[str], check: bool = False) -> Info:
    """info_dict() of the file's summary (see session_summary)."""
    return info_dict(session_summary(path, check))


def _duration(info: Info) -> str:
    """The duration for people (the summary's: to the later of the trailer's
    end and the last event)."""
    ns = info["duration_ns"]
    if ns is None:
        return "unknown: the recording did not finish" if info["ended_at"] is None else "unknown"
    text = duration_text(ns)
    return text if info["ended_at"] is not None else f"{text}, to the last event (unfinished)"


def _file_state(info: Info) -> str:
    """'complete', or the status with where and why the reading stopped."""
    d = info["damage"]
    if d is None and not info.get("checked", True):
        return "complete (its events were not read: `sessrec info --check` reads them)"
    if d is None:
        return str(info["status"])
    return f"{info['status']}: read up to byte {d['offset']}: {d['reason']}"


def describe_kernel_features(kf: fmt.KernelFeatures) -> str:
    """The detected features as one line: what there was, what was not."""
    names = ("ringbuf", "get_current_task_btf", "task_pt_regs", "task_storage",
             "ancestor_cgroup_id", "openat2", "exit_group_dead")
    have = [n for n in names if kf.get(n) is True]
    lack = [n for n in names if kf.get(n) is False]
    text = f"{kf['release']}: {', '.join(have) or 'nothing detected'}"
    if lack:
        text += f"; without {', '.join(lack)}"
    match = "matching" if kf["headers_match"] else "not matching (offsets from BTF)"
    return f"{text}; headers {kf['headers'] or 'none'}, {match}"


def _login(login: dict[str, str | int]) -> str:
    """'alice from 203.0.113.9 port 51234, service sshd, tty pts/0'."""
    text = str(login.get("user", "?"))
    if login.get("remote_addr") is not None:
        text += f" from {login['remote_addr']} port {login.get('remote_port', '?')}"
    elif login.get("rhost") is not None:
        text += f" from {login['rhost']}"
    if login.get("service") is not None:
        text += f", service {login['service']}"
    tty = login.get("terminal", login.get("tty"))
    if tty is not None:
        text += f", tty {tty}"
    return text


def format_info(info: Info) -> str:
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

    if info["ended_at"] is not None:
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
    if "race_check" in info:
        rows.append(("race check", "on: each open's path buffer was compared at the call's "
                     "start and end" if info["race_check"] else
                     "off: a path buffer rewritten during an open is not flagged (the "
                     "path shown is the kernel's either way)"))
    if info["tampered"]:
        moves = info["counts"].get("cgroup", 0)
        rows.append(("tampering", f"{info['tampered']} events flagged tampered ("
                     f"{moves} cgroup moves of session processes): see "
                     "'sessrec search --tampered'"))
    if "login" in info:
        rows.insert(2, ("login", _login(info["login"])))
    if info["unknown_types"]:
        rows.append(("unknown", f"{info['unknown_types']} events of unknown types"))
    for gap in info.get("gaps", []):
        rows.append(("gap", describe_gap(gap).removeprefix("gap ")))
    rows.append(("format", info["format_version"]))
    rows.append(("file", _file_state(info)))
    width = max(len(name) for name, _ in rows) + 2
    return "".join(f"{name:<{width}}{printable(value)}\n" for name, value in rows)
