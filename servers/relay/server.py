"""The relay server: ingest a live stream (SSE or WebSocket), run each item through tools, republish
it on the bus as ``relay.<stream>.item`` (so ``/v1/events?topics=relay.<stream>.*`` delivers it).

Tools: ``relay_start(stream, url, summarize)``, ``relay_stop(stream)``, ``relay_list()``,
``relay_key_phrases(text, limit)``. Per item the relay calls, through the router as the principal
that started it (grants, policy, limits and audit apply as to any call):

* ``relay__relay_key_phrases`` — key phrases without a model (phrases.py), always;
* ``llm__llm_complete`` — a one-sentence summary and named entities, only with ``summarize=true``
  and ``model`` (a name of ``VSM_LLM_MODELS``; a failed call is reported in the item, the relay keeps going).

The source URL passes the SSRF guard (vsm_mcp.ssrf, ``VSM_FETCH_ALLOW``) in ``relay_start`` (a
refused address is the tool's error) and again before each connection, which goes to the checked
address (source.py pins it). A dropped connection is retried with backoff and reported as a
``relay.<stream>.error`` event; a refusal on reconnect ends the relay.
Relays run in this process until stopped or until the server shuts down (not persisted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.relay.phrases import key_phrases
from servers.relay.source import check_source_url, read_source
from servers.tool_errors import tool_errors
from vsm_mcp.auth import Principal
from vsm_mcp.bus.events import Event
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound
from vsm_mcp.ssrf import AddressGuard, AllowList, Target

_STREAM = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
MAX_TEXT = 20_000


@dataclass
class Relay:
    stream: str
    url: str
    tenant: str
    summarize: bool
    model: str = ""
    task: asyncio.Task[None] | None = None
    items: int = 0
    errors: list[str] = field(default_factory=list)


def text_of(data: str) -> str:
    """An item's text: the ``text``/``title``/``body`` of a JSON object, else the raw data."""
    with contextlib.suppress(ValueError):
        obj = json.loads(data)
        if isinstance(obj, dict):
            parts = [str(obj[k]) for k in ("title", "text", "body", "summary") if isinstance(obj.get(k), str)]
            if parts:
                return "\n".join(parts)[:MAX_TEXT]
    return data[:MAX_TEXT]


