"""Stable identifiers for exported events and processes.

Exports are deterministic: exporting a file twice gives the same bytes, so
an event id is derived from the session id, the schema and the event's
position, and a process id from the session id, the pid and the time it
started.

An event id is a UUID of version 8 (RFC 9562's custom layout): 74 bits
hashed from the session id and the schema, then the event's index in its
last 48 bits. It is unique per session, schema and event, stable across
exports, and made with one format per event: a SHA-1 per event (a UUID 5
of the index, before) was a fifth of the ECS export's time.

Each schema has its own prefix: a SIEM that ingests both the Teleport and
the ECS export of one session must not see two documents with one id (the
same index is a different event in each: Teleport's 0 is session.start)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Final, Literal

Schema = Literal["teleport", "ecs"]
# The name hashed into each schema's prefix. "events", Teleport's, is what
# both used before 2026-11-29's split: Teleport's ids did not change then.
_EVENTS_NAME: Final[dict[str, str]] = {"teleport": "events", "ecs": "ecs-events"}


class Ids:
    def __init__(self, session_id: str, schema: Schema):
        self.session_id = session_id
        try:
            self.namespace = uuid.UUID(session_id)
        except ValueError:  # not a UUID (a hostile or hand-made file)
            self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, "sessrec:" + session_id)
        # The UUID 5 of the schema's events name in the session's namespace,
        # its version made 8, and its first 80 bits (of which 6 are version
        # and variant).
        events = uuid.uuid5(self.namespace, _EVENTS_NAME[schema]).int
        events = events & ~(0xF << 76) | (8 << 76)
        self.event_prefix = str(uuid.UUID(int=events))[:24]
        # process()'s hash with the session id already in it: a copy of it
        # costs less than hashing the id again for each process.
        self._process_hash = hashlib.blake2b(f"{session_id}/".encode(), digest_size=12)

    def event(self, index: int) -> str:
        """The index-th exported event's UUID: event_prefix then the index
        in 12 hex digits (a hot loop may inline this format)."""
        return f"{self.event_prefix}{index:012x}"

    def process(self, pid: int, start_ns: int) -> str:
        """An opaque id for one process of the session (pid reuse safe)."""
        h = self._process_hash.copy()  # blake2b of "session_id/pid/start_ns"
        h.update(f"{pid}/{start_ns}".encode())
        return h.hexdigest()

    def server(self, hostname: str) -> str:
        """Teleport's server_id for the recording host: a UUID (version 5) of
        its name, as sessrec has no node id; the same for every session of
        that host."""
        return str(uuid.uuid5(_SERVERS, hostname))


# The namespace of server ids: uuid5(NAMESPACE_URL, "sessrec:server").
_SERVERS = uuid.uuid5(uuid.NAMESPACE_URL, "sessrec:server")
