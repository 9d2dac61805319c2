"""The relay end to end: a live SSE source on 127.0.0.1 → relay (key phrases through the router's
tool pipeline) → ``/v1/events?topics=relay.news.*`` of the same router, in order, as they arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from router.app import create_app
from router.upstreams.manifest import UpstreamSpec
from tests.integration.edge.conftest import SseReader, eventually, serve
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext
from vsm_mcp.tenants import create_api_key, create_tenant

pytestmark = pytest.mark.anyio
RELAY = UpstreamSpec(name="relay", kind="builtin", target="servers.relay.server:build")
ITEMS = [
    {"title": "European Central Bank raises interest rates", "text": "The central bank acted on inflation."},
    {"title": "Heavy snowfall closes mountain passes", "text": "Road authorities warn drivers."},
    "plain text item about solar panel subsidies",
]


def source_app(queue: asyncio.Queue[str | None]) -> Starlette:
    async def events(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            n = 0
            while (item := await queue.get()) is not None:
                n += 1
                yield f"id: {n}\nevent: news\ndata: {item}\n\n".encode()
        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/events", events)])


async def test_live_items_reach_v1_events_with_key_phrases(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".vsm", allow_anonymous=False, fetch_allow=["127.0.0.1/32"])
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    await create_tenant(ctx.db, "acme")
    key, _ = await create_api_key(ctx.db, "acme", ["events:read", "events:write", "tools:call"])
    auth = {"Authorization": f"Bearer {key}"}
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    app = create_app(settings, ctx, specs=[RELAY])
    async with serve(source_app(queue)) as src, serve(app) as url, \
            httpx.AsyncClient(base_url=url, timeout=30) as client:
        await eventually(lambda: app.state.runtime.readiness()["ok"], what="the relay upstream")
        principal = await app.state.authenticator.authenticate(auth["Authorization"])
        async with client.stream("GET", "/v1/events", params={"topics": "relay.news.*"}, headers=auth) as resp:
            reader = SseReader(resp)
            started = await app.state.dispatcher.call_tool(
                principal, "relay__relay_start", {"stream": "news", "url": f"{src}/events"})
            assert not started.is_error, started.content
            got = []
            for item in ITEMS:
                await queue.put(item if isinstance(item, str) else json.dumps(item))
                ev = await reader.next_event()
                assert ev.event == "relay.news.item"
                got.append(json.loads(ev.data)["data"])
            stopped = await app.state.dispatcher.call_tool(principal, "relay__relay_stop", {"stream": "news"})
            assert not stopped.is_error
            await queue.put(None)
    first, second, third = got
    assert first["source_id"] == "1" and third["source_id"] == "3"
    assert "european central bank raises interest rates" in first["key_phrases"]
    assert "heavy snowfall closes mountain passes" in second["key_phrases"]
    assert third["data"] == ITEMS[2] and third["key_phrases"]
    assert first["published_at"] >= first["received_at"]


async def test_a_private_source_is_refused_without_the_allow_list(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / ".vsm", allow_anonymous=False)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    await create_tenant(ctx.db, "acme")
    key, _ = await create_api_key(ctx.db, "acme", ["events:read", "events:write", "tools:call"])
    app = create_app(settings, ctx, specs=[RELAY])
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        await eventually(lambda: app.state.runtime.readiness()["ok"], what="the relay upstream")
        principal = await app.state.authenticator.authenticate(f"Bearer {key}")
        auth = {"Authorization": f"Bearer {key}"}
        async with client.stream("GET", "/v1/events", params={"topics": "relay.x.*"}, headers=auth) as resp:
            reader = SseReader(resp)
            await app.state.dispatcher.call_tool(principal, "relay__relay_start",
                                                 {"stream": "x", "url": "http://127.0.0.1:9/events"})
            ev = await reader.next_event()
    assert ev.event == "relay.x.error" and "VSM_FETCH_ALLOW" in json.loads(ev.data)["data"]["error"]


async def test_summarize_goes_through_the_llm_cdn(tmp_path: Path) -> None:
    from tests.integration.llm_cdn.fake_openai import fake_openai

    with fake_openai() as (base, state):
        models = {"models": [{"name": "m", "target": "openai/m", "api_base": base, "api_key": "k"}]}
        settings = load_settings(home=tmp_path / ".vsm", allow_anonymous=False, fetch_allow=["127.0.0.1/32"],
                                 llm_models=json.dumps(models))
        await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
        ctx = ServerContext.create(settings)
        await create_tenant(ctx.db, "acme")
        key, _ = await create_api_key(ctx.db, "acme", ["events:read", "events:write", "tools:call", "llm"])
        auth = {"Authorization": f"Bearer {key}"}
        llm = UpstreamSpec(name="llm", kind="builtin", target="servers.llm_cdn.server:build", tags=["llm"])
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        app = create_app(settings, ctx, specs=[RELAY, llm])
        async with serve(source_app(queue)) as src, serve(app) as url, \
                httpx.AsyncClient(base_url=url, timeout=30) as client:
            await eventually(lambda: app.state.runtime.readiness()["ok"], what="the upstreams")
            principal = await app.state.authenticator.authenticate(auth["Authorization"])
            async with client.stream("GET", "/v1/events", params={"topics": "relay.s.*"}, headers=auth) as resp:
                reader = SseReader(resp)
                bad = await app.state.dispatcher.call_tool(
                    principal, "relay__relay_start", {"stream": "s", "url": f"{src}/events", "summarize": True})
                assert bad.is_error and "model" in str(bad.content)
                ok = await app.state.dispatcher.call_tool(principal, "relay__relay_start", {
                    "stream": "s", "url": f"{src}/events", "summarize": True, "model": "m"})
                assert not ok.is_error, ok.content
                await queue.put(json.dumps(ITEMS[0]))
                item = json.loads((await reader.next_event()).data)["data"]
                await app.state.dispatcher.call_tool(principal, "relay__relay_stop", {"stream": "s"})
                await queue.put(None)
    assert "summary_error" not in item, item.get("summary_error")
    assert item["summary"].startswith("m says: Summarize the text") and "European Central Bank" in item["summary"]
    assert item["key_phrases"] and state.calls["m"] == 1
