"""A small field-weighted BM25 (BM25F-style) over tool documents, scored with numpy.

Each document is a mapping field → tokens. A term's frequency is the weighted sum of its
counts over fields and a document's length the weighted sum of field lengths, so a word in a
tool's name can count more than the same word deep in its description. The per-posting BM25
term weight is computed at build time; a query only gathers and adds posting arrays, which
keeps scoring 10,000 tools well under a millisecond.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


def weighted_tf(fields: Mapping[str, Sequence[str]], weights: Mapping[str, float]) -> tuple[dict[str, float], float]:
    """(term → weighted frequency, weighted length) of one document."""
    tf: dict[str, float] = {}
    length = 0.0
    for field, tokens in fields.items():
        w = weights.get(field, 1.0)
        if w <= 0 or not tokens:
            continue
        length += w * len(tokens)
        for token in tokens:
            tf[token] = tf.get(token, 0.0) + w
    return tf, length


class BM25Index:
    """BM25 scores of every document for a bag of query terms."""

    def __init__(self, docs: Sequence[tuple[Mapping[str, float], float]], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.n_docs = len(docs)

        avg_len = (sum(length for _, length in docs) / self.n_docs) if self.n_docs else 1.0
        avg_len = max(avg_len, 1e-6)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for doc_id, (tf, length) in enumerate(docs):
            norm = k1 * (1.0 - b + b * length / avg_len)
            for term, freq in tf.items():
                ids, weights = postings.setdefault(term, ([], []))
                ids.append(doc_id)
                weights.append(freq * (k1 + 1.0) / (freq + norm))
        self._postings: dict[str, tuple[npt.NDArray[np.int32], Vector]] = {}
        for term, (ids, weights) in postings.items():
            df = len(ids)
            idf = math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))
            self._postings[term] = (
                np.asarray(ids, dtype=np.int32),
                np.asarray(weights, dtype=np.float32) * np.float32(idf),
            )

    def scores(self, terms: Iterable[str] | Mapping[str, float]) -> Vector:
        """BM25 score of every document (zeros where no term matches); repeated terms count once.

        ``terms`` may map each term to a query-side weight (expanded synonyms weigh less).
        """
        weighted = terms if isinstance(terms, Mapping) else dict.fromkeys(terms, 1.0)
        out = np.zeros(self.n_docs, dtype=np.float32)
        for term, weight in weighted.items():
            posting = self._postings.get(term)
            if posting is not None:
                out[posting[0]] += posting[1] if weight == 1.0 else posting[1] * np.float32(weight)
        return out

    def __contains__(self, term: str) -> bool:
        return term in self._postings
