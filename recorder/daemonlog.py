"""The daemon's structured log: one line per event on stderr (journald
collects it), as JSON or as text (`--log-format json|text`)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

FORMATS = ("text", "json")


class Log:
    def __init__(self, fmt: str = "text", stream: TextIO | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r}")
        self.fmt = fmt
        self.stream = stream or sys.stderr

    def __call__(self, event: str, level: str = "info", **fields: Any) -> None:
        now = time.time_ns()
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 10**9)) + \
            f".{now // 1000 % 1000000:06d}Z"
        if self.fmt == "json":
            line = json.dumps({"ts": ts, "level": level, "event": event, **fields},
                              separators=(",", ":"), default=str)
        else:
            parts = [ts, level, event]
            parts += [f"{k}={_text(v)}" for k, v in fields.items()]
            line = " ".join(parts)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not stop the daemon


def _text(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), default=str)
    if s == "" or any(c.isspace() or c in '"=' for c in s):
        return json.dumps(s)
    return s
