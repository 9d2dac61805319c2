"""Tenant-scoped point query by primary key: our data layer vs raw asyncpg, same RLS setting.

Both sides connect as the non-owner role vsm_app to a fresh database (row-level security on),
set the tenant for the transaction (`set_config('app.tenant_id', …, true)`, i.e. SET LOCAL) and
read one `episodes` row by primary key. Ours goes through `Database.tenant()` + ORM `select`;
the baseline is the same statements on one raw asyncpg connection. Interleaved call by call, in
alternating order, so machine noise hits both alike.

    python benchmarks/db_point_query.py [--n 3000] [--rows 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid

import asyncpg
from sqlalchemy import insert

from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.models import Episode, utcnow
from vsm_mcp.tenants import create_tenant

HOST, PORT = "127.0.0.1", 5432


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(host=HOST, port=PORT, user="postgres", database="test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(n: int, rows: int) -> dict[str, float]:
    name = f"vsm_bench_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        owner_url = f"postgresql+asyncpg://postgres@{HOST}:{PORT}/{name}"
        app_url = f"postgresql+asyncpg://vsm_app@{HOST}:{PORT}/{name}"
        await asyncio.to_thread(migrate.upgrade, owner_url)
        settings = load_settings(database_url=app_url, migration_database_url=owner_url)
        owner = Database(settings, owner_url)
        tenants = [(await create_tenant(owner, f"t{i}")).id for i in range(4)]
        ids: list[tuple[str, str]] = []
        async with owner.engine.begin() as conn:
            batch = []
            for i in range(rows):
                t = tenants[i % len(tenants)]
                rid = str(uuid.uuid4())
                ids.append((t, rid))
                now = utcnow()
                batch.append(dict(id=rid, tenant_id=t, created_at=now, updated_at=now, principal_id="", server="s",
                                  tool=f"t{i}", outcome="ok", duration_ms=1.0, args_sha256="", error="", trace_id="", data={}))
            await conn.execute(insert(Episode), batch)
        await owner.aclose()

        db = Database(settings, app_url)
        raw = await asyncpg.connect(host=HOST, port=PORT, user="vsm_app", database=name)
        stmt = await raw.prepare("SELECT * FROM episodes WHERE id = $1")

        async def ours(t: str, rid: str) -> None:
            row = await db.get(t, Episode, rid)
            assert row is not None and row.id == rid

        async def baseline(t: str, rid: str) -> None:
            async with raw.transaction():
                await raw.execute("SELECT set_config('app.tenant_id', $1, true)", t)
                row = await stmt.fetchrow(rid)
                assert row is not None and row["id"] == rid

        for _ in range(200):  # warm both
            t, rid = random.choice(ids)
            await ours(t, rid)
            await baseline(t, rid)
        ours_ms: list[float] = []
        raw_ms: list[float] = []
        for i in range(n):
            t, rid = random.choice(ids)
            # Alternate which side goes first so neither always runs on a warmer cache.
            for side in ((ours, ours_ms), (baseline, raw_ms))[:: 1 if i % 2 else -1]:
                t0 = time.perf_counter()
                await side[0](t, rid)
                side[1].append((time.perf_counter() - t0) * 1000)
        await raw.close()
        await db.aclose()
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "n": n,
        "rows": rows,
        "p50_ms": round(statistics.median(ours_ms), 3),
        "p95_ms": round(pct(ours_ms, 95), 3),
        "raw_p50_ms": round(statistics.median(raw_ms), 3),
        "raw_p95_ms": round(pct(raw_ms, 95), 3),
        "ratio_p50": round(statistics.median(ours_ms) / statistics.median(raw_ms), 3),
        "ratio_p95": round(pct(ours_ms, 95) / pct(raw_ms, 95), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rows", type=int, default=10000)
    ap.add_argument("--json", action="store_true", help="print the result as one JSON line at the end")
    args = ap.parse_args()
    result = asyncio.run(run(args.n, args.rows))
    if not args.json:
        for k, v in result.items():
            print(f"{k:12} {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
