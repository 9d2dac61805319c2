"""The content pipeline on PostgreSQL as the non-owner role (row-level security): ingest, re-ingest,
search and delete, and one tenant's containers invisible to another's session."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from tests.content_site import Site, serve_site
from tests.integration.content.conftest import content_settings, open_stack

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


async def test_pipeline_on_postgres(pg_owner_url: str, pg_app_url: str, tmp_path: Path) -> None:
    settings = content_settings(tmp_path, database_url=pg_app_url, migration_database_url=pg_owner_url)
    site = Site(20, pdf_every=4)
    async for stack in open_stack(settings):
        with serve_site(site) as base:
            done = await stack.ingest("ingest_url", "pg-a", urls=[base + "/"], depth=1)
            assert done["state"] == "done" and done["created"] == 21 and done["failed"] == 0
            site.change([3])
            again = await stack.ingest("ingest_url", "pg-a", urls=[base + "/"], depth=1)
            assert again["created"] == 1
        hit = (await stack.call("container_search", "pg-a", query="doc3 rev1", k=1, mode="bm25"))["results"][0]
        assert hit["version"] == 2
        out = await stack.call("container_delete", "pg-a", container_id=hit["container_id"])
        assert out["blobs"] == 2
    conn = await asyncpg.connect(pg_app_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', 'pg-b', true)")
            assert await conn.fetchval("SELECT count(*) FROM content_containers") == 0
            assert await conn.fetchval("SELECT count(*) FROM content_versions") == 0
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', 'pg-a', true)")
            assert await conn.fetchval("SELECT count(*) FROM content_containers") == 20
            assert await conn.fetchval("SELECT count(*) FROM content_versions") == 20  # 22 made, the deleted one's 2 gone
    finally:
        await conn.close()
