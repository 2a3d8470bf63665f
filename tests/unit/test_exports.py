"""The exports, field by field: Teleport's audit events against the field
list of issue 4 and Teleport's events.proto types; ECS documents against
the ECS 8.x field definitions; jsonl through the CLI against the contract."""

from __future__ import annotations

import io
import ipaddress
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from srec_util import GOLDEN, GOLDEN_DIR, HEADER, write_session

from replay import ecs, progress
from replay.export_ids import Ids
from replay.model import ProcessModel
from replay.terms import parse_instant
from sessrec.cli import main

FORK, EXEC, EXIT, OPEN, CONNECT, CHDIR = 1, 2, 3, 4, 5, 6


def export(path: Path, fmt: str, stderr: io.StringIO | None = None) -> list[dict[str, Any]]:
    out = io.StringIO()
    err = stderr if stderr is not None else io.StringIO()
    assert main(["export", str(path), "--format", fmt], stdout=out, stderr=err) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def is_time(value: object) -> bool:
    return isinstance(value, str) and parse_instant(value) is not None


# --- Teleport ----------------------------------------------------------------------
# Field -> type, from Teleport's events.proto (Metadata, SessionMetadata,
# UserMetadata, ServerMetadata, BPFMetadata and the event messages). "int"
# fields carry their proto range.

