"""The edge inside the real router app (router/app.py): events and metrics from real dispatches,
readiness, the edge rate limit, and the Telegram webhook against a fake Bot API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from router.upstreams.manifest import UpstreamSpec
from tests.asgi_server import serve_asgi
from tests.integration.edge.conftest import Running, SseReader, router_app
from vsm_mcp.config import load_settings

pytestmark = pytest.mark.anyio
ECHO = UpstreamSpec(name="echo", kind="builtin", target="tests.integration.edge.echo_server:build")


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


async def metrics_after_echo_calls(r: Running, client: httpx.AsyncClient, n: int) -> str:
    """/metrics once ``n`` calls of echo__echo (the same arguments each time) have been counted."""
    principal = await r.principal()
    for _ in range(n):
        await r.app.state.dispatcher.call_tool(principal, "echo__echo", {"text": "hi"})
    for _ in range(200):  # observers run off the call path, in the recorder's batches
        text = (await client.get("/metrics")).text
        if sample(text, "vsm_tool_calls_total", server="echo", tool="echo", outcome="ok") == n:
            break
        await asyncio.sleep(0.05)
    assert sample(text, "vsm_tool_calls_total", server="echo", tool="echo", outcome="ok") == n
    return text


async def test_calls_move_metrics_and_publish_tool_events() -> None:
    settings = load_settings(allow_anonymous=False, tool_cache=True)
    async with router_app(settings, [ECHO]) as r, httpx.AsyncClient(base_url=r.url, timeout=30) as client:
        text = (await client.get("/metrics")).text
        assert sample(text, "vsm_tool_calls_total", server="echo", tool="echo", outcome="ok") == 0
        principal = await r.principal()
        dispatcher = r.app.state.dispatcher
        async with client.stream("GET", "/v1/events", params={"topics": "tool.*"}, headers=r.auth) as resp:
            reader = SseReader(resp)
            ok = await dispatcher.call_tool(principal, "echo__echo", {"text": "hi"})
            assert not ok.is_error
            bad = await dispatcher.call_tool(principal, "echo__fail", {"message": "nope"})
            assert bad.is_error
            got = {(await reader.next_event()).event for _ in range(2)}
            assert got == {"tool.called", "tool.failed"}
        text = (await client.get("/metrics")).text
        assert sample(text, "vsm_tool_calls_total", server="echo", tool="echo", outcome="ok") == 1
        assert sample(text, "vsm_tool_calls_total", server="echo", tool="fail", outcome="tool_error") == 1
        assert sample(text, "vsm_tool_call_duration_seconds_count", server="echo", tool="echo") == 1
        assert sample(text, "vsm_cache_requests_total", result="miss") == 1  # echo is cacheable: the cache missed
        assert sample(text, "vsm_upstream_up", upstream="echo") == 1
        assert sample(text, "vsm_upstream_breaker_state", upstream="echo") == 0
        assert sample(text, "vsm_sse_events_sent_total") >= 2
        assert sample(text, "vsm_db_pool_connections", state="size") >= 0


async def test_cache_metrics_count_only_what_a_cache_did() -> None:
    # Regression: /metrics reported a miss for every cacheable call even with no cache at all.
    async with router_app(load_settings(allow_anonymous=False, tool_cache=False), [ECHO]) as r, \
            httpx.AsyncClient(base_url=r.url, timeout=30) as client:
        text = await metrics_after_echo_calls(r, client, 2)
        assert sample(text, "vsm_cache_requests_total", result="miss") == 0


async def test_cache_metrics_count_hits_and_misses() -> None:
    # One app per test: the durable spine shuts the loop's default executor down with it.
    async with router_app(load_settings(allow_anonymous=False, tool_cache=True), [ECHO]) as r, \
            httpx.AsyncClient(base_url=r.url, timeout=30) as client:
        text = await metrics_after_echo_calls(r, client, 3)
        assert sample(text, "vsm_cache_requests_total", result="miss") == 1
        assert sample(text, "vsm_cache_requests_total", result="hit") == 2
        assert sample(text, "vsm_cache_entries", level="memory") == 1


async def test_readyz_reports_database_bus_and_upstreams() -> None:
    async with router_app(load_settings(allow_anonymous=False), [ECHO]) as r, httpx.AsyncClient(base_url=r.url) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["checks"]["bus"]["ok"] and body["checks"]["database"]["ok"]
        assert body["checks"]["upstreams"]["echo"]["state"] == "ready"
        r.app.state.runtime.upstreams["echo"].state = "unavailable"  # as the supervisor sets it on loss
        degraded = await client.get("/readyz")  # an optional upstream down: degraded, still serving
        assert degraded.status_code == 200 and degraded.json()["degraded"] is True
        assert "upstream echo: unavailable" in degraded.json()["reason"]


async def test_edge_rate_limit_per_client() -> None:
    settings = load_settings(allow_anonymous=False, edge_rate_per_s=0.5, edge_rate_burst=3)
    async with router_app(settings, [ECHO]) as r, httpx.AsyncClient(base_url=r.url) as client:
        # Without a key: refused, and the address's budget is spent by each attempt.
        codes = [(await client.get("/v1/tools")).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        limited = await client.get("/v1/tools")
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["type"] == "rate_limited"
        assert "address 127.0.0.1" in limited.json()["error"]["message"]
        # A principal has its own bucket.
        assert (await client.get("/v1/tools", headers=r.auth)).status_code == 200
        assert (await client.get("/metrics")).status_code == 200  # public, by name


@asynccontextmanager
async def fake_bot_api() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local server speaking the Bot API's sendMessage (records every call)."""
    sent: list[dict[str, Any]] = []

    async def send_message(request: Request) -> JSONResponse:
        assert request.path_params["token"] == "123:abc"
        body = await request.json()
        sent.append(body)
        return JSONResponse({"ok": True, "result": {"message_id": len(sent), "chat": {"id": body["chat_id"]}}})

    api = Starlette(routes=[Route("/bot{token}/sendMessage", send_message, methods=["POST"])])
    async with serve_asgi(api) as url:
        yield url, sent


