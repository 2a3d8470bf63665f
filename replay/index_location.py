"""Where the index of a directory of session files lives: DIR/.sessrec-index.sqlite
when DIR is writable and the file there is ours, else under $XDG_CACHE_HOME/sessrec/
(replay/index.py opens it, or an in-memory one as a last resort)."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping

INDEX_NAME = ".sessrec-index.sqlite"


def _own_regular_file(path: str) -> bool | None:
    """True if path is a regular file of ours (not a symlink), None if absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def cache_index_path(root: str, environ: Mapping[str, str]) -> str:
    """$XDG_CACHE_HOME/sessrec/index-<hash of DIR>.sqlite (default ~/.cache)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache"
    )
    digest = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()[:20]
    return os.path.join(base, "sessrec", f"index-{digest}.sqlite")


def choose_index_path(root: str, environ: Mapping[str, str] | None = None) -> str:
    """Where the index of root goes: in root if we may write there and any
    existing index file is a regular file we own; else in the cache directory;
    else ":memory:"."""
    env = os.environ if environ is None else environ
    in_dir = os.path.join(root, INDEX_NAME)
    mine = _own_regular_file(in_dir)
    if mine or (mine is None and os.access(root, os.W_OK | os.X_OK)):
        return in_dir
    cached = cache_index_path(root, env)
    try:
        os.makedirs(os.path.dirname(cached), mode=0o700, exist_ok=True)
    except OSError:
        return ":memory:"
    if _own_regular_file(cached) is False or not os.access(
        os.path.dirname(cached), os.W_OK | os.X_OK
    ):
        return ":memory:"
    return cached