U32, U64, I32, I64 = (0, 2**32 - 1), (0, 2**64 - 1), (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
COMMON = {"ei": I64, "event": str, "code": str, "time": "time", "uid": "uuid", "sid": str,
          "login": str, "user": str, "server_id": "uuid", "server_hostname": str}
BPF = {"pid": U64, "cgroup_id": U64, "program": str, "audit_session_id": U32}
TELEPORT: dict[str, tuple[str, dict[str, Any]]] = {
    "session.start": ("T2000I", {**COMMON, "initial_command": [str]}),
    "session.end": ("T2004I", {**COMMON, "enhanced_recording": bool, "participants": [str],
                               "session_start": "time", "session_stop": "time",
                               "initial_command": [str], "interactive": bool}),
    "session.command": ("T4000I", {**COMMON, **BPF, "ppid": U64, "path": str, "argv": [str],
                                   "return_code": I32}),
    "session.disk": ("T4001I", {**COMMON, **BPF, "path": str, "flags": I32, "return_code": I32}),
    "session.network": ("T4002I", {**COMMON, **BPF, "src_addr": "ip", "dst_addr": "ip",
                                   "dst_port": I32, "version": I32, "operation": I32,
                                   "action": I32}),
    "session.process_exit": ("SR4003I", {**COMMON, **BPF, "ppid": U64, "exit_code": I32,
                                         "signal": I32, "core_dumped": bool}),
}


def check_value(value: object, spec: object, where: str) -> None:
    if spec == "time":
        assert is_time(value), where
    elif spec == "uuid":
        assert isinstance(value, str) and str(uuid.UUID(value)) == value, where
    elif spec == "ip":
        assert isinstance(value, str), where
        ipaddress.ip_address(value)
    elif isinstance(spec, tuple):
        assert type(value) is int and spec[0] <= value <= spec[1], where
    elif isinstance(spec, list):
        assert isinstance(value, list) and all(type(v) is spec[0] for v in value), where
    else:
        assert type(value) is spec, where


def test_teleport_fields_and_types() -> None:
    events = export(GOLDEN, "teleport")
    for i, e in enumerate(events):
        code, fields = TELEPORT[e["event"]]
        assert e["code"] == code
        assert set(e) == set(fields), e["event"]
        for key, spec in fields.items():
            check_value(e[key], spec, f"{e['event']}.{key}")
        assert e["ei"] == i
        assert e["sid"] == HEADER["session_id"]
        assert e["login"] == e["user"] == "alice" and e["server_hostname"] == "build-07"
    assert len({e["uid"] for e in events}) == len(events)
    assert export(GOLDEN, "teleport") == events  # deterministic


def test_event_ids_are_uuid8_of_the_session_and_index() -> None:
    ids = Ids(HEADER["session_id"], "ecs")
    first, other = ids.event(0), Ids("not-a-uuid", "ecs").event(0)
    assert uuid.UUID(first).version == 8 and uuid.UUID(first).variant == uuid.RFC_4122
    assert first != other and first[:24] == ids.event(2**48 - 1)[:24]
    assert ids.event(255).endswith("-0000000000ff") and Ids(HEADER["session_id"], "ecs").event(
        255) == ids.event(255)
    docs = export(GOLDEN, "ecs")
    assert [d["event"]["id"] for d in docs] == [ids.event(d["event"]["sequence"]) for d in docs]


def test_event_ids_differ_between_schemas_and_are_stable() -> None:
    """A SIEM ingesting both exports of one session sees no id twice; each
    export's ids are the same at every export, and Teleport's are those
    made before the schemas were split (its golden file's)."""
    teleport, ecs = export(GOLDEN, "teleport"), export(GOLDEN, "ecs")
    t_ids, e_ids = [e["uid"] for e in teleport], [d["event"]["id"] for d in ecs]
    assert not set(t_ids) & set(e_ids)
    for index in (0, 1, 2**48 - 1):
        assert Ids("s", "teleport").event(index) != Ids("s", "ecs").event(index)
    assert t_ids == [e["uid"] for e in export(GOLDEN, "teleport")]
    assert e_ids == [d["event"]["id"] for d in export(GOLDEN, "ecs")]
    golden = GOLDEN_DIR / GOLDEN.name.replace(".srec", ".teleport.jsonl")
    assert t_ids == [json.loads(line)["uid"] for line in golden.read_text().splitlines()]
    assert t_ids[0] == "550ac807-db59-809f-9d06-000000000000"


def test_teleport_values() -> None:
    events = export(GOLDEN, "teleport")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "session.start" and kinds[-1] == "session.end"
    assert kinds.count("session.command") == 4 and kinds.count("session.disk") == 8
    assert kinds.count("session.process_exit") == 3
    net = [e for e in events if e["event"] == "session.network"]
    # the two unix-socket connects have no Teleport form
    assert [(e["dst_addr"], e["dst_port"], e["version"], e["src_addr"]) for e in net] == [
        ("2001:db8::1", 443, 6, "::"), ("192.0.2.53", 53, 4, "0.0.0.0")]
    assert all(e["operation"] == 0 and e["action"] == 0 for e in net)
    env = next(e for e in events if e["event"] == "session.command" and e["pid"] == 1001
               and e["return_code"] == 0)
    assert env["path"] == "/usr/bin/env"  # resolved through the execveat fd
    assert env["argv"] == ["A=1\nB=2", 'quote"back\\slash\ttab', "\\xff\\xfe café"]  # no argv[0]
    assert env["ppid"] == 1000 and env["program"] == "bash" and env["cgroup_id"] == 9876
    disk = next(e for e in events if e["event"] == "session.disk" and e["return_code"] == -13)
    assert disk["path"] == "/root/x" and disk["flags"] == 0o1101
    killed = next(e for e in events if e["event"] == "session.process_exit" and e["pid"] == 1001)
    assert (killed["exit_code"], killed["signal"], killed["core_dumped"]) == (137, 9, False)
    end = events[-1]
    assert end["session_start"] == HEADER["started_at"]
    assert end["session_stop"] == "2026-11-21T11:10:02.025123Z" == end["time"]


def _connects(tmp_path: Path, *conns: tuple[int, int, bytes]) -> Path:
    """A session of connects: (sock_type, protocol, sockaddr) each."""
    p = tmp_path / "c.srec"
    write_session(p, [[CONNECT, i, 1000, 1000, 999, 1000, b"ping", 0, 0, 3, *c]
                      for i, c in enumerate(conns)])
    return p


V4 = b"\x02\x00\x00\x00\xc0\x00\x02\x01" + bytes(8)  # 192.0.2.1, port 0
V6 = b"\x0a\x00\x01\xbb" + bytes(4) + bytes(15) + b"\x01" + bytes(4)  # [::1]:443


def test_teleport_leaves_out_raw_and_icmp_connects(tmp_path: Path) -> None:
    """A connect() on a raw or ICMP socket makes no connection (and has no
    port): not what session.network's CONNECT means."""
    p = _connects(tmp_path, (3, 1, V4), (2, 1, V4), (2, 58, V6), (1, 6, V6))
    net = [e for e in export(p, "teleport") if e["event"] == "session.network"]
    assert [(e["dst_addr"], e["dst_port"]) for e in net] == [("::1", 443)]


def test_teleport_server_id_is_stable_per_host() -> None:
    events = export(GOLDEN, "teleport")
    assert len({e["server_id"] for e in events}) == 1
    assert events[-1]["interactive"] is False


def test_ecs_transport_is_an_iana_keyword(tmp_path: Path) -> None:
    p = _connects(tmp_path, (2, 1, V4), (2, 58, V6), (1, 262, V6), (1, 132, V6), (1, 6, V6))
    docs = export(p, "ecs")
    got = [(d["network"].get("transport"), d["network"].get("iana_number"),
            d["sessrec"].get("mptcp")) for d in docs]
    assert got == [("icmp", "1", None), ("ipv6-icmp", "58", None), ("tcp", "6", True),
                   ("sctp", "132", None), ("tcp", "6", None)]


def test_teleport_unfinished_file_has_no_session_end(tmp_path: Path) -> None:
    p = tmp_path / "u.srec"
    header = {**HEADER, "audit_session_id": None}
    write_session(p, [[FORK, 1, 1000, 1000, 999, 1000, b"sh", 0, 1001], "flush"],
                  trailer=None, header=header)
    err = io.StringIO()
    events = export(p, "teleport", err)
    assert [e["event"] for e in events] == ["session.start"]
    assert "the recording did not finish" in err.getvalue()
    p2 = tmp_path / "v.srec"
    write_session(p2, [[EXIT, 1, 1000, 1000, 999, 1000, b"sh", 0, 0]], header=header)
    assert export(p2, "teleport")[1]["audit_session_id"] == 4294967295  # unset, as Teleport


# --- ECS ---------------------------------------------------------------------------
# The ECS 8.x fields these documents use, with their types, from the ECS
# field reference (Base, ECS, Event, Host, User, Process, File, Destination,
# Network; process.parent, entry_leader and session_leader reuse Process).

LEADER = {"pid": "long", "entity_id": "keyword", "args": "keyword", "args_count": "long",
          "start": "date", "working_directory": "keyword", "name": "keyword",
          "executable": "keyword"}
ECS_FIELDS: dict[str, str] = {
    "@timestamp": "date",
    "ecs.version": "keyword",
    "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword",
    "event.action": "keyword", "event.outcome": "keyword", "event.id": "keyword",
    "event.sequence": "long", "event.module": "keyword", "event.dataset": "keyword",
    "host.name": "keyword", "host.hostname": "keyword", "host.os.type": "keyword",
    "host.os.kernel": "keyword",
    "user.id": "keyword", "user.name": "keyword",
    "process.pid": "long", "process.entity_id": "keyword", "process.start": "date",
    "process.end": "date", "process.thread.id": "long", "process.user.id": "keyword",
    "process.args": "keyword", "process.args_count": "long", "process.executable": "keyword",
    "process.name": "keyword", "process.working_directory": "keyword",
    "process.exit_code": "long", "process.parent.pid": "long",
    "process.parent.entity_id": "keyword",
    **{f"process.entry_leader.{k}": v for k, v in LEADER.items()},
    **{f"process.session_leader.{k}": v for k, v in LEADER.items()},
    "file.path": "keyword", "file.name": "keyword", "file.directory": "keyword",
    "destination.address": "keyword", "destination.ip": "ip", "destination.port": "long",
    "network.type": "keyword", "network.transport": "keyword", "network.direction": "keyword",
    "network.iana_number": "keyword",
}
ARRAYS = {"event.category", "event.type", "process.args", "process.entry_leader.args",
          "process.session_leader.args"}
# ECS categorization: the allowed event.type values of each event.category.
ALLOWED_TYPES = {
    "process": {"access", "change", "end", "info", "start"},
    "file": {"access", "change", "creation", "deletion", "info"},
    "network": {"access", "allowed", "connection", "denied", "end", "info", "protocol", "start"},
}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        name = prefix + key
        if isinstance(value, dict) and name != "labels":
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def check_ecs_type(name: str, value: object) -> None:
    kind = ECS_FIELDS[name]
    values = value if name in ARRAYS else [value]
    assert isinstance(values, list)
    for v in values:
        if kind == "keyword":
            assert isinstance(v, str), name
        elif kind == "long":
            assert type(v) is int, name
        elif kind == "date":
            assert is_time(v), name
        elif kind == "ip":
            assert isinstance(v, str) and ipaddress.ip_address(v), name


def test_ecs_fields_and_types() -> None:
    docs = export(GOLDEN, "ecs")
    assert len(docs) == 24
    for i, doc in enumerate(docs):
        for name, value in flatten(doc).items():
            if name == "labels":
                assert all(isinstance(v, str) for v in value.values())  # labels are keywords
            elif name.startswith("sessrec."):
                pass  # custom fields, outside the ECS namespaces
            else:
                assert name in ECS_FIELDS, name
                check_ecs_type(name, value)
        ev = doc["event"]
        assert ev["kind"] == "event" and ev["sequence"] == i
        (category,) = ev["category"]
        assert set(ev["type"]) <= ALLOWED_TYPES[category]
        assert ev["outcome"] in {"success", "failure", "unknown"}
        assert doc["ecs"]["version"].startswith("8.")
        assert doc["labels"]["session_id"] == HEADER["session_id"]
        assert doc["host"]["name"] == "build-07" and doc["user"]["id"] == "1000"
        assert ("exit_code" in doc["process"]) == (ev["type"] == ["end"])
        assert doc["process"].get("args_count", 0) == len(doc["process"].get("args", []))


def test_ecs_values() -> None:
    docs = export(GOLDEN, "ecs")
    by_action: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_action.setdefault(d["event"]["action"], []).append(d)
    executables = {d["process"]["executable"] for d in by_action["exec"]
                   if d["event"]["outcome"] == "success"}
    # Paths of opened files never stand in for process.executable.
    for d in by_action["open"]:
        assert d["process"].get("executable") in executables | {None}
        if "path" in d["file"]:
            assert d["process"].get("executable") != d["file"]["path"]
    first = by_action["open"][0]
    assert first["file"] == {"path": "/home/alice/todo.txt", "directory": "/home/alice",
                             "name": "todo.txt"}
    assert first["process"]["executable"] == "/bin/bash"
    assert first["process"]["working_directory"] == "/home/alice"
    creat = next(d for d in by_action["open"] if d["file"].get("path") == "/root/x")
    assert creat["event"]["type"] == ["creation"] and creat["event"]["outcome"] == "failure"
    unresolved = by_action["open"][-1]  # the outsider's relative open
    assert unresolved["file"] == {"name": "relative.log"}
    # The leaders: the recorded command, the same in every document.
    leaders = {json.dumps(d["process"]["entry_leader"], sort_keys=True) for d in docs}
    assert len(leaders) == 1
    leader = docs[0]["process"]["entry_leader"]
    assert leader == docs[0]["process"]["session_leader"]
    assert leader["pid"] == 1000 and leader["executable"] == "/bin/bash"
    assert leader["args"] == ["/bin/bash", "-l"] and leader["start"] == HEADER["started_at"]
    assert leader["entity_id"] == docs[0]["process"]["entity_id"]
    # The tree Session View draws: parent entity ids.
    fork = by_action["fork"][0]
    assert fork["process"]["pid"] == 1001
    assert fork["process"]["parent"] == {"pid": 1000, "entity_id": leader["entity_id"]}
    assert fork["process"]["executable"] == "/bin/bash"  # runs its parent's program
    env = by_action["exec"][2]
    assert env["process"]["executable"] == "/usr/bin/env" and env["process"]["name"] == "env"
    assert env["process"]["args"][0] == "env" and env["sessrec"]["argv_truncated"] is True
    failed_exec = by_action["exec"][1]
    assert failed_exec["event"]["outcome"] == "failure"
    assert failed_exec["process"]["executable"] == "/bin/bash"  # the caller
    assert failed_exec["file"] == {"path": "nosuch", "name": "nosuch"}  # what it tried
    conns = by_action["connect"]
    assert [c["destination"] for c in conns] == [
        {"address": "@dbus-6f1c"},
        {"address": "/run/systemd/journal/socket"},
        {"address": "2001:db8::1", "ip": "2001:db8::1", "port": 443},
        {"address": "192.0.2.53", "ip": "192.0.2.53", "port": 53},
    ]
    assert conns[2]["network"] == {"type": "ipv6", "direction": "egress", "transport": "tcp",
                                   "iana_number": "6"}
    assert conns[2]["event"]["outcome"] == "unknown"  # EINPROGRESS
    assert conns[3]["network"]["type"] == "ipv4" and conns[3]["network"]["transport"] == "udp"
    killed = by_action["exit"][0]
    assert killed["process"]["exit_code"] == 137 and killed["sessrec"]["signal"] == 9
    assert killed["process"]["end"] == killed["@timestamp"]
    assert killed["process"]["working_directory"] == "/usr/bin"  # known at exit too


# --- jsonl and the progress bar ----------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_jsonl_through_the_cli_is_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (GOLDEN_DIR / "v1.0-synthetic.jsonl").read_text(encoding="utf-8")
    out, err = io.StringIO(), Tty()
    assert main(["export", str(GOLDEN)], stdout=out, stderr=err) == 0
    assert out.getvalue() == expected and err.getvalue() == ""  # too short for a bar
    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress.ProgressSession, "EVERY", 1)
    for fmt in ("jsonl", "teleport", "ecs"):
        out, err = io.StringIO(), Tty()
        assert main(["export", str(GOLDEN), "--format", fmt], stdout=out, stderr=err) == 0
        bar = err.getvalue()
        assert re.search(r"\r *\d+% \[[#.]{30}\] +0\.0 / 0\.0 MB", bar), bar
        assert bar.endswith("\r\x1b[K")  # erased at the end
        plain = io.StringIO()
        assert main(["export", str(GOLDEN), "--format", fmt], stdout=plain,
                    stderr=io.StringIO()) == 0
        assert out.getvalue() == plain.getvalue()
    # No bar when stdout is the terminal too, or stderr is not one.
    out, err = Tty(), Tty()
    assert main(["export", str(GOLDEN)], stdout=out, stderr=err) == 0
    assert err.getvalue() == ""


