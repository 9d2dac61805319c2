"""A throw-away PostgreSQL database for one benchmark run (the test cluster: 127.0.0.1:5432, or
``VSM_TEST_PG_HOST`` / ``VSM_TEST_PG_PORT`` as the tests read them).

``create_database`` returns ``(name, owner URL, app URL)``: migrations run as the owner
(postgres), the app connects as ``vsm_app`` (row-level security applies), as in production.
Two calls, not a context manager, so a benchmark may create and drop in separate event loops.
"""

from __future__ import annotations

import os
import uuid

import asyncpg

PG = os.environ.get("VSM_TEST_PG_HOST", "127.0.0.1"), int(os.environ.get("VSM_TEST_PG_PORT", "5432"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG[0], port=PG[1], user="postgres", database="test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database() -> tuple[str, str, str]:
    name = f"vsm_bench_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    return (name, f"postgresql+asyncpg://postgres@{PG[0]}:{PG[1]}/{name}",
            f"postgresql+asyncpg://vsm_app@{PG[0]}:{PG[1]}/{name}")


async def drop_database(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
