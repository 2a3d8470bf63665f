"""replay.cache: the read side's caches are bounded by size, not only count."""

from __future__ import annotations

from replay.cache import Budget, Texts


def test_a_budget_empties_its_cache_past_its_characters() -> None:
    cache: dict[int, str] = {}
    budget = Budget(limit=100, budget=10_000)
    for i in range(25):  # 25 texts of 1,000 characters: 25,000 in all
        assert budget.keep(cache, i, "x" * 1000, 1000) == "x" * 1000
        assert budget.size <= 10_000 and sum(map(len, cache.values())) <= 10_000
    assert cache and 24 in cache and 0 not in cache


def test_a_budget_empties_its_cache_past_its_count() -> None:
    cache: dict[int, str] = {}
    budget = Budget(limit=3)
    for i in range(7):
        budget.keep(cache, i, "", 0)
        assert len(cache) <= 3
    assert 6 in cache


def test_texts_makes_missing_texts_within_its_budget() -> None:
    made: list[bytes] = []

    def text(key: bytes) -> str:
        made.append(key)
        return key.decode() * 2

    texts: Texts[bytes] = Texts(text, budget=1000)
    assert texts[b"ab"] == "abab" and texts[b"ab"] == "abab" and made == [b"ab"]
    for i in range(10):  # each costs 2 x 200 characters: never more than 1,000 kept
        texts[b"%0100d" % i]
        assert sum(2 * len(v) for v in texts.values()) <= 1000
    assert len(made) == 11
