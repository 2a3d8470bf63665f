"""Property tests: what the writer writes, the reader gives back."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from srec_util import HEADER, TRAILER, read_all

from recorder.writer import SessionWriter
from sessrec import format as fmt
from sessrec.event import TYPE_NAMES

i64 = st.integers(-(2**63), 2**63 - 1)
u32 = st.integers(0, 2**32 - 1)
blob = st.binary(max_size=64)


def _common(t: int) -> st.SearchStrategy[list[Any]]:
    return st.tuples(st.just(t), i64, u32, u32, u32, u32, st.binary(max_size=16), u32).map(list)


BODIES: dict[int, st.SearchStrategy[tuple[Any, ...]]] = {
    1: st.tuples(u32),
    2: st.tuples(i64, blob, st.lists(blob, max_size=8), u32, u32, st.integers(0, 1)),
    3: st.tuples(u32),
    4: st.tuples(i64, st.integers(0, 3), i64, blob, u32, u32),
    5: st.tuples(i64, i64, u32, u32, blob),
    6: st.tuples(i64, i64, blob),
}


@st.composite
def events(draw: st.DrawFn) -> list[Any]:
    t = draw(st.sampled_from(sorted(BODIES)))
    return draw(_common(t)) + list(draw(BODIES[t]))


stats = st.fixed_dictionaries(
    {"ts": i64, "lost": st.dictionaries(st.sampled_from(list(TYPE_NAMES.values())), u32)}
)
records = st.lists(st.one_of(events(), events(), events(), stats, st.just("flush")), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=records, chunk=st.integers(1, 600), complete=st.booleans())
def test_roundtrip(records: list[Any], chunk: int, complete: bool) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.srec")
        w = SessionWriter(path, HEADER, max_chunk_bytes=chunk)
        lost: dict[str, int] = {}
        for r in records:
            if r == "flush":
                w.flush()
            elif isinstance(r, dict):
                w.add_stats(r)
                lost = r["lost"]
            else:
                w.add(r)
        w.close(TRAILER if complete else None)
        got, session = read_all(path)
    want = [r for r in records if isinstance(r, list)]
    assert got == want
    assert session.stats_lost == lost
    written = [fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR]
    assert session.header == {"k": "header", "format": written, **HEADER}
    assert session.events_read == len(want)
    if complete:
        assert session.damage is None
        assert session.trailer == {"k": "trailer", **TRAILER}
    else:
        assert session.trailer is None
        assert session.damage is not None and session.damage.truncated


# An open's fields, then those BPF ABI 2 appended (kpath, kpath_src,
# kroot_len): a newer minor's come after.
OPEN_V2 = [4, 1, 2, 2, 1, 0, b"c", 0, 3, 1, -100, b"/x", 0, 0, b"", 0, 0]


def assert_read_as_the_open(e: list[Any]) -> None:
    """e, written alone, reads as the fields this version knows, undamaged."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.srec")
        w = SessionWriter(path, HEADER)
        w.add(e)
        w.close(TRAILER)
        got, session = read_all(path)
    assert got == [e[:14]]
    assert session.damage is None


@settings(max_examples=30, deadline=None)
@given(extra=st.lists(st.one_of(i64, blob, st.text(max_size=5)), min_size=1, max_size=4))
def test_longer_arrays_of_a_newer_minor_are_read(extra: list[Any]) -> None:
    assert_read_as_the_open([*OPEN_V2, *extra])


def test_an_array_of_256_fields_or_more_is_read_as_a_newer_minor() -> None:
    """The reader's one-lookup shapes are keyed by type and length under
    256: a longer array must not be taken for another type's shape."""
    e = [*OPEN_V2, *range(256 - 17 + 14)]
    assert len(e) == 256 + 14  # (4 << 8 | 270) is (5 << 8 | 14): a connect's length
    assert_read_as_the_open(e)
