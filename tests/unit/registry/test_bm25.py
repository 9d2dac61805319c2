"""BM25F over tool fields: the classic formula, field weights, per-field length normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.registry.bm25 import BM25Index, field_counts

W = {"name": 3.0, "description": 1.0}


def test_single_field_flat_matches_textbook_bm25() -> None:
    docs = [["read", "file"], ["write", "file", "content"], ["list", "directory", "entries", "file"]]
    index = BM25Index([field_counts({"description": d}) for d in docs], {"description": 1.0}, k1=1.2, b=0.75, per_field=False)
    avg = sum(map(len, docs)) / 3
    idf = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    expected = 1 * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * len(docs[1]) / avg)) * idf
    assert index.scores(["write"])[1] == pytest.approx(expected, rel=1e-5)
    assert index.scores(["write"])[0] == 0.0


def test_name_field_outweighs_description() -> None:
    docs = [field_counts({"name": ["read"], "description": ["file"]}), field_counts({"name": ["file"], "description": ["read"]})]
    for per_field in (False, True):
        s = BM25Index(docs, W, per_field=per_field).scores(["read"])
        assert s[0] > s[1] > 0


def test_per_field_normalisation_keeps_a_long_description_from_diluting_the_name() -> None:
    filler = [f"w{i}" for i in range(300)]
    docs = [
        field_counts({"name": ["read", "file"], "description": filler}),
        field_counts({"name": ["read", "file"], "description": ["short"]}),
    ]
    flat = BM25Index(docs, W, per_field=False).scores(["read"])
    assert flat[0] < flat[1]
    per = BM25Index(docs, W, per_field=True).scores(["read"])
    assert per[0] == pytest.approx(per[1])


_WORDS = st.lists(st.sampled_from(["read", "file", "list", "dir", "git", "log", "run"]), max_size=6)


@given(st.lists(st.fixed_dictionaries({"name": _WORDS, "description": _WORDS}), min_size=1, max_size=8), _WORDS, st.booleans())
def test_scores_are_positive_exactly_where_a_query_term_occurs(docs: list[dict[str, list[str]]], query: list[str], per_field: bool) -> None:
    index = BM25Index([field_counts(d) for d in docs], W, per_field=per_field)
    scores = index.scores(query)
    assert scores.dtype == np.float32 and len(scores) == len(docs)
    for doc, s in zip(docs, scores, strict=True):
        matched = bool(set(query) & (set(doc["name"]) | set(doc["description"])))
        assert (s > 0) == matched and s >= 0
    assert np.allclose(scores, index.scores(list(reversed(query)) + query))  # order and repeats do not matter
