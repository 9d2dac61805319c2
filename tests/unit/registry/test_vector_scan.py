"""The 8-bit scan of tool vectors and the exact re-ranking built on it give the exact ranking."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest

from router.registry.index import ToolRecord, ToolRegistry
from vsm_mcp.embeddings import HashEmbedder, normalize_rows

pytest.importorskip("numkong")

from router.registry.vector_scan import Int8Scan  # noqa: E402


def test_every_cosine_is_within_the_stated_bound() -> None:
    rng = np.random.default_rng(7)
    # MiniLM-like rows: a few large components on a dense background.
    base = rng.standard_normal((3000, 384)).astype(np.float32)
    base[:, :4] *= 6
    vectors = normalize_rows(base)
    scan = Int8Scan(vectors)
    worst, bounds = 0.0, []
    for query in normalize_rows(rng.standard_normal((50, 384))):
        approx, eps = scan.cosines(query)
        err = float(np.abs(approx - vectors @ query).max())
        assert err <= eps
        worst, bounds = max(worst, err), [*bounds, eps]
    # Here: error ≤ 0.0054, bound ≤ 0.061. On the 10,000-tool MiniLM benchmark catalog: error
    # ≤ 0.003, bound 0.025-0.029 — loose by ~10x, still enough to prune all but ~100 tools.
    assert worst < 0.01 and max(bounds) < 0.1


def test_zero_rows_and_a_zero_query_do_not_divide_by_zero() -> None:
    vectors = np.zeros((4, 8), dtype=np.float32)
    vectors[1, 0] = 1.0
    approx, eps = Int8Scan(vectors).cosines(np.zeros(8, dtype=np.float32))
    assert np.all(approx == 0) and np.isfinite(eps)


WORDS = (
    "file read write list delete create issue pull request branch commit repo user team project "
    "query table database index cluster metric alert log trace deploy build release bucket object "
    "page browser screenshot click element network cookie secret key token billing invoice"
).split()


class CountingHash:
    def __init__(self) -> None:
        self.inner = HashEmbedder(384)
        self.name, self.dim = self.inner.name, self.inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed(texts)


def _catalog(n: int) -> dict[str, list[ToolRecord]]:
    rnd = random.Random(3)
    out: dict[str, list[ToolRecord]] = {}
    for i in range(n):
        server = f"s{i % 40}"
        words = rnd.sample(WORDS, 5)
        out.setdefault(server, []).append(
            ToolRecord(server, "_".join(words[:2]) + f"_{i}", f"{server}__t{i}", description=" ".join(words))
        )
    return out


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    reg = ToolRegistry(CountingHash(), scan_min_tools=1)  # type: ignore[arg-type]
    reg.replace_servers(_catalog(3000))
    assert reg._snapshot.scan is not None
    return reg


QUERIES = ["read a file", "list pull requests of a repo", "delete bucket object", "alert on metric",
           "click element in browser page", "billing invoice for team", "zzz unknown words"]


@pytest.mark.parametrize("limit", [1, 5, 10, 40])
def test_scan_and_rerank_rank_exactly_like_the_full_scan(registry: ToolRegistry, limit: int) -> None:
    fast = registry._snapshot
    exact = replace(fast, scan=None)
    mask = fast.available.copy()
    bm = fast.bm25.scores(registry._query_terms("read a file"))
    assert registry._reranked_scores(fast, "read a file", mask, limit * 4 + 16, bm) is not None  # the path under test
    for q in QUERIES:
        got = registry.search(q, limit=limit)
        registry._snapshot = exact
        try:
            want = registry.search(q, limit=limit)
        finally:
            registry._snapshot = fast
        assert [h.record.public_name for h in got] == [h.record.public_name for h in want]
        assert np.allclose([h.score for h in got], [h.score for h in want], atol=1e-6)


def test_grants_filters_and_other_modes_agree_with_the_full_scan(registry: ToolRegistry) -> None:
    fast = registry._snapshot
    exact = replace(fast, scan=None)

    def allowed(rec: ToolRecord) -> bool:
        return int(rec.public_name.rsplit("t", 1)[1]) % 97 == 0  # denies ~99%: the pool runs dry

    calls = [
        {"allowed": allowed},
        {"server": "s3"},  # too few eligible tools: the exact scan
        {"fusion": "rrf"},
        {"mode": "embedding"},
    ]
    for kwargs in calls:
        for q in QUERIES:
            got = registry.search(q, limit=5, **kwargs)  # type: ignore[arg-type]
            registry._snapshot = exact
            try:
                want = registry.search(q, limit=5, **kwargs)  # type: ignore[arg-type]
            finally:
                registry._snapshot = fast
            assert [h.record.public_name for h in got] == [h.record.public_name for h in want], kwargs
            if "allowed" in kwargs:
                assert all(allowed(h.record) for h in got)


def test_small_catalogs_keep_the_plain_float32_scan() -> None:
    reg = ToolRegistry(CountingHash())  # type: ignore[arg-type]
    reg.replace_servers(_catalog(300))
    assert reg._snapshot.scan is None
    assert reg.search("read a file", limit=3)
