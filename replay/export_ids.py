"""Stable identifiers for exported events and processes.

Exports are deterministic: exporting a file twice gives the same bytes, so
an event id is derived from the session id and the event's position, and a
process id from the session id, the pid and the time it started."""

from __future__ import annotations

import hashlib
import uuid


class Ids:
    def __init__(self, session_id: str):
        self.session_id = session_id
        try:
            self.namespace = uuid.UUID(session_id)
        except ValueError:  # not a UUID (a hostile or hand-made file)
            self.namespace = uuid.uuid5(uuid.NAMESPACE_URL, "sessrec:" + session_id)
        self._ns = self.namespace.bytes

    def event(self, index: int) -> str:
        """A UUID (version 5) for the index-th exported event: uuid.uuid5,
        spelled out because building a UUID object is most of its cost."""
        b = bytearray(hashlib.sha1(self._ns + str(index).encode()).digest()[:16])
        b[6] = (b[6] & 0x0F) | 0x50  # version 5
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        x = b.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    def process(self, pid: int, start_ns: int) -> str:
        """An opaque id for one process of the session (pid reuse safe)."""
        key = f"{self.session_id}/{pid}/{start_ns}".encode()
        return hashlib.blake2b(key, digest_size=12).hexdigest()

    def server(self, hostname: str) -> str:
        """Teleport's server_id for the recording host: a UUID (version 5) of
        its name, as sessrec has no node id; the same for every session of
        that host."""
        return str(uuid.uuid5(_SERVERS, hostname))


# The namespace of server ids: uuid5(NAMESPACE_URL, "sessrec:server").
_SERVERS = uuid.uuid5(uuid.NAMESPACE_URL, "sessrec:server")
