"""Alembic environment: one history for SQLite and PostgreSQL, run through the async engine.

Run it with ``vsm-mcp migrate`` (which sets the URL), not with a bare ``alembic`` call.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import SQLModel

import router.upstreams.store  # noqa: F401  (upstream_registry)
import servers.beliefs.tables  # noqa: F401  (belief_log, belief_snapshots)
import servers.content.tables  # noqa: F401  (content_containers, content_versions)
import servers.llm_cdn.tables  # noqa: F401  (llm_cache, llm_inflight)
import servers.planner.tables  # noqa: F401  (plans, plan_steps)
import servers.search.tables  # noqa: F401  (search_collections, search_chunks)
import vsm_mcp.bus.events  # noqa: F401  (event_log)
import vsm_mcp.models  # noqa: F401  (registers the tables on SQLModel.metadata)
import vsm_mcp.storage.models  # noqa: F401  (storage_buckets, storage_versions)
import vsm_mcp.workers.notify.tables  # noqa: F401  (notification_channels, notification_deliveries)

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "vsm-mcp migrate sets sqlalchemy.url"
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `vsm-mcp migrate`")
existing = config.attributes.get("connection")
if existing is not None:
    _run(existing)
else:
    asyncio.run(_main())
