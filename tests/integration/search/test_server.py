"""The search server through an in-memory MCP client: collections, indexing, hybrid search,
filters, deletes, stats, tenant isolation and clear errors."""

from __future__ import annotations

import mcp
import numpy as np
import pytest

from tests.integration.search.conftest import ToolFailed, call

pytestmark = pytest.mark.anyio

DOCS = [
    {"id": "fox", "text": "The quick brown fox jumps over the lazy dog", "tags": ["animals"], "metadata": {"n": 1}},
    {"id": "db", "text": "PostgreSQL row level security isolates tenants in one database", "tags": ["db"]},
    {"id": "vec", "text": "HNSW graphs answer approximate nearest neighbour queries quickly", "tags": ["db", "ann"]},
    {"id": "cook", "text": "Slow cooked beans with garlic and onion", "tags": ["food"]},
]


async def test_tools_listed(client: mcp.Client) -> None:
    names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"search_collections", "collection_create", "index_documents", "search", "delete_documents",
                     "collection_stats"}


async def test_index_search_filter_delete_round_trip(client: mcp.Client) -> None:
    created = await call(client, "collection_create", {"name": "notes"})
    assert created["dimension"] == 64 and created["embedder"] == "hash:64" and created["backend"] == "usearch"
    out = await call(client, "index_documents", {"collection": "notes", "documents": DOCS})
    assert out == {"collection": "notes", "documents": 4, "chunks": 4, "replaced_chunks": 0}
    for mode in ("hybrid", "vector", "bm25"):
        res = await call(client, "search", {"collection": "notes", "query": "row level security tenants", "mode": mode})
        assert res["results"][0]["id"] == "db", mode
    scores = [r["score"] for r in res["results"]]
    assert scores == sorted(scores, reverse=True)
    only_food = await call(client, "search", {"collection": "notes", "query": "security", "filter": {"tags_any": ["food"]}})
    assert [r["id"] for r in only_food["results"]] == ["cook"]
    both = await call(client, "search", {"collection": "notes", "query": "graphs", "filter": {"tags_all": ["db", "ann"]}})
    assert {r["id"] for r in both["results"]} == {"vec"}
    deleted = await call(client, "delete_documents", {"collection": "notes", "ids": ["db", "nope"]})
    assert deleted == {"collection": "notes", "deleted_documents": 1, "deleted_chunks": 1}
    res = await call(client, "search", {"collection": "notes", "query": "row level security tenants"})
    assert "db" not in [r["id"] for r in res["results"]]
    stats = await call(client, "collection_stats", {"collection": "notes"})
    assert stats["documents"] == 3 and stats["chunks"] == 3 and stats["index"]["count"] == 3
    listed = await call(client, "search_collections", {})
    assert [(c["name"], c["documents"]) for c in listed["collections"]] == [("notes", 3)]


async def test_reindex_replaces_chunks_and_chunking_splits_long_text(client: mcp.Client) -> None:
    await call(client, "collection_create", {"name": "books"})
    long_text = " ".join(f"w{i}" for i in range(250)) + " zebra"
    out = await call(client, "index_documents", {"collection": "books", "documents": [{"id": "b", "text": long_text}],
                                                "chunk_size": 100, "chunk_overlap": 20})
    assert out["chunks"] == 3
    again = await call(client, "index_documents", {"collection": "books", "documents": [{"id": "b", "text": "zebra crossing"}]})
    assert again["chunks"] == 1 and again["replaced_chunks"] == 3
    res = await call(client, "search", {"collection": "books", "query": "zebra", "mode": "bm25"})
    assert [(r["id"], r["chunk"], r["text"]) for r in res["results"]] == [("b", 0, "zebra crossing")]


async def test_vector_collections_and_pq_backend(client: mcp.Client) -> None:
    await call(client, "collection_create", {"name": "raw", "dimension": 8, "metric": "l2", "backend": "pq",
                                             "params": {"nlist": 4, "m": 4, "train_min": 60}})
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(300, 8))
    docs = [{"id": f"d{i}", "vector": vecs[i].tolist(), "tags": ["odd"] if i % 2 else []} for i in range(300)]
    await call(client, "index_documents", {"collection": "raw", "documents": docs})
    res = await call(client, "search", {"collection": "raw", "vector": vecs[17].tolist(), "k": 3})
    assert res["mode"] == "vector" and res["results"][0]["id"] == "d17" and res["results"][0]["score"] == pytest.approx(0, abs=1e-4)
    odd = await call(client, "search", {"collection": "raw", "vector": vecs[18].tolist(), "k": 5, "filter": {"tags_all": ["odd"]}})
    assert len(odd["results"]) == 5 and all(int(r["id"][1:]) % 2 for r in odd["results"])
    stats = await call(client, "collection_stats", {"collection": "raw"})
    assert stats["index"]["trained"] is True
    with pytest.raises(ToolFailed, match="no embedder"):
        await call(client, "search", {"collection": "raw", "query": "text"})
    with pytest.raises(ToolFailed, match="dimension mismatch"):
        await call(client, "search", {"collection": "raw", "vector": [0.0] * 7})


async def test_tenants_are_isolated(client: mcp.Client) -> None:
    await call(client, "collection_create", {"name": "shared-name"}, tenant="ta")
    await call(client, "index_documents", {"collection": "shared-name", "documents": DOCS[:2]}, tenant="ta")
    with pytest.raises(ToolFailed, match="not_found: no collection named 'shared-name'"):
        await call(client, "search", {"collection": "shared-name", "query": "fox"}, tenant="tb")
    await call(client, "collection_create", {"name": "shared-name"}, tenant="tb")
    await call(client, "index_documents", {"collection": "shared-name", "documents": [{"id": "x", "text": "fox fox"}]}, tenant="tb")
    res_b = await call(client, "search", {"collection": "shared-name", "query": "quick brown fox", "k": 10}, tenant="tb")
    assert [r["id"] for r in res_b["results"]] == ["x"]
    res_a = await call(client, "search", {"collection": "shared-name", "query": "quick brown fox", "k": 10}, tenant="ta")
    assert "x" not in [r["id"] for r in res_a["results"]]
    assert (await call(client, "search_collections", {}, tenant="tc"))["collections"] == []


async def test_bad_input_is_a_tool_error_naming_the_problem(client: mcp.Client) -> None:
    await call(client, "collection_create", {"name": "c"})
    cases = [
        ("collection_create", {"name": "c"}, "conflict: collection 'c' already exists"),
        ("collection_create", {"name": "d", "params": {"bogus": 1}}, "unknown usearch parameter"),
        ("index_documents", {"collection": "c", "documents": [{"text": "no id"}]}, r"documents\[0\].id"),
        ("index_documents", {"collection": "c", "documents": [{"id": "a", "vector": [float("nan")] * 64}]}, "NaN"),
        ("index_documents", {"collection": "c", "documents": [{"id": "a", "vector": [1.0] * 3}]}, "dimension mismatch"),
        ("index_documents", {"collection": "c", "documents": [{"id": "a", "text": "x", "tags": "t"}]}, "tags must be a list"),
        ("search", {"collection": "c"}, "exactly one of query"),
        ("search", {"collection": "c", "query": "x", "filter": {"tenant": "tb"}}, "tenant and collection are implied"),
        ("search", {"collection": "c", "query": "x", "k": 0}, "k must be in 1..1000"),
        ("search", {"collection": "missing", "query": "x"}, "not_found"),
        ("delete_documents", {"collection": "c", "ids": []}, "non-empty list"),
    ]
    for tool, args, message in cases:
        with pytest.raises(ToolFailed, match=message):
            await call(client, tool, args)
