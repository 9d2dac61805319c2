"""The deterministic tool-result cache (pipeline step 6): ``ToolCache`` implements
``vsm_mcp.hooks.CallCache`` for tools the catalog marks cacheable (readOnlyHint + idempotentHint,
or ``cacheable: true`` in a manifest).

* **Key** = sha256 of (tenant, tool's server and name, its input-schema hash, canonical JSON of
  the arguments, and three *generations*: the tenant's, the tenant's for that server, and the
  server's). The tenant is in the key, so one tenant's entry can never answer another's call.
* **Invalidation** bumps a generation instead of hunting for keys: ``list_changed`` from an
  upstream bumps the server's, ``purge(tenant[, server])`` (the ``cache_purge`` tool) the
  tenant's; old entries become unreachable and age out. A changed schema changes the key by
  itself. Generations are random tokens kept in the backend (never evicted), so a restart or
  another replica sharing Redis never resurrects a purged entry; a purge is announced on the bus
  (``toolcache.purged``) so other replicas pick up the new token at once.
* **Single flight**: the first call for a key runs the upstream call in its own task; identical
  calls arriving meanwhile await that task (``shared``) — N concurrent calls, one upstream call —
  and a caller that goes away does not cancel it for the others.
* **Two levels**: results as objects in a bounded in-process LRU (a hit costs a dict lookup and
  the key's hash), and as JSON in the backend — diskcache under ``<home>/tool-cache`` by default,
  Redis when ``VSM_REDIS_URL`` is set (shared by replicas). Tool errors are never cached.
* **TTL** per tool: the manifest's ``cache_ttl`` for that tool, else ``VSM_TOOL_CACHE_TTL_S``.

``call.cache`` records what happened (hit, miss, shared) for the metrics observer, which
counts only what a cache actually did.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Protocol

import mcp.types as mt
import orjson

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.hooks import CallInfo

log = logging.getLogger(__name__)

PURGE_TOPIC = "toolcache.purged"
L1_ENTRIES = 10_000

TtlFor = Callable[[str, str], float]


class Backend(Protocol):
    """Where entries (JSON bytes with a TTL) and generations (tokens, never evicted) live."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float) -> None: ...

    async def generation(self, name: str) -> str: ...

    async def set_generation(self, name: str, token: str) -> None: ...

    def size(self) -> dict[str, int]: ...

    async def aclose(self) -> None: ...


class DiskBackend:
    """diskcache: entries in a size-bounded Cache, generations in an Index (no eviction)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        import diskcache

        directory.mkdir(parents=True, exist_ok=True)
        # A short SQLite timeout: a cache that waits on a lock is worse than a miss.
        self.entries = diskcache.Cache(str(directory / "entries"), size_limit=max_bytes, timeout=0.5,
                                       eviction_policy="least-recently-stored")
        self.gens = diskcache.Index(str(directory / "generations"))

    async def get(self, key: str) -> bytes | None:
        try:
            value = self.entries.get(key)
        except Exception:  # a locked or damaged cache file is a miss, never a failed call
            log.warning("tool cache: disk read failed", exc_info=True)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await asyncio.to_thread(self.entries.set, key, value, expire=ttl)

    async def generation(self, name: str) -> str:
        token = self.gens.get(name)
        if token is None:
            token = secrets.token_hex(8)
            self.gens.setdefault(name, token)
            token = self.gens[name]
        return str(token)

    async def set_generation(self, name: str, token: str) -> None:
        self.gens[name] = token

    def size(self) -> dict[str, int]:
        return {"entries": len(self.entries), "bytes": int(self.entries.volume())}

    async def aclose(self) -> None:
        self.entries.close()


class RedisBackend:
    """Redis shared by replicas: ``vsm:tc:<key>`` with PX expiry, ``vsm:tcgen:<name>`` without."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.r.get(f"vsm:tc:{key}")
        except Exception:  # Redis down: a miss, the call still goes to the upstream
            log.warning("tool cache: Redis read failed", exc_info=True)
            return None
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self.r.set(f"vsm:tc:{key}", value, px=max(1, int(ttl * 1000)))

    async def generation(self, name: str) -> str:
        await self.r.set(f"vsm:tcgen:{name}", secrets.token_hex(8), nx=True)
        value = await self.r.get(f"vsm:tcgen:{name}")
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set_generation(self, name: str, token: str) -> None:
        await self.r.set(f"vsm:tcgen:{name}", token)

    def size(self) -> dict[str, int]:
        return {}

    async def aclose(self) -> None:
        await self.r.aclose()


class _Entry:
    __slots__ = ("result", "expires")

    def __init__(self, result: mt.CallToolResult, expires: float) -> None:
        self.result, self.expires = result, expires


