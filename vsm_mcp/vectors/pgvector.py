"""Vector backend on PostgreSQL + pgvector: one table, an HNSW index, filters in the WHERE clause.

``make_index("pgvector", dim, metric, dsn=…, table="vsm_vectors", m=16, ef_construction=64,
ef_search=100)``. The table (``id bigint primary key, tenant, collection, tags text[], embedding
vector(dim)``) and its indexes are created if missing: HNSW on the embedding with the operator
class of the metric, b-tree on ``(tenant, collection)``, GIN on ``tags``.

Filtered search is one statement: ``WHERE tenant = … AND collection = … AND tags @> … ORDER BY
embedding <op> query LIMIT k`` with ``hnsw.iterative_scan = relaxed_order`` (pgvector ≥ 0.8), so
the HNSW scan keeps walking the graph until ``k`` rows pass the filter instead of returning
fewer — filtering happens inside the index scan, and the tenant predicate is part of every query
that names one. ``relaxed_order`` may yield rows slightly out of order; they are re-sorted.

The protocol is synchronous (numpy in, lists out), so the asyncpg connection lives on a private
event loop in a daemon thread; ``close()`` ends both. Distances follow ``vsm_mcp.vectors``:
``<=>`` is already ``1 - cos``; ``<#>`` is ``-dot`` (→ ``1 + <#>``); ``<->`` is Euclidean (→ squared).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import numpy as np
import numpy.typing as npt

from vsm_mcp.errors import ConfigError, DatabaseUnavailable, InvalidArguments
from vsm_mcp.vectors import Hit, Metric, check_ids, check_matrix, check_query
from vsm_mcp.vectors.filter import Filter, check_meta

T = TypeVar("T")
_OPS = {"cos": ("vector_cosine_ops", "<=>"), "ip": ("vector_ip_ops", "<#>"), "l2": ("vector_l2_ops", "<->")}
_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _literal(vec: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vec) + "]"


class PgVectorIndex:
    """A ``VectorIndex`` stored in a PostgreSQL table with a pgvector HNSW index."""

    backend = "pgvector"

    def __init__(
        self, dim: int, metric: Metric = "cos", *, dsn: str = "", table: str = "vsm_vectors", m: int = 16,
        ef_construction: int = 64, ef_search: int = 100,
    ) -> None:
        if not dsn:
            raise ConfigError("the pgvector backend needs dsn=postgresql://user@host:port/db")
        if not _TABLE.match(table):
            raise InvalidArguments(f"pgvector table name {table!r} must match {_TABLE.pattern}")
        self.dim, self.metric, self.table = dim, metric, table
        self.m, self.ef_construction, self.ef_search = m, ef_construction, ef_search
        self._opclass, self._op = _OPS[metric]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pgvector", daemon=True)
        self._thread.start()
        try:
            self._conn: asyncpg.Connection = self._run(
                asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"), timeout=10)
            )
        except (OSError, asyncpg.PostgresError) as exc:
            self._stop()
            raise DatabaseUnavailable(f"pgvector: cannot connect: {exc}") from exc
        try:
            self._run(self._setup())
        except BaseException:
            self.close()  # a refused index must not leak its connection and thread
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _setup(self) -> None:
        row = await self._conn.fetchrow("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        if row is None:
            try:
                await self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except asyncpg.PostgresError as exc:
                raise ConfigError(f"pgvector: the 'vector' extension is not installed and cannot be created: {exc}") from exc
        t = self.table
        await self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (id bigint PRIMARY KEY, tenant text, collection text, "
            f"tags text[] NOT NULL DEFAULT '{{}}', embedding vector({self.dim}) NOT NULL)"
        )
        existing = await self._conn.fetchval(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'embedding'", t
        )
        if existing is not None and int(existing) != self.dim:
            raise InvalidArguments(f"dimension mismatch: table {t} holds vectors of dimension {existing}, not {self.dim}")
        await self._conn.execute(
            f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding {self._opclass}) "
            f"WITH (m = {int(self.m)}, ef_construction = {int(self.ef_construction)})"
        )
        await self._conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_scope ON {t} (tenant, collection)")
        await self._conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_tags ON {t} USING gin (tags)")

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def close(self) -> None:
        """Close the connection and stop the private event loop."""
        if self._loop.is_closed():
            return
        self._run(self._conn.close())
        self._stop()

    def __len__(self) -> int:
        return int(self._run(self._conn.fetchval(f"SELECT count(*) FROM {self.table}")))

    def upsert(
        self, ids: Sequence[int] | npt.NDArray[Any], vectors: npt.ArrayLike,
        meta: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        mat = check_matrix(vectors, self.dim)
        keys = check_ids(ids, mat.shape[0])
        if meta is not None and len(meta) != len(keys):
            raise InvalidArguments(f"{len(meta)} metadata objects for {len(keys)} ids")
        parsed = [check_meta(m, i) for i, m in enumerate(meta)] if meta is not None else [(None, None, ())] * len(keys)
        rows = [
            (int(k), tenant, coll, list(tags), _literal(v))
            for k, v, (tenant, coll, tags) in zip(keys.tolist(), mat, parsed, strict=True)
        ]
        self._run(self._conn.executemany(
            f"INSERT INTO {self.table} (id, tenant, collection, tags, embedding) VALUES ($1, $2, $3, $4, $5::vector) "
            "ON CONFLICT (id) DO UPDATE SET tenant = EXCLUDED.tenant, collection = EXCLUDED.collection, "
            "tags = EXCLUDED.tags, embedding = EXCLUDED.embedding",
            rows,
        ))

    def clear(self) -> None:
        """Remove every vector (the search server refills a table that fell behind its chunks)."""
        self._run(self._conn.execute(f"DELETE FROM {self.table}"))

    def remove(self, ids: Sequence[int] | npt.NDArray[Any]) -> int:
        keys = check_ids(ids)
        status = self._run(self._conn.execute(f"DELETE FROM {self.table} WHERE id = ANY($1::bigint[])", keys.tolist()))
        return int(str(status).split()[-1])

    def search(self, query: npt.ArrayLike, k: int, filter: Filter | None = None) -> list[Hit]:
        q = check_query(query, self.dim, k)
        where, args = ["TRUE"], [_literal(q[0])]
        flt = filter or Filter()
        for column, value in (("tenant", flt.tenant), ("collection", flt.collection)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        if flt.tags_all:
            args.append(list(flt.tags_all))  # type: ignore[arg-type]
            where.append(f"tags @> ${len(args)}::text[]")
        if flt.tags_any:
            args.append(list(flt.tags_any))  # type: ignore[arg-type]
            where.append(f"tags && ${len(args)}::text[]")
        sql = (
            f"SELECT id, embedding {self._op} $1::vector AS d FROM {self.table} WHERE {' AND '.join(where)} "
            f"ORDER BY embedding {self._op} $1::vector LIMIT {int(k)}"
        )
        rows = self._run(self._search(sql, args))
        hits = [(int(r["id"]), self._distance(float(r["d"]))) for r in rows]
        return sorted(hits, key=lambda h: h[1])

    async def _search(self, sql: str, args: list[Any]) -> list[asyncpg.Record]:
        async with self._conn.transaction():
            await self._conn.execute(f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}")
            await self._conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            return list(await self._conn.fetch(sql, *args))

    def _distance(self, d: float) -> float:
        if self.metric == "ip":
            return 1.0 + d
        if self.metric == "l2":
            return d * d
        return d

    def save(self, path: str | Path) -> None:
        """The data already lives in PostgreSQL: write only a manifest naming the table."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {"backend": self.backend, "dim": self.dim, "metric": self.metric, "table": self.table,
                    "m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}
        (directory / "manifest.json").write_text(json.dumps(manifest))

    def stats(self) -> dict[str, Any]:
        size = self._run(self._conn.fetchval(f"SELECT pg_relation_size('{self.table}_hnsw')"))
        return {
            "backend": self.backend, "dim": self.dim, "metric": self.metric, "table": self.table, "count": len(self),
            "m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
            "memory_bytes": int(size or 0),
        }
