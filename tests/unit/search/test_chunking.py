"""Chunking and rank fusion of the search server: properties, not examples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from servers.search.chunking import chunk_text
from servers.search.hybrid import fuse
from vsm_mcp.errors import InvalidArguments

words = st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=5), max_size=120)


@given(words, st.integers(1, 30), st.integers(0, 29))
def test_chunks_cover_every_word_in_order_within_size(ws: list[str], size: int, overlap: int) -> None:
    overlap = min(overlap, size - 1)
    chunks = chunk_text(" ".join(ws), size, overlap)
    if not ws:
        assert chunks == []
        return
    assert all(1 <= len(c.split()) <= size for c in chunks)
    # Dropping each chunk's overlap with its predecessor gives back the text exactly.
    rebuilt = chunks[0].split()
    for c in chunks[1:]:
        rebuilt += c.split()[overlap:]
    assert rebuilt == ws
    assert (len(chunks) == 1) == (len(ws) <= size)


def test_chunk_parameters_are_checked() -> None:
    with pytest.raises(InvalidArguments, match="chunk_size"):
        chunk_text("a b", 0)
    with pytest.raises(InvalidArguments, match="chunk_overlap"):
        chunk_text("a b", 5, 5)


@given(st.lists(st.lists(st.integers(0, 40), unique=True, max_size=15), min_size=1, max_size=3), st.integers(1, 20))
def test_fusion_ranks_by_summed_reciprocal_rank(lists: list[list[int]], k: int) -> None:
    ranked = [[(vid, 0.0) for vid in ids] for ids in lists]
    fused = fuse(ranked, k)
    everyone = {vid for ids in lists for vid in ids}
    assert len(fused) == min(k, len(everyone))
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)
    # An id first in every list it appears in, and present in all lists, can't be beaten.
    common = set(lists[0]).intersection(*map(set, lists[1:]))
    tops = {ids[0] for ids in lists if ids}
    if len(tops) == 1 and tops <= common:
        assert fused[0][0] == next(iter(tops))
