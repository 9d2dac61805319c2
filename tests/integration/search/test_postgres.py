"""The search server on PostgreSQL as the non-owner role: row-level security isolates tenants'
collections and chunks, and a second replica sees the first one's writes (version check)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.integration.search.conftest import ToolFailed, call, open_server
from vsm_mcp.config import load_settings

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_two_replicas_and_row_level_security(pg_owner_url: str, pg_app_url: str, tmp_path: Path) -> None:
    def settings(name: str):  # type: ignore[no-untyped-def]
        return load_settings(home=tmp_path / name, embedder="hash:64", database_url=pg_app_url,
                             migration_database_url=pg_owner_url)

    ctx_a, client_a = await open_server(settings("a"))
    ctx_b, client_b = await open_server(settings("b"))
    try:
        async with client_a, client_b:
            await call(client_a, "collection_create", {"name": "kb"}, tenant="t1")
            await call(client_a, "index_documents", {"collection": "kb", "documents": [
                {"id": "one", "text": "tenant isolation with row level security"}]}, tenant="t1")
            # Replica B builds its index from the database.
            res = await call(client_b, "search", {"collection": "kb", "query": "row level security"}, tenant="t1")
            assert [r["id"] for r in res["results"]] == ["one"]
            # A writes again: B's index is stale by version and is rebuilt on its next search.
            await call(client_a, "index_documents", {"collection": "kb", "documents": [
                {"id": "two", "text": "security policies per tenant"}]}, tenant="t1")
            res = await call(client_b, "search", {"collection": "kb", "query": "security", "k": 5}, tenant="t1")
            assert {r["id"] for r in res["results"]} == {"one", "two"}
            await call(client_b, "delete_documents", {"collection": "kb", "ids": ["one"]}, tenant="t1")
            res = await call(client_a, "search", {"collection": "kb", "query": "security", "k": 5}, tenant="t1")
            assert [r["id"] for r in res["results"]] == ["two"]
            with pytest.raises(ToolFailed, match="not_found"):
                await call(client_a, "search", {"collection": "kb", "query": "security"}, tenant="t2")
    finally:
        await ctx_a.aclose()
        await ctx_b.aclose()
    # The app role with no tenant set sees no rows at all (RLS, not just the ORM filter).
    conn = await asyncpg.connect(pg_app_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM search_chunks") == 0
        assert await conn.fetchval("SELECT count(*) FROM search_collections") == 0
        await conn.execute("SELECT set_config('app.tenant_id', 't1', false)")
        assert await conn.fetchval("SELECT count(*) FROM search_chunks") == 1
    finally:
        await conn.close()
