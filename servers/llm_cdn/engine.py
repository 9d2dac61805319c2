"""The LLM-CDN engine: fingerprint → cache → single-flight → providers, shared by the MCP tools
and the OpenAI-compatible edge (router/edge/openai.py finds it in ``ctx.extras["llm_cdn"]``).

Lookup order for a chat request: exact cache (tenant, fingerprint); the semantic index when
enabled and the request is eligible; otherwise one upstream call per key at a time — in this
process (SingleFlight) and across processes/replicas (an in-flight marker in the backend; the
others poll the backend for the answer). Answers from a fallback model are shared with the
waiting callers but not stored: once the primary is back, callers get its answer.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

from servers.llm_cdn import live
from servers.llm_cdn import semantic as sem
from servers.llm_cdn.cache import CacheBackend, Clock, DiskBackend, Entry, PostgresBackend
from servers.llm_cdn.events import EventPublisher
from servers.llm_cdn.fingerprint import fingerprint
from servers.llm_cdn.live import StreamOutcome
from servers.llm_cdn.models_config import load_models
from servers.llm_cdn.providers import Providers, preload, warm_up
from servers.llm_cdn.singleflight import SingleFlight
from servers.llm_cdn.stats import Stats
from vsm_mcp.bus import Bus
from vsm_mcp.config import Settings
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments


@dataclass
class Outcome:
    """An answer and how it was obtained: ``cache`` is hit | semantic | miss | shared | bypass."""

    body: dict[str, Any]
    cache: str
    model: str
    key: str


def _check_chat(request: dict[str, Any]) -> None:
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise InvalidArguments("'model' is required and must be a non-empty string", data={"param": "model"})
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidArguments("'messages' must be a non-empty list of messages", data={"param": "messages"})
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InvalidArguments(f"messages[{i}] must be an object with a string 'role'", data={"param": f"messages[{i}]"})


def _check_embed(request: dict[str, Any]) -> None:
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise InvalidArguments("'model' is required and must be a non-empty string", data={"param": "model"})
    inp = request.get("input")
    if not (isinstance(inp, str) and inp) and not (isinstance(inp, list) and inp):
        raise InvalidArguments("'input' must be a non-empty string or list", data={"param": "input"})


def _tokens(body: dict[str, Any]) -> int:
    usage = body.get("usage") or {}
    return int(usage.get("total_tokens") or 0)


class Engine:
    """One per process; safe to share between the MCP server and the HTTP edge."""

    def __init__(
        self, settings: Settings, bus: Bus, backend: CacheBackend, providers: Providers, *,
        semantic: sem.SemanticIndex | None = None, clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.backend = backend
        self.providers = providers
        self.semantic = semantic
        self.clock = clock
        self.stats = Stats()
        self.flight: SingleFlight[tuple[dict[str, Any], str, str]] = SingleFlight()
        self.events = EventPublisher(bus)

    @classmethod
    def from_context(cls, ctx: ServerContext) -> Engine:
        s = ctx.settings
        backend: CacheBackend
        if ctx.db.is_postgres:
            backend = PostgresBackend(ctx.db, s.llm_cache_max_bytes)
        else:
            backend = DiskBackend(s.home / "cache" / "llm", s.llm_cache_max_bytes)
        index = None
        if s.llm_semantic_cache:
            from vsm_mcp.embeddings import make_embedder

            index = sem.SemanticIndex(make_embedder(s.embedder), s.llm_semantic_threshold)
        table = load_models(s.llm_models)
        if table.models:
            warm_up()
        return cls(s, ctx.bus, backend, Providers(table, s), semantic=index)

    # --- public API ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Have the provider library loaded when this returns (blocking: run it on a worker thread).
        The router calls it at start when tool search's rerank asks this server (router/rerank.py),
        so the first rerank does not spend its short budget on importing litellm (~2.8 s)."""
        if self.providers.table.models:
            preload()

    def cacheable(self, request: dict[str, Any]) -> bool:
        mode = self.settings.llm_cache_mode
        if mode == "off" or request.get("cache") is False:  # the caller opted out for this request
            return False
        if mode == "all":
            return True
        return request.get("seed") is not None or request.get("temperature") in (0, 0.0)

    async def complete(self, tenant: str, request: dict[str, Any]) -> Outcome:
        """Answer an OpenAI chat request (``stream`` is ignored here; see stream.py)."""
        _check_chat(request)
        return await self._serve(tenant, request, "chat", self.cacheable(request))

    async def stream(self, tenant: str, request: dict[str, Any]) -> StreamOutcome:
        """Answer a ``stream: true`` chat request: a cached answer to replay, or a miss streamed
        live from the provider (stored when complete, shared with identical concurrent requests)."""
        _check_chat(request)
        t0 = time.perf_counter()
        if not self.cacheable(request):
            chunks, used = await self.providers.chat_stream(request)
            self.stats.record("bypass", (time.perf_counter() - t0) * 1000)
            return StreamOutcome("bypass", used, chunks=chunks)
        key = fingerprint(request, "chat")
        flight_key = f"{tenant}\x00{key}"
        entry = await self.backend.get(tenant, key)
        if entry is not None and entry.expires > self.clock():
            out = self._hit(tenant, key, entry, "hit", t0)
            return StreamOutcome(out.cache, out.model, body=out.body)
        if (self.semantic is not None and sem.eligible(request)) or self.flight.busy(flight_key):
            out = await self._serve(tenant, request, "chat", True)  # semantic or joining: a replay
            return StreamOutcome(out.cache, out.model, body=out.body)
        queue: asyncio.Queue[live.Item] = asyncio.Queue()
        task, leader = self.flight.start(flight_key, lambda: self._pump(tenant, key, request, queue))
        if not leader:
            (body, used, _how) = await asyncio.shield(task)
            return StreamOutcome("shared", used, body=body)
        kind, value = await queue.get()
        if kind == "error":
            raise value
        if kind == "body":
            body, used, how = value
            return StreamOutcome(how, used, body=body)
        self.stats.record("miss", (time.perf_counter() - t0) * 1000)  # time to the first chunk
        self._emit("miss", tenant, {"model": request["model"], "key": key[:16], "live": True})
        return StreamOutcome("miss", value, chunks=live.drain(queue))

    async def embed(self, tenant: str, request: dict[str, Any]) -> Outcome:
        """Answer an OpenAI embeddings request; embeddings are deterministic, so always cacheable."""
        _check_embed(request)
        return await self._serve(tenant, request, "embedding", self.settings.llm_cache_mode != "off")

    async def purge(self, tenant: str | None, model: str | None = None, older_than_s: float | None = None) -> int:
        before = self.clock() - older_than_s if older_than_s is not None else None
        n = await self.backend.purge(tenant, model, before)
        if self.semantic is not None:
            self.semantic.purge(tenant)
        self.stats.purged += n
        self._emit("purge", tenant or "", {"model": model, "older_than_s": older_than_s, "removed": n})
        return n

    def snapshot(self) -> dict[str, Any]:
        out = self.stats.snapshot()
        out["upstream_calls"] = dict(self.providers.upstream_calls)
        out["upstream_errors"] = dict(self.providers.upstream_errors)
        out["events_dropped"] = self.events.dropped
        out["breakers"] = {name: b.state for name, b in self.providers.breakers.items()}
        out["storage"] = self.backend.usage()
        out["semantic_cache"] = self.semantic is not None
        return out

    def models(self) -> list[dict[str, Any]]:
        return [{"id": m.name, "object": "model", "created": 0, "owned_by": "vsm-mcp", "kind": m.kind}
                for m in self.providers.table.models.values()]

    async def aclose(self) -> None:
        await self.events.aclose()
        await self.backend.aclose()

    # --- the pipeline ----------------------------------------------------------------------

    async def _serve(self, tenant: str, request: dict[str, Any], kind: str, cacheable: bool) -> Outcome:
        t0 = time.perf_counter()
        key = fingerprint(request, kind)
        model = request["model"]
        if not cacheable:
            body, used = await self._upstream(kind, request)
            self.stats.record("bypass", (time.perf_counter() - t0) * 1000)
            return Outcome(body, "bypass", used, key)
        entry = await self.backend.get(tenant, key)
        if entry is not None and entry.expires > self.clock():
            return self._hit(tenant, key, entry, "hit", t0)
        vector = None
        if self.semantic is not None and kind == "chat" and sem.eligible(request):
            vector, found = await self._semantic_lookup(tenant, request)
            if found is not None:
                return self._hit(tenant, found.key, found.entry, "semantic", t0)
        (body, used, how), shared = await self.flight.do(
            f"{tenant}\x00{key}", lambda: self._fill(tenant, key, kind, request, vector)
        )
        how = "shared" if shared else how
        ms = (time.perf_counter() - t0) * 1000
        self.stats.record(how, ms, _tokens(body))
        self._emit("miss" if how == "miss" else "shared", tenant, {"model": model, "key": key[:16], "ms": round(ms, 3)})
        return Outcome(body, how, used, key)

    def _hit(self, tenant: str, key: str, entry: Entry, how: str, t0: float) -> Outcome:
        ms = (time.perf_counter() - t0) * 1000
        self.stats.record(how, ms, entry.tokens)
        self._emit("hit", tenant, {"model": entry.model, "key": key[:16], "kind": how, "tokens": entry.tokens})
        return Outcome(entry.body, how, entry.body.get("model", entry.model), key)

    async def _fill(
        self, tenant: str, key: str, kind: str, request: dict[str, Any], vector: Any
    ) -> tuple[dict[str, Any], str, str]:
        """The leader's work: claim the key across replicas, call upstream, store."""
        owner = uuid.uuid4().hex
        window = self.settings.llm_dedup_window_s
        deadline = time.monotonic() + window
        delay = 0.01
        while not await self.backend.claim(tenant, key, owner, window):
            # Another process/replica is computing this key: wait for its answer.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            entry = await self.backend.get(tenant, key)
            if entry is not None and entry.expires > self.clock():
                return entry.body, entry.body.get("model", entry.model), "shared"
            if time.monotonic() > deadline:
                break  # the other party vanished without releasing; compute ourselves
        try:
            entry = await self.backend.get(tenant, key)  # finished while we were claiming?
            if entry is not None and entry.expires > self.clock():
                return entry.body, entry.body.get("model", entry.model), "shared"
            body, used = await self._upstream(kind, request)
            if used == request["model"]:
                await self._store(tenant, key, kind, request, body, vector)
            return body, used, "miss"
        finally:
            await self.backend.release(tenant, key, owner)

    async def _pump(
        self, tenant: str, key: str, request: dict[str, Any], queue: asyncio.Queue[live.Item]
    ) -> tuple[dict[str, Any], str, str]:
        """Single-flight task of a live miss: stream upstream into ``queue``, then store."""
        owner = uuid.uuid4().hex
        if not await self.backend.claim(tenant, key, owner, self.settings.llm_dedup_window_s):
            result = await self._fill(tenant, key, "chat", request, None)  # another replica has it
            queue.put_nowait(("body", result))
            return result
        try:
            try:
                chunks, used = await self.providers.chat_stream(request)
            except BaseException as exc:
                queue.put_nowait(("error", exc))
                raise
            queue.put_nowait(("model", used))
            collected: list[dict[str, Any]] = []
            try:
                async for chunk in chunks:
                    collected.append(chunk)
                    queue.put_nowait(("chunk", chunk))
            except BaseException as exc:
                queue.put_nowait(("error", exc))
                raise
            body = live.assemble(collected)
            body["model"] = used
            if used == request["model"]:
                await self._store(tenant, key, "chat", request, body, None)
            queue.put_nowait(("end", None))
            return body, used, "miss"
        finally:
            await self.backend.release(tenant, key, owner)

    async def _upstream(self, kind: str, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
        if kind == "chat":
            return await self.providers.chat(request)
        return await self.providers.embed(request)

    async def _store(
        self, tenant: str, key: str, kind: str, request: dict[str, Any], body: dict[str, Any], vector: Any
    ) -> None:
        spec = self.providers.table.get(request["model"])
        ttl = (spec.ttl_s if spec and spec.ttl_s else None) or self.settings.llm_cache_ttl_s
        now = self.clock()
        entry = Entry(body=body, model=request["model"], kind=kind, created=now, expires=now + ttl, tokens=_tokens(body))
        await self.backend.put(tenant, key, entry)
        self.stats.stores += 1
        if vector is not None and self.semantic is not None:
            self.semantic.add(tenant, sem.bucket_of(request), vector, key)
        self._emit("store", tenant, {"model": request["model"], "key": key[:16], "ttl_s": ttl})

    async def _semantic_lookup(self, tenant: str, request: dict[str, Any]) -> tuple[Any, _Found | None]:
        assert self.semantic is not None
        text = sem.last_user_text(request) or ""
        vector = await asyncio.to_thread(self.semantic.embed, text)
        match = self.semantic.lookup(tenant, sem.bucket_of(request), vector)
        if match is None:
            return vector, None
        entry = await self.backend.get(tenant, match[0])
        if entry is None or entry.expires <= self.clock():
            return vector, None
        return vector, _Found(match[0], entry)

    def _emit(self, what: str, tenant: str, data: dict[str, Any]) -> None:
        self.events.emit(what, tenant, data)


@dataclass
class _Found:
    key: str
    entry: Entry
