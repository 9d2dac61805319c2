"""Every in-process VectorIndex backend against the same contract: exact recall vs numpy brute
force, upsert/remove, persistence, filters, tenant isolation and clear input errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vsm_mcp.errors import ConfigError, InvalidArguments
from vsm_mcp.vectors import Filter, VectorIndex, exact_distances, make_index, open_index

DIM = 24
N = 1500

# Small PQ settings so training is fast; re-rank makes the results exact on this size.
PARAMS: dict[str, dict[str, Any]] = {
    "usearch": {},
    "pq": {"nlist": 16, "m": 8, "nbits": 6, "nprobe": 16, "rerank": 64},
}
BACKENDS = ["usearch", "pq"]


def clustered(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim)) * 3
    x = centres[rng.integers(0, 12, n)] + rng.normal(size=(n, dim)) * rng.uniform(0.3, 1.5, dim)
    return x.astype(np.float32)


def build(
    backend: str, metric: str, tmp_path: Path, n: int = N, normalise: bool = False, **extra: Any
) -> tuple[VectorIndex, np.ndarray]:
    x = clustered(n)
    if normalise:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    params = {**PARAMS[backend], **extra}
    if backend == "pq":
        params.setdefault("path", tmp_path / "pq")
    index = make_index(backend, DIM, metric, **params)
    meta = [{"tenant": f"t{i % 3}", "collection": "c", "tags": ["even"] if i % 2 == 0 else []} for i in range(n)]
    index.upsert(np.arange(n), x, meta)
    return index, x


def brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, metric: str, k: int) -> list[int]:
    d = exact_distances(x, q.astype(np.float32), metric)  # type: ignore[arg-type]
    return [int(ids[i]) for i in np.argsort(d, kind="stable")[:k]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("metric", ["cos", "ip", "l2"])
def test_recall_matches_brute_force(backend: str, metric: str, tmp_path: Path) -> None:
    # Inner product is meant for unit vectors (MIPS on raw vectors is not a metric space, and
    # graph indexes are not built for it), so the ip data set is normalised.
    index, x = build(backend, metric, tmp_path, normalise=metric == "ip")
    queries = clustered(40, seed=7)
    found = 0
    for q in queries:
        got = [i for i, _ in index.search(q, 10)]
        found += len(set(got) & set(brute(x, np.arange(N), q, metric, 10)))
    assert found / (10 * len(queries)) >= 0.95


@pytest.mark.parametrize("backend", BACKENDS)
def test_distances_follow_the_documented_convention(backend: str, tmp_path: Path) -> None:
    index, x = build(backend, "cos", tmp_path)
    q = x[3]
    hits = index.search(q, 5)
    assert hits[0][0] == 3 and abs(hits[0][1]) < 1e-4
    assert [d for _, d in hits] == sorted(d for _, d in hits)
    expect = exact_distances(x[[i for i, _ in hits]], q, "cos")
    assert np.allclose([d for _, d in hits], expect, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_upsert_replaces_and_remove_forgets(backend: str, tmp_path: Path) -> None:
    index, x = build(backend, "l2", tmp_path)
    far = np.full((1, DIM), 500.0, dtype=np.float32)
    index.upsert([10], far)
    assert len(index) == N
    assert index.search(far[0], 1)[0][0] == 10
    assert 10 not in [i for i, _ in index.search(x[10], 5)]
    assert index.remove([10, 10_000_000]) == 1
    assert len(index) == N - 1
    assert 10 not in [i for i, _ in index.search(far[0], 5)]
    assert index.remove([10]) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_persistence_round_trip(backend: str, tmp_path: Path) -> None:
    index, x = build(backend, "cos", tmp_path)
    index.remove([0, 1])
    queries = clustered(10, seed=3)
    before = [index.search(q, 5, Filter(tenant="t1")) for q in queries]
    index.save(tmp_path / "saved")
    loaded = open_index(tmp_path / "saved")
    assert len(loaded) == N - 2 and loaded.dim == DIM and loaded.metric == "cos"
    assert [[i for i, _ in loaded.search(q, 5, Filter(tenant="t1"))] for q in queries] == [
        [i for i, _ in hits] for hits in before
    ]
    loaded.upsert([0], x[:1], [{"tenant": "t0"}])  # a loaded index stays writable
    assert loaded.search(x[0], 1)[0][0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("exact_limit", [10, 100_000])  # the in-search path and the exact path
def test_filters_return_only_allowed_ids_and_match_filtered_brute_force(
    backend: str, exact_limit: int, tmp_path: Path
) -> None:
    index, x = build(backend, "cos", tmp_path, exact_limit=exact_limit)
    flt = Filter(tenant="t1", tags_all=("even",))
    allowed = np.array([i for i in range(N) if i % 3 == 1 and i % 2 == 0])
    found = 0
    for q in clustered(20, seed=5):
        got = [i for i, _ in index.search(q, 10, flt)]
        assert set(got) <= set(allowed.tolist())
        found += len(set(got) & set(brute(x[allowed], allowed, q, "cos", 10)))
    assert found / 200 >= 0.9
    assert index.search(x[0], 5, Filter(tenant="nobody")) == []
    assert index.search(x[0], 5, Filter(tags_any=("missing",))) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_tenant_isolation_even_for_identical_vectors(backend: str, tmp_path: Path) -> None:
    index, x = build(backend, "cos", tmp_path)
    secret = np.full((1, DIM), 7.0, dtype=np.float32)
    index.upsert([99_999], secret, [{"tenant": "victim"}])
    for tenant in ("t0", "t1", "t2"):
        hits = index.search(secret[0], 50, Filter(tenant=tenant))
        assert 99_999 not in [i for i, _ in hits]
    assert index.search(secret[0], 1, Filter(tenant="victim"))[0][0] == 99_999


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_a_clear_error(backend: str, tmp_path: Path) -> None:
    index, x = build(backend, "cos", tmp_path, n=300)
    with pytest.raises(InvalidArguments, match="dimension mismatch"):
        index.upsert([1], np.zeros((1, DIM + 1)))
    with pytest.raises(InvalidArguments, match="dimension mismatch"):
        index.search(np.zeros(DIM - 1), 3)
    bad = x[:2].copy()
    bad[1, 4] = np.nan
    with pytest.raises(InvalidArguments, match="row 1 contains NaN"):
        index.upsert([1, 2], bad)
    with pytest.raises(InvalidArguments, match="NaN or infinity"):
        index.search(np.full(DIM, np.inf), 3)
    with pytest.raises(InvalidArguments, match="distinct"):
        index.upsert([5, 5], x[:2])
    with pytest.raises(InvalidArguments, match="one id per vector"):
        index.upsert([5], x[:2])
    with pytest.raises(InvalidArguments, match="k must be"):
        index.search(x[0], 0)
    with pytest.raises(InvalidArguments, match=r"meta\[0\].tags"):
        index.upsert([5], x[:1], [{"tags": "not-a-list"}])
    assert len(index) == 300  # nothing half-written


def test_pq_trains_once_enough_vectors_exist_and_keeps_ram_small(tmp_path: Path) -> None:
    index = make_index("pq", DIM, "l2", path=tmp_path / "pq", nlist=8, m=4, train_min=500)
    x = clustered(800)
    index.upsert(np.arange(400), x[:400])
    assert index.stats()["trained"] is False
    assert index.search(x[7], 1)[0][0] == 7  # untrained: exact scan from disk
    index.upsert(np.arange(400, 800), x[400:])
    stats = index.stats()
    assert stats["trained"] is True and stats["count"] == 800
    assert stats["memory_bytes"] < stats["disk_bytes"]
    assert index.search(x[650], 1)[0][0] == 650


def test_factory_rejects_unknown_backend_and_metric() -> None:
    with pytest.raises(ConfigError, match="unknown vector backend 'faiss2'"):
        make_index("faiss2", 8)
    with pytest.raises(InvalidArguments, match="metric 'dot'"):
        make_index("usearch", 8, "dot")
    with pytest.raises(InvalidArguments, match="dimension must be"):
        make_index("usearch", 0)


def test_filter_from_dict_names_bad_fields() -> None:
    assert Filter.from_dict({"tenant": "a", "tags_any": ["x"]}) == Filter(tenant="a", tags_any=("x",))
    with pytest.raises(InvalidArguments, match="unknown filter field"):
        Filter.from_dict({"tennant": "a"})
    with pytest.raises(InvalidArguments, match="filter.tags_all must be a list"):
        Filter.from_dict({"tags_all": "x"})


def test_open_index_and_pq_parameters_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArguments, match="no saved vector index"):
        open_index(tmp_path / "nothing-here")
    with pytest.raises(InvalidArguments, match="m=5 must divide the dimension 24"):
        make_index("pq", DIM, "l2", m=5)
    with pytest.raises(InvalidArguments, match="usearch connectivity"):
        make_index("usearch", DIM, connectivity=1)
