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

from router.upstreams.manifest import UpstreamSpec
from tests.asgi_server import serve_asgi
from tests.integration.edge.conftest import SseReader, router_app
from vsm_mcp.config import load_settings

pytestmark = pytest.mark.anyio
RELAY = UpstreamSpec(name="relay", kind="builtin", target="servers.relay.server:build")
SCOPES = ("events:read", "events:write", "tools:call")
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
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    async with serve_asgi(source_app(queue)) as src, router_app(settings, [RELAY], SCOPES) as r, \
            httpx.AsyncClient(base_url=r.url, timeout=30) as client:
        app, principal = r.app, await r.principal()
        async with client.stream("GET", "/v1/events", params={"topics": "relay.news.*"}, headers=r.auth) as resp:
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


async def test_ws_source_items_reach_v1_events(tmp_path: Path) -> None:
    from tests.integration.relay.test_source import Source, ws_source

    settings = load_settings(home=tmp_path / ".vsm", allow_anonymous=False, fetch_allow=["127.0.0.1/32"])
    src = Source()
    async with ws_source(src) as port, router_app(settings, [RELAY], SCOPES) as r, \
            httpx.AsyncClient(base_url=r.url, timeout=30) as client:
        app, principal = r.app, await r.principal()
        async with client.stream("GET", "/v1/events", params={"topics": "relay.live.*"}, headers=r.auth) as resp:
            reader = SseReader(resp)
            started = await app.state.dispatcher.call_tool(
                principal, "relay__relay_start", {"stream": "live", "url": f"ws://127.0.0.1:{port}/feed"})
            assert not started.is_error, started.content
            assert started.structured_content["address"] == "127.0.0.1"
            src.queue.put_nowait(json.dumps(ITEMS[1]))
            item = await reader.next_event()
            src.queue.put_nowait(None)  # the source drops the connection: reported, then reconnected
            error = await reader.next_event()
            src.queue.put_nowait(ITEMS[2])  # type: ignore[arg-type]
            again = await reader.next_event()
            listed = await app.state.dispatcher.call_tool(principal, "relay__relay_list", {})
            await app.state.dispatcher.call_tool(principal, "relay__relay_stop", {"stream": "live"})
    assert item.event == "relay.live.item"
    first = json.loads(item.data)["data"]
    assert first["source_id"] == "1" and "heavy snowfall closes mountain passes" in first["key_phrases"]
    assert error.event == "relay.live.error" and "closed the connection" in json.loads(error.data)["data"]["error"]
    assert again.event == "relay.live.item" and json.loads(again.data)["data"]["data"] == ITEMS[2]
    relay = listed.structured_content["relays"][0]
    assert relay["items"] == 2 and relay["running"] and "reconnecting" in relay["errors"][0]


@pytest.mark.parametrize(("url", "problem"), [
    ("ws://127.0.0.1:9/events", "127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
    ("wss://10.1.2.3/feed", "10.1.2.3 is a private address"),
    ("http://[::ffff:127.0.0.1]:8080/events", "is a loopback address"),
])
async def test_a_private_source_is_refused_without_the_allow_list(tmp_path: Path, url: str, problem: str) -> None:
    settings = load_settings(home=tmp_path / ".vsm", allow_anonymous=False, fetch_allow=["127.0.0.1:8765"])
    async with router_app(settings, [RELAY], SCOPES) as r:
        app, principal = r.app, await r.principal()
        refused = await app.state.dispatcher.call_tool(principal, "relay__relay_start", {"stream": "x", "url": url})
        listed = await app.state.dispatcher.call_tool(principal, "relay__relay_list", {})
    assert refused.is_error
    message = refused.content[0].text
    assert "forbidden: refused to fetch" in message and problem in message and "VSM_FETCH_ALLOW" in message
    assert "\n" not in message  # one line
    assert listed.structured_content["relays"] == []


async def test_summarize_goes_through_the_llm_cdn(tmp_path: Path) -> None:
    from tests.integration.llm_cdn.fake_openai import fake_openai

    with fake_openai() as (base, state):
        models = {"models": [{"name": "m", "target": "openai/m", "api_base": base, "api_key": "k"}]}
        settings = load_settings(home=tmp_path / ".vsm", allow_anonymous=False, fetch_allow=["127.0.0.1/32"],
                                 llm_models=json.dumps(models))
        llm = UpstreamSpec(name="llm", kind="builtin", target="servers.llm_cdn.server:build", tags=["llm"])
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        async with serve_asgi(source_app(queue)) as src, router_app(settings, [RELAY, llm], (*SCOPES, "llm")) as r, \
                httpx.AsyncClient(base_url=r.url, timeout=30) as client:
            app, principal = r.app, await r.principal()
            async with client.stream("GET", "/v1/events", params={"topics": "relay.s.*"}, headers=r.auth) as resp:
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
