"""Stable identifiers for exported events and processes.

Exports are deterministic: exporting a file twice gives the same bytes, so
an event id is derived from the session id and the event's position, and a
process id from the session id, the pid and the time it started."""

from __future__ import annotations

import hashlib
import uuid

# A hex digit with its top two bits set to the RFC 4122 variant, 10.
_VARIANT = {h: "89ab"[int(h, 16) & 3] for h in "0123456789abcdef"}


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
        x = hashlib.sha1(self._ns + b"%d" % index).hexdigest()
        # The version (5) and the RFC 4122 variant (10xx) in their nibbles.
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"

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
