"""The exception hierarchy. The CLI (sessrec.cli) turns these into one-line
messages and exit codes; nothing else prints errors for the user."""

from __future__ import annotations


class SessrecError(Exception):
    """Base of every error sessrec expects and explains to the user."""

    exit_status = 1


class UsageError(SessrecError):
    """Bad flags or arguments."""

    exit_status = 2


class FormatError(SessrecError, ValueError):
    """A session file that is not one, is damaged, or is of an unknown version."""

    def __init__(self, message: str, path: str | None = None, offset: int | None = None):
        self.path = path
        self.offset = offset
        where = ""
        if path is not None:
            where = f"{path}: "
        if offset is not None:
            where += f"at byte {offset}: "
        super().__init__(where + message)


class PrivilegeError(SessrecError):
    """Not root, or a capability is missing."""

    exit_status = 4


class EnvironmentProblem(SessrecError):
    """The machine lacks something sessrec needs: BCC, BTF, a tracepoint, cgroup2."""

    exit_status = 3
