"""Where cached LLM answers live: diskcache (default) or a PostgreSQL table (shared by replicas).

Both backends key entries by (tenant, fingerprint), so one tenant never reads another's answer,
and both hold "in-flight" markers that let one process or replica compute a request while the
others wait for its answer (``claim`` / ``release`` / ``busy``; see singleflight.py).

Eviction is least-recently-stored: a hit costs one read and no write, which keeps the hit path
well under a millisecond. diskcache bounds the whole cache; PostgreSQL bounds each tenant
(row-level security hides other tenants' rows from the application role).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import diskcache
from sqlalchemy import text

from vsm_mcp.db import Database

Clock = Callable[[], float]


@dataclass
class Entry:
    """One cached answer (an OpenAI response body) and its bookkeeping."""

    body: dict[str, Any]
    model: str
    kind: str
    created: float
    expires: float
    tokens: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        return cls(**json.loads(raw))


class CacheBackend(Protocol):
    async def get(self, tenant: str, key: str) -> Entry | None: ...

    async def put(self, tenant: str, key: str, entry: Entry) -> None: ...

    async def purge(self, tenant: str | None, model: str | None, older_than: float | None) -> int:
        """Delete entries of ``tenant`` (all tenants when None, if the backend can), optionally
        only of ``model`` and only created before the epoch time ``older_than``; returns the count."""
        ...

    async def claim(self, tenant: str, key: str, owner: str, window_s: float) -> bool: ...

    async def release(self, tenant: str, key: str, owner: str) -> None: ...

    async def busy(self, tenant: str, key: str) -> bool: ...

    def usage(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


class DiskBackend:
    """diskcache under ``<VSM_HOME>/cache/llm``; safe to share between processes on one host."""

    def __init__(self, directory: Path, max_bytes: int, clock: Clock = time.time) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.cache = diskcache.Cache(
            str(directory), size_limit=max_bytes, eviction_policy="least-recently-stored", cull_limit=10,
        )
        self.clock = clock

    @staticmethod
    def _k(tenant: str, key: str) -> str:
        return f"a\x00{tenant}\x00{key}"

    async def get(self, tenant: str, key: str) -> Entry | None:
        raw = self.cache.get(self._k(tenant, key))  # a local SQLite read: tens of microseconds
        return Entry.decode(raw) if raw is not None else None

    async def put(self, tenant: str, key: str, entry: Entry) -> None:
        ttl = max(0.001, entry.expires - self.clock())
        tag = f"{tenant}\x00{entry.model}"
        await asyncio.to_thread(self.cache.set, self._k(tenant, key), entry.encode(), expire=ttl, tag=tag)

    async def purge(self, tenant: str | None, model: str | None, older_than: float | None) -> int:
        return await asyncio.to_thread(self._purge, tenant, model, older_than)

    def _purge(self, tenant: str | None, model: str | None, older_than: float | None) -> int:
        removed = 0
        for k in list(self.cache.iterkeys()):
            if not isinstance(k, str) or not k.startswith("a\x00"):
                continue
            _, t, _key = k.split("\x00", 2)
            if tenant is not None and t != tenant:
                continue
            raw = self.cache.get(k)
            if raw is None:
                continue
            entry = Entry.decode(raw)
            if model is not None and entry.model != model:
                continue
            if older_than is not None and entry.created >= older_than:
                continue
            removed += int(self.cache.delete(k))
        return removed

    # Claims are SQLite writes: run them off the event loop so hits never wait behind them.
    async def claim(self, tenant: str, key: str, owner: str, window_s: float) -> bool:
        k = f"f\x00{tenant}\x00{key}"
        return bool(await asyncio.to_thread(self.cache.add, k, owner, expire=window_s))

    async def release(self, tenant: str, key: str, owner: str) -> None:
        await asyncio.to_thread(self._release, f"f\x00{tenant}\x00{key}", owner)

    def _release(self, k: str, owner: str) -> None:
        with self.cache.transact():
            if self.cache.get(k) == owner:
                self.cache.delete(k)

    async def busy(self, tenant: str, key: str) -> bool:
        return self.cache.get(f"f\x00{tenant}\x00{key}") is not None

    def usage(self) -> dict[str, Any]:
        return {"backend": "diskcache", "bytes": int(self.cache.volume()), "max_bytes": self.cache.size_limit}

    async def aclose(self) -> None:
        self.cache.close()


def _ts(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class PostgresBackend:
    """Tables ``llm_cache`` / ``llm_inflight`` (migration 0004); isolation by row-level security."""

    EVICT_EVERY = 16  # bound checks per this many stores: a SUM over the tenant's rows is not free

    def __init__(self, db: Database, max_bytes: int, clock: Clock = time.time) -> None:
        self.db = db
        self.max_bytes = max_bytes
        self.clock = clock
        self._stores = 0

    async def get(self, tenant: str, key: str) -> Entry | None:
        async with self.db.tenant(tenant) as s:
            row = (await s.execute(
                text("SELECT body FROM llm_cache WHERE tenant_id = :t AND key = :k AND expires_at > :now"),
                {"t": tenant, "k": key, "now": _ts(self.clock())},
            )).first()
        return Entry.decode(bytes(row[0])) if row else None

    async def put(self, tenant: str, key: str, entry: Entry) -> None:
        body = entry.encode()
        now = _ts(self.clock())
        async with self.db.tenant(tenant) as s:
            await s.execute(text(
                "INSERT INTO llm_cache (tenant_id, key, model, kind, body, size, tokens, expires_at, created_at, updated_at) "
                "VALUES (:t, :k, :m, :kind, :b, :size, :tok, :exp, :now, :now) "
                "ON CONFLICT (tenant_id, key) DO UPDATE SET body = EXCLUDED.body, size = EXCLUDED.size, "
                "tokens = EXCLUDED.tokens, expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at"
            ), {"t": tenant, "k": key, "m": entry.model, "kind": entry.kind, "b": body, "size": len(body),
                "tok": entry.tokens, "exp": _ts(entry.expires), "now": now})
            self._stores += 1
            if self._stores % self.EVICT_EVERY == 0:
                await self._evict(s, tenant, now)

    async def _evict(self, s: Any, tenant: str, now: datetime) -> None:
        await s.execute(text("DELETE FROM llm_cache WHERE tenant_id = :t AND expires_at <= :now"),
                        {"t": tenant, "now": now})
        # Newest first; drop every row past the point where the running total exceeds the bound.
        await s.execute(text(
            "DELETE FROM llm_cache WHERE tenant_id = :t AND key IN (SELECT key FROM ("
            " SELECT key, SUM(size) OVER (ORDER BY created_at DESC, key) AS running FROM llm_cache"
            " WHERE tenant_id = :t) r WHERE running > :max)"
        ), {"t": tenant, "max": self.max_bytes})

    async def purge(self, tenant: str | None, model: str | None, older_than: float | None) -> int:
        if tenant is None:
            return 0  # the application role sees one tenant at a time; callers pass each tenant
        sql = "DELETE FROM llm_cache WHERE tenant_id = :t"
        params: dict[str, Any] = {"t": tenant}
        if model is not None:
            sql += " AND model = :m"
            params["m"] = model
        if older_than is not None:
            sql += " AND created_at < :before"
            params["before"] = _ts(older_than)
        async with self.db.tenant(tenant) as s:
            result = await s.execute(text(sql), params)
        return int(getattr(result, "rowcount", 0) or 0)

    async def claim(self, tenant: str, key: str, owner: str, window_s: float) -> bool:
        now = self.clock()
        async with self.db.tenant(tenant) as s:
            row = (await s.execute(text(
                "INSERT INTO llm_inflight (tenant_id, key, owner, expires_at, created_at, updated_at) "
                "VALUES (:t, :k, :o, :exp, :now, :now) ON CONFLICT (tenant_id, key) DO UPDATE "
                "SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at, updated_at = EXCLUDED.updated_at "
                "WHERE llm_inflight.expires_at <= EXCLUDED.created_at RETURNING owner"
            ), {"t": tenant, "k": key, "o": owner, "exp": _ts(now + window_s), "now": _ts(now)})).first()
        return row is not None and row[0] == owner

    async def release(self, tenant: str, key: str, owner: str) -> None:
        async with self.db.tenant(tenant) as s:
            await s.execute(text("DELETE FROM llm_inflight WHERE tenant_id = :t AND key = :k AND owner = :o"),
                            {"t": tenant, "k": key, "o": owner})

    async def busy(self, tenant: str, key: str) -> bool:
        async with self.db.tenant(tenant) as s:
            row = (await s.execute(
                text("SELECT 1 FROM llm_inflight WHERE tenant_id = :t AND key = :k AND expires_at > :now"),
                {"t": tenant, "k": key, "now": _ts(self.clock())},
            )).first()
        return row is not None

    def usage(self) -> dict[str, Any]:
        return {"backend": "postgresql", "max_bytes_per_tenant": self.max_bytes}

    async def aclose(self) -> None:
        return None