def _tool_json(result: Any) -> Any:
    if result.is_error:
        raise RuntimeError(" ".join(getattr(c, "text", "") for c in result.content) or "tool error")
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def build(ctx: ServerContext) -> MCPServer:
    relays: dict[tuple[str, str], Relay] = {}  # (tenant, stream) -> relay
    guard = AddressGuard(AllowList.parse(ctx.settings.fetch_allow))

    async def process(relay: Relay, principal: Principal, item_id: str, data: str, received: float) -> None:
        text = text_of(data)
        out: dict[str, Any] = {"source_id": item_id, "data": data[:MAX_TEXT], "received_at": received}
        try:
            res = await ctx.tools.call(principal, "relay__relay_key_phrases", {"text": text, "limit": 5}, source="relay")
            out["key_phrases"] = _tool_json(res)["phrases"]
        except Exception as exc:  # one bad item must not stop the stream
            out["key_phrases_error"] = str(exc)[:300]
        if relay.summarize:
            prompt = ("Summarize the text in one sentence, then list its named entities. Answer as JSON: "
                      '{"summary": "...", "entities": ["..."]}\n\n' + text)
            try:
                res = await ctx.tools.call(principal, "llm__llm_complete", {
                    "messages": [{"role": "user", "content": prompt}], "model": relay.model,
                    "params": {"temperature": 0}}, source="relay")
                answer = _tool_json(res)
                out["summary"] = answer["response"]["choices"][0]["message"]["content"]
            except Exception as exc:
                out["summary_error"] = str(exc)[:300]
        out["published_at"] = time.time()
        await ctx.bus.publish(Event(topic=f"relay.{relay.stream}.item", tenant=relay.tenant, type="relay.item",
                                    data=out))
        relay.items += 1

    async def report(relay: Relay, problem: str) -> None:
        relay.errors = [*relay.errors[-19:], problem[:300]]
        await ctx.bus.publish(Event(topic=f"relay.{relay.stream}.error", tenant=relay.tenant,
                                    type="relay.error", data={"error": problem[:300]}))

    async def run(relay: Relay, principal: Principal, first: Target) -> None:
        _, host, port = check_source_url(relay.url)
        pinned: list[Target] = [first]  # relay_start's check serves the first connection

        async def pin() -> Target:
            return pinned.pop() if pinned else await guard.check(relay.url, host, port)

        async def on_drop(problem: str) -> None:
            await report(relay, problem)

        try:
            async for item in read_source(relay.url, pin, on_drop):
                await process(relay, principal, item.id, item.data, time.time())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the guard refused a reconnect (DNS now says private), or a bug
            await report(relay, f"relay stopped: {exc}")

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            for relay in relays.values():
                if relay.task is not None:
                    relay.task.cancel()
            relays.clear()

    server = MCPServer("relay", instructions="Relay a live SSE or WebSocket stream through tools onto /v1/events "
                       "as relay.<stream>.item.", lifespan=lifespan)

    @server.tool(title="Relay a live SSE or WebSocket stream: subscribe to a feed and republish its items as events", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    @tool_errors
    async def relay_start(
        stream: str, url: str, mcp_ctx: Context, summarize: bool = False, model: str = ""
    ) -> dict[str, Any]:
        """Start relaying the source ``url`` — SSE (http, https) or WebSocket (ws, wss) — as
        ``relay.<stream>.item`` events (key phrases per item; with ``summarize``, a summary and
        entities from ``model`` through the LLM-CDN). Private addresses need ``VSM_FETCH_ALLOW``."""
        if summarize and not model:
            raise InvalidArguments("summarize needs model: a name from VSM_LLM_MODELS")
        if not _STREAM.match(stream):
            raise InvalidArguments("stream: 1-64 letters, digits, '_' or '-' (it becomes a topic word)")
        _, host, port = check_source_url(url)
        principal = await ctx.principal_of(mcp_ctx)
        key = (principal.tenant_id, stream)
        if key in relays and relays[key].task is not None and not relays[key].task.done():  # type: ignore[union-attr]
            raise Conflict(f"relay {stream!r} is already running (relay_stop it first)")
        target = await guard.check(url, host, port)  # refused → this call's error, before anything starts
        relay = relays[key] = Relay(stream, url, principal.tenant_id, summarize, model)
        relay.task = asyncio.get_running_loop().create_task(run(relay, principal, target), name=f"relay:{stream}")
        return {"stream": stream, "topic": f"relay.{stream}.item", "url": url, "address": str(target.address)}

    @server.tool(title="Stop a live stream relay", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    @tool_errors
    async def relay_stop(stream: str, mcp_ctx: Context) -> dict[str, Any]:
        """Stop relay ``stream``."""
        principal = await ctx.principal_of(mcp_ctx)
        relay = relays.pop((principal.tenant_id, stream), None)
        if relay is None:
            raise NotFound(f"no relay named {stream!r}")
        if relay.task is not None:
            relay.task.cancel()
        return {"stream": stream, "items": relay.items}

    @server.tool(title="List the live stream relays", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def relay_list(mcp_ctx: Context) -> dict[str, Any]:
        """The caller's relays: url, items relayed, running, errors."""
        principal = await ctx.principal_of(mcp_ctx)
        return {"relays": [
            {"stream": r.stream, "url": r.url, "items": r.items, "summarize": r.summarize,
             "running": r.task is not None and not r.task.done(), "errors": r.errors[-5:]}
            for (tenant, _), r in relays.items() if tenant == principal.tenant_id]}

    @server.tool(title="Extract key phrases (keywords) from a text", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def relay_key_phrases(text: str, limit: int = 5) -> dict[str, Any]:
        """Key phrases of ``text`` without a model (RAKE), best first."""
        if not 1 <= limit <= 50:
            raise InvalidArguments("limit: 1-50")
        return {"phrases": key_phrases(text[:MAX_TEXT], limit)}

    return server
