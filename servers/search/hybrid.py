"""The lexical side of hybrid search (BM25 over chunk texts) and reciprocal-rank fusion."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import bm25s
import numpy as np

RRF_K = 60  # the usual reciprocal-rank-fusion constant: damps the weight of the very top ranks


class Bm25Side:
    """A BM25 index over ``{vid: text}``; filters become a weight mask inside the scoring."""

    def __init__(self, texts: Mapping[int, str]) -> None:
        self.vids = np.fromiter(texts.keys(), dtype=np.int64, count=len(texts))
        self._bm25: bm25s.BM25 | None = None
        if len(texts):
            corpus = bm25s.tokenize(list(texts.values()), stopwords="en", show_progress=False)
            self._bm25 = bm25s.BM25()
            self._bm25.index(corpus, show_progress=False)

    def search(self, query: str, n: int, allow: Callable[[int], bool]) -> list[tuple[int, float]]:
        """Up to ``n`` (vid, score) with a positive BM25 score, best first, only allowed vids."""
        if self._bm25 is None:
            return []
        tokens = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        known = [t for t in tokens if t in self._bm25.vocab_dict]
        if not known:
            return []
        mask = np.fromiter((allow(int(v)) for v in self.vids), dtype=np.float32, count=self.vids.size)
        scores = self._bm25.get_scores(known, weight_mask=mask)
        top = np.argsort(-scores, kind="stable")[:n]
        return [(int(self.vids[i]), float(scores[i])) for i in top if scores[i] > 0]


def fuse(ranked: list[list[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion of several best-first lists: score = sum of 1 / (RRF_K + rank)."""
    total: dict[int, float] = {}
    for hits in ranked:
        for rank, (vid, _) in enumerate(hits, start=1):
            total[vid] = total.get(vid, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(total.items(), key=lambda item: (-item[1], item[0]))[:k]
