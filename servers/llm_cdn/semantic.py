"""Semantic cache index: reuse an answer when only the wording of the last user turn differs.

A request is eligible when the cache would store it, it has no tools / functions / seed, and its
last message is a user turn with text. Candidates must match exactly on everything else: model,
every parameter and every earlier message (the "bucket" fingerprint). Only the last user text is
embedded, so a long shared system prompt cannot make two different questions look alike. A
candidate is reused when the cosine similarity reaches the threshold.

The index is in memory, per process (answers themselves stay in the exact cache backend).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from servers.llm_cdn.fingerprint import fingerprint
from vsm_mcp.embeddings import Embedder

_EXCLUDING = ("tools", "functions", "tool_choice", "function_call", "seed")


def last_user_text(request: Mapping[str, Any]) -> str | None:
    """The text of the final message when it is a user turn, else None."""
    messages = request.get("messages") or []
    if not messages or not isinstance(messages[-1], Mapping) or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, Mapping) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    return None


_CONTRACTIONS = ((r"\bwhat's\b", "what is"), (r"\bit's\b", "it is"), (r"\bhow's\b", "how is"),
                 (r"n't\b", " not"), (r"'re\b", " are"), (r"'m\b", " am"), (r"'ll\b", " will"), (r"'ve\b", " have"))


def normalize_text(text: str) -> str:
    """What the embedder sees: lower case, common contractions expanded, edge punctuation and
    repeated whitespace removed (differences no answer depends on)."""
    t = text.strip().lower()
    for pattern, repl in _CONTRACTIONS:
        t = re.sub(pattern, repl, t)
    t = re.sub(r"\s+", " ", t)
    return t.strip(" .?!")


def eligible(request: Mapping[str, Any]) -> bool:
    return not any(request.get(k) is not None for k in _EXCLUDING) and last_user_text(request) is not None


def bucket_of(request: Mapping[str, Any]) -> str:
    """Fingerprint of everything except the last user turn's text."""
    rest = {k: v for k, v in request.items() if k != "messages"}
    rest["$history"] = list(request.get("messages") or [])[:-1]
    return fingerprint(rest, "semantic")


class _Bucket:
    def __init__(self, dim: int) -> None:
        self.keys: list[str] = []
        self.vectors: npt.NDArray[np.float32] = np.zeros((0, dim), dtype=np.float32)


class SemanticIndex:
    """Per (tenant, bucket) matrices of unit vectors; bounded per bucket and in bucket count."""

    def __init__(self, embedder: Embedder, threshold: float, *, per_bucket: int = 4096, buckets: int = 10_000) -> None:
        self.embedder = embedder
        self.threshold = threshold
        self.per_bucket = per_bucket
        self.max_buckets = buckets
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def embed(self, text: str) -> npt.NDArray[np.float32]:
        vec: npt.NDArray[np.float32] = self.embedder.embed([normalize_text(text)])[0]
        return vec

    def lookup(self, tenant: str, bucket: str, vector: npt.NDArray[np.float32]) -> tuple[str, float] | None:
        """(key, similarity) of the nearest stored prompt at or above the threshold."""
        b = self._buckets.get((tenant, bucket))
        if b is None or not b.keys:
            return None
        sims = b.vectors @ vector
        i = int(np.argmax(sims))
        score = float(sims[i])
        return (b.keys[i], score) if score >= self.threshold else None

    def add(self, tenant: str, bucket: str, vector: npt.NDArray[np.float32], key: str) -> None:
        b = self._buckets.get((tenant, bucket))
        if b is None:
            if len(self._buckets) >= self.max_buckets:
                self._buckets.popitem(last=False)
            b = self._buckets[(tenant, bucket)] = _Bucket(vector.shape[0])
        if key in b.keys:
            return
        b.keys.append(key)
        b.vectors = np.vstack([b.vectors, vector[None, :]])
        if len(b.keys) > self.per_bucket:
            b.keys = b.keys[1:]
            b.vectors = b.vectors[1:]

    def purge(self, tenant: str | None) -> None:
        for k in [k for k in self._buckets if tenant is None or k[0] == tenant]:
            del self._buckets[k]