def test_progress_bar() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = progress.Progress(out, 2_000_000, delay=1.0, interval=0.5, width=10,
                            clock=lambda: now[0])
    bar.update(100)
    assert out.getvalue() == ""  # not before the delay
    now[0] = 1.0
    bar.update(1_000_000)
    assert out.getvalue() == "\r 50% [#####.....]     1.0 / 2.0 MB"
    now[0] = 1.2
    bar.update(1_500_000)  # within the interval: not redrawn
    now[0] = 1.6
    bar.update(2_000_000)
    assert out.getvalue().endswith("\r100% [##########]     2.0 / 2.0 MB")
    bar.finish()
    assert out.getvalue().endswith("\r\x1b[K")


def test_export_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    assert main(["export", str(GOLDEN), "--format", "ecs", "-o", str(target)],
                stdout=io.StringIO(), stderr=io.StringIO()) == 0
    assert target.read_text(encoding="utf-8") == (
        GOLDEN_DIR / "v1.0-synthetic.ecs.jsonl").read_text(encoding="utf-8")
    err = io.StringIO()
    assert main(["export", str(GOLDEN), "-o", str(tmp_path / "no" / "x")],
                stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue().startswith("sessrec: error: cannot write ") and err.getvalue().count(
        "\n") == 1


# --- ECS's streaming process model ---------------------------------------------
# Events of five pids (1000 is the header's leader): forks, execs, exits,
# opens and chdirs, in or out of time order, with pids used again, children
# seen before their fork, comms and ppids that change.
_PIDS = st.integers(1000, 1004)
_BODIES = {
    FORK: st.builds(lambda c: [c], _PIDS),
    EXEC: st.builds(lambda ret, path: [ret, path, [path, b"-x"], 2, 0, 0],
                    st.sampled_from([0, -2]), st.sampled_from([b"/bin/a", b"b", b""])),
    EXIT: st.builds(lambda raw: [raw], st.sampled_from([0, 9])),
    OPEN: st.builds(lambda ret, path: [ret, 1, -100, path, 0, 0],
                    st.sampled_from([3, -2]), st.sampled_from([b"/f", b"g"])),
    CHDIR: st.builds(lambda ret, path: [ret, -1, path],
                     st.sampled_from([0, -2]), st.sampled_from([b"/tmp", b"d"])),
}
_EVENTS = st.lists(st.tuples(
    st.sampled_from(sorted(_BODIES)).flatmap(lambda t: st.tuples(st.just(t), _BODIES[t])),
    _PIDS, _PIDS, st.sampled_from([b"sh", b"x"]), st.integers(-2, 3),
), max_size=40)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_EVENTS)
def test_ecs_shows_what_a_model_that_keeps_every_process_shows(
        tmp_path: Path, drawn: list[Any]) -> None:
    ts = 1_000_000
    records = []
    for (t, body), pid, ppid, comm, step in drawn:
        ts += step * 1000
        records.append([t, ts, pid, pid, ppid, 1000, comm, 0, *body])
    p = tmp_path / "s.srec"
    p.unlink(missing_ok=True)
    write_session(p, records, header={**HEADER, "leader_pid": 1000})
    streamed = export(p, "ecs")

    def keeping(leader_pid: int | None, **kw: Any) -> ProcessModel:
        return ProcessModel(leader_pid, **{**kw, "keep": True})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ecs, "ProcessModel", keeping)
        kept = export(p, "ecs")
    assert streamed == kept


def test_ecs_shows_a_renamed_process_by_its_new_name(tmp_path: Path) -> None:
    p = tmp_path / "s.srec"
    write_session(p, [
        [FORK, 1, 1000, 1000, 999, 1000, b"sh", 0, 1001],
        [OPEN, 2, 1001, 1001, 1000, 1000, b"sh", 0, 3, 1, -100, b"/a", 0, 0],
        [OPEN, 3, 1001, 1001, 1000, 1000, b"worker", 0, 3, 1, -100, b"/b", 0, 0],
    ])
    names = [d["process"]["name"] for d in export(p, "ecs")]
    assert names == ["sh", "sh", "worker"]
