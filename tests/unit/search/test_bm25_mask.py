"""The BM25 side's tag mask (from postings, cached) agrees with Filter.matches, the reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from servers.search.hybrid import Bm25Side
from vsm_mcp.vectors import Filter

TAGS = ["a", "b", "c", "read:*", "read:key:k"]
tagsets = st.lists(st.lists(st.sampled_from(TAGS), max_size=3, unique=True), min_size=1, max_size=12)
picks = st.lists(st.sampled_from([*TAGS, "zzz"]), max_size=3, unique=True)


@settings(max_examples=200)
@given(rows=tagsets, tags_all=picks, tags_any=picks)
def test_mask_matches_filter(rows: list[list[str]], tags_all: list[str], tags_any: list[str]) -> None:
    texts = {10 + i: f"word{i} common" for i in range(len(rows))}
    tags = {10 + i: tuple(t) for i, t in enumerate(rows)}
    side = Bm25Side(texts, tags)
    flt = Filter(tags_all=tuple(tags_all), tags_any=tuple(tags_any))
    mask = side.mask(flt.tags_all, flt.tags_any)
    expect = [flt.matches({"tags": tags[int(v)]}) for v in side.vids]
    if mask is None:
        assert all(expect)
    else:
        assert [bool(x) for x in mask] == expect
        assert side.mask(flt.tags_all, flt.tags_any) is mask  # cached
    hits = side.search("common", 50, flt.tags_all, flt.tags_any)
    assert {v for v, _ in hits} == {v for v, ok in zip(side.vids.tolist(), expect, strict=True) if ok}