def update(chat: int, text: str) -> dict[str, Any]:
    return {"update_id": 1, "message": {"message_id": 1, "chat": {"id": chat, "type": "private"}, "text": text}}


async def test_telegram_webhook() -> None:
    async with fake_bot_api() as (api_url, sent):
        settings = load_settings(
            allow_anonymous=False, telegram_secret="s3cret", telegram_bot_token="123:abc",
            telegram_api_base=api_url, telegram_chats="111=acme,222=acme", telegram_rate_per_min=6,
        )
        async with router_app(settings, [ECHO]) as r, httpx.AsyncClient(base_url=r.url, timeout=30) as client:
            hook = "/v1/telegram/webhook"
            good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
            assert (await client.post(hook, json=update(111, "/status"))).status_code == 401
            wrong = {"X-Telegram-Bot-Api-Secret-Token": "s3cres"}
            assert (await client.post(hook, json=update(111, "/status"), headers=wrong)).status_code == 401
            assert sent == []

            async def say(chat: int, text: str) -> str:
                n = len(sent)
                resp = await client.post(hook, json=update(chat, text), headers=good)
                assert resp.status_code == 200, resp.text
                assert len(sent) == n + 1 and sent[-1]["chat_id"] == chat
                return str(sent[-1]["text"])

            assert "echo: ready" in await say(111, "/status")
            assert "echo__echo" in await say(111, "/tools echo back")
            assert await say(111, '/call echo__echo {"text": "hello from telegram"}') == "hello from telegram"
            assert "not valid JSON" in await say(111, "/call echo__echo {text: hi}")
            assert "Unknown command /frobnicate" in await say(111, "/frobnicate")
            assert "/call <tool>" in await say(111, "/help")
            # chat 111 has now used its 6 commands (burst); the 7th is refused, chat 222 still works.
            flood = await client.post(hook, json=update(111, "/status"), headers=good)
            assert flood.status_code == 429 and int(flood.headers["retry-after"]) >= 1
            assert "echo: ready" in await say(222, "/status")
            assert "not linked" in await say(333, "/status")


async def test_events_refuse_a_rebound_host_on_loopback() -> None:
    async with router_app(load_settings(allow_anonymous=False), [ECHO]) as r, httpx.AsyncClient(base_url=r.url) as client:
        evil = {**r.auth, "Host": "evil.example"}
        assert (await client.get("/v1/events", headers=evil)).status_code == 403
        origin = {**r.auth, "Origin": "https://evil.example"}
        assert (await client.get("/v1/events", headers=origin)).status_code == 403