def canonical_args(arguments: dict[str, Any]) -> bytes:
    """Sorted keys at every depth, compact: equal argument objects give equal bytes."""
    try:
        return orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson refuses (huge integers …): the standard library, also sorted
        return json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class ToolCache:
    """See the module docstring."""

    def __init__(self, backend: Backend, ttl_for: TtlFor, *, bus: Bus | None = None, l1_entries: int = L1_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.ttl_for = ttl_for
        self.bus = bus
        self.clock = clock
        self.l1: OrderedDict[str, _Entry] = OrderedDict()
        self.l1_entries = l1_entries
        self.gens: dict[str, str] = {}
        self.inflight: dict[str, asyncio.Task[mt.CallToolResult]] = {}
        self.counts = {"hit": 0, "miss": 0, "shared": 0, "stored": 0, "evicted_size": 0, "evicted_expired": 0,
                       "not_stored_error": 0, "upstream_calls": 0}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listener: asyncio.Task[None] | None = None

    # --- keys ----------------------------------------------------------------------------
    async def _gen(self, name: str) -> str:
        token = self.gens.get(name)
        if token is None:
            token = self.gens[name] = await self.backend.generation(name)
        return token

    async def key(self, call: CallInfo) -> str:
        tenant = call.principal.tenant_id
        parts = (
            tenant, await self._gen(f"t:{tenant}"), await self._gen(f"ts:{tenant}:{call.server}"),
            await self._gen(f"s:{call.server}"), call.server, call.tool, call.schema_hash,
        )
        h = hashlib.sha256("\x00".join(parts).encode())
        h.update(b"\x00")
        h.update(canonical_args(call.arguments))
        return h.hexdigest()

    # --- the hook --------------------------------------------------------------------------
    async def get_or_call(self, call: CallInfo, invoke: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        key = await self.key(call)
        entry = self.l1.get(key)
        if entry is not None:
            if entry.expires > self.clock():
                self.l1.move_to_end(key)
                self.counts["hit"] += 1
                call.cache = "hit"
                return entry.result, True
            del self.l1[key]
            self.counts["evicted_expired"] += 1
        task = self.inflight.get(key)
        if task is not None:
            self.counts["shared"] += 1
            call.cache = "shared"
            return await asyncio.shield(task), True
        state = {"from": "miss"}
        task = asyncio.ensure_future(self._fill(key, call, invoke, state))
        self.inflight[key] = task
        task.add_done_callback(lambda _t: self.inflight.pop(key, None))
        result = await asyncio.shield(task)
        call.cache = "hit" if state["from"] == "backend" else "miss"
        self.counts["hit" if call.cache == "hit" else "miss"] += 1
        return result, call.cache == "hit"

    async def _fill(self, key: str, call: CallInfo, invoke: Callable[[], Awaitable[Any]],
                    state: dict[str, str]) -> mt.CallToolResult:
        ttl = self.ttl_for(call.server, call.tool)
        raw = await self.backend.get(key)
        if raw is not None:
            try:
                result = mt.CallToolResult.model_validate_json(raw)
                state["from"] = "backend"
                self._remember(key, result, ttl)
                return result
            except ValueError:
                log.warning("tool cache: undecodable entry for %s; calling the upstream", call.public_name)
        self.counts["upstream_calls"] += 1
        result = await invoke()
        if not isinstance(result, mt.CallToolResult):
            result = mt.CallToolResult.model_validate(result)
        if result.is_error:
            self.counts["not_stored_error"] += 1
            return result
        self._remember(key, result, ttl)
        body = result.model_dump_json(by_alias=True, exclude_none=True).encode()
        self._background(self.backend.set(key, body, ttl))
        self.counts["stored"] += 1
        return result

    def _remember(self, key: str, result: mt.CallToolResult, ttl: float) -> None:
        self.l1[key] = _Entry(result, self.clock() + ttl)
        self.l1.move_to_end(key)
        while len(self.l1) > self.l1_entries:
            self.l1.popitem(last=False)
            self.counts["evicted_size"] += 1

    def _background(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:  # a failed store only costs a later miss
                log.warning("tool cache: store failed", exc_info=True)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- invalidation ----------------------------------------------------------------------
    async def _bump(self, name: str, token: str | None = None) -> str:
        token = token or secrets.token_hex(8)
        self.gens[name] = token
        await self.backend.set_generation(name, token)
        return token

    async def on_list_changed(self, server: str) -> None:
        """An upstream's tools changed: none of its cached results is trusted any more."""
        await self._bump(f"s:{server}")

    async def on_notification(self, server: str, notification: Any) -> None:
        """A ``RouterRuntime`` notification listener: ``tools/list_changed`` invalidates ``server``."""
        if getattr(notification, "method", "") == "notifications/tools/list_changed":
            await self.on_list_changed(server)

    async def purge(self, tenant: str, server: str | None = None) -> None:
        name = f"ts:{tenant}:{server}" if server else f"t:{tenant}"
        token = await self._bump(name)
        if self.bus is not None:
            with suppress(Exception):  # other replicas also read the new token from a shared backend
                await self.bus.publish(Event(topic=PURGE_TOPIC, data={"name": name, "token": token}))

    async def start(self) -> None:
        """Follow other replicas' purges (``toolcache.purged`` on the bus)."""
        if self.bus is None or self._listener is not None:
            return
        sub = await self.bus.subscribe([PURGE_TOPIC])

        async def listen() -> None:
            try:
                async for event in sub:
                    name, token = event.data.get("name"), event.data.get("token")
                    if isinstance(name, str) and isinstance(token, str) and self.gens.get(name) != token:
                        self.gens[name] = token
                        with suppress(Exception):  # kept, so a restart does not bring old entries back
                            await self.backend.set_generation(name, token)
            finally:
                await sub.aclose()

        self._listener = asyncio.create_task(listen(), name="tool-cache-purges")

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.aclose()

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "memory_entries": len(self.l1), "in_flight": len(self.inflight),
                "backend": type(self.backend).__name__, **{f"backend_{k}": v for k, v in self.backend.size().items()}}


def make_tool_cache(home: Path, redis_url: str, max_bytes: int, ttl_for: TtlFor, bus: Bus | None) -> ToolCache:
    backend: Backend = RedisBackend(redis_url) if redis_url else DiskBackend(home / "tool-cache", max_bytes)
    return ToolCache(backend, ttl_for, bus=bus)
