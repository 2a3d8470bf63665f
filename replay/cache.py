"""The read side's caches of encoded text, bounded by size as well as by
count.

What goes in them comes from the file, which is untrusted: a small file can
make every key new and long (150,000 distinct 4 KiB paths, or argv of 32
KiB of NULs that JSON makes six times longer), so a cache bounded by its
number of entries alone could hold gigabytes. Each is emptied when it
holds `limit` entries or `budget` characters of keys and values (Budget);
a miss only costs the text's making again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

# Characters (or bytes) a cache holds at most: at most 4 bytes each (a str
# of characters past U+FFFF), 16 MiB. A session's usual paths, argv and
# process texts take a few hundred kilobytes.
BUDGET: Final = 4 << 20

_K = TypeVar("_K")
_V = TypeVar("_V")


class Budget:
    """The bounds of one cache, a plain dict (whose hot path, dict.get, stays
    a dict's): keep() puts in it, and empties it first when it holds `limit`
    entries or `budget` characters."""

    __slots__ = ("budget", "limit", "size")

    def __init__(self, limit: int = 65536, budget: int = BUDGET):
        self.limit = limit
        self.budget = budget
        self.size = 0

    def keep(self, cache: dict[_K, _V], key: _K, value: _V, size: int) -> _V:
        """cache[key] = value, size being what both hold (their lengths);
        return value."""
        if len(cache) >= self.limit or self.size + size > self.budget:
            cache.clear()
            self.size = 0
        cache[key] = value
        self.size += size
        return value


class Texts(dict[_K, str]):
    """A cache of the text func makes for each key (cache[key]), within a
    Budget."""

    __slots__ = ("bounds", "func")

    def __init__(self, func: Callable[[_K], str], limit: int = 65536,
                 budget: int = BUDGET):
        super().__init__()
        self.func = func
        self.bounds = Budget(limit, budget)

    def __missing__(self, key: _K) -> str:
        value = self.func(key)
        # the key is at most as long as its text (JSON, escaped), but for an int
        return self.bounds.keep(self, key, value, 2 * len(value))
