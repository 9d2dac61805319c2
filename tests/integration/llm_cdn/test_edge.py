"""The OpenAI-compatible edge: httpx against the ASGI app, and the real `openai` client over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette

from router.edge.openai import openai_routes
from servers.llm_cdn.server import EXTRAS_KEY
from tests.gate_helpers import gated
from tests.integration.llm_cdn.conftest import Clock, make_engine, make_settings
from tests.integration.llm_cdn.fake_openai import FakeState, serve_app
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.db import Database
from vsm_mcp.errors import Unauthorized
from vsm_mcp.keys import Authenticator
from vsm_mcp.tenants import create_api_key, create_tenant

pytestmark = pytest.mark.anyio
Fakes = tuple[str, FakeState, str, FakeState]
KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}


async def _auth(header: str | None) -> Principal:
    """Stands in for the router's Bearer authentication: two keys, two tenants."""
    tenant = KEYS.get((header or "").removeprefix("Bearer "))
    if tenant is None:
        raise Unauthorized("invalid or revoked API key")
    return Principal(tenant_id=tenant, scopes=frozenset({"llm"}))


@pytest.fixture
async def app(fakes: Fakes, tmp_path: Path) -> AsyncIterator[Starlette]:
    settings = make_settings(fakes)
    ctx = ServerContext.create(settings)
    ctx.extras[EXTRAS_KEY] = make_engine(settings, tmp_path, Clock())
    yield gated(Starlette(routes=openai_routes(ctx)), _auth)
    await ctx.extras[EXTRAS_KEY].aclose()
    await ctx.aclose()


def _client(app: Starlette, key: str = "key-a") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1",
                             headers={"authorization": f"Bearer {key}"})


def _chat(text: str, model: str = "main", **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0, **kw}


async def test_completion_miss_hit_and_tenant_isolation(app: Starlette, fakes: Fakes) -> None:
    async with _client(app) as a, _client(app, "key-b") as b:
        r1 = await a.post("/v1/chat/completions", json=_chat("hi"))
        r2 = await a.post("/v1/chat/completions", json=_chat("hi", user="u2"))
        r3 = await b.post("/v1/chat/completions", json=_chat("hi"))
    assert [r.headers["x-vsm-cache"] for r in (r1, r2, r3)] == ["miss", "hit", "miss"]
    assert r1.json()["choices"][0]["message"]["content"] == r2.json()["choices"][0]["message"]["content"]
    assert r3.json()["choices"][0]["message"]["content"].endswith("[call 2]")
    async with _client(app) as a:
        fresh = await a.post("/v1/chat/completions", json=_chat("hi"), headers={"cache-control": "no-cache"})
    assert fresh.headers["x-vsm-cache"] == "bypass"
    assert fresh.json()["choices"][0]["message"]["content"].endswith("[call 3]")


async def test_cached_stream_replays_as_a_stream(app: Starlette) -> None:
    async with _client(app) as c:
        await c.post("/v1/chat/completions", json=_chat("stream me please"))
        r = await c.post("/v1/chat/completions", json=_chat("stream me please", stream=True))
    assert r.headers["x-vsm-cache"] == "hit" and r.headers["content-type"].startswith("text/event-stream")
    frames = [f.removeprefix("data: ") for f in r.text.strip().split("\n\n")]
    assert frames[-1] == "[DONE]" and len(frames) >= 4
    text = "".join(json.loads(f)["choices"][0]["delta"].get("content", "") for f in frames[:-1])
    assert text == "main says: stream me please [call 1]"


async def test_errors_use_the_openai_shape(app: Starlette, fakes: Fakes) -> None:
    async with _client(app) as c, _client(app, "bad") as bad:
        unauth = await bad.post("/v1/chat/completions", json=_chat("x"))
        not_json = await c.post("/v1/chat/completions", content=b"{nope")
        no_messages = await c.post("/v1/chat/completions", json={"model": "main"})
        unknown = await c.post("/v1/chat/completions", json=_chat("x", model="gpt-unknown"))
        down = await c.post("/v1/chat/completions", json=_chat("x", model="down"))
    assert unauth.status_code == 401 and unauth.json()["error"]["type"] == "authentication_error"
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    assert no_messages.status_code == 400 and no_messages.json()["error"]["param"] == "messages"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert down.status_code == 503
    err = down.json()["error"]
    assert err["type"] == "service_unavailable" and "no LLM provider reachable" in err["message"]
    assert set(err) == {"message", "type", "param", "code"}


async def test_provider_down_503_while_cached_answers_still_serve(app: Starlette, fakes: Fakes) -> None:
    async with _client(app) as c:
        assert (await c.post("/v1/chat/completions", json=_chat("kept", model="solo"))).status_code == 200
        fakes[1].mode["solo"] = "fail"
        cached = await c.post("/v1/chat/completions", json=_chat("kept", model="solo", stream=True))
        fresh = await c.post("/v1/chat/completions", json=_chat("new", model="solo"))
        healthy = await c.post("/v1/chat/completions", json=_chat("other models still work"))
    assert cached.status_code == 200 and cached.headers["x-vsm-cache"] == "hit" and "[call 1]" in cached.text
    assert fresh.status_code == 503 and "no LLM provider reachable" in fresh.json()["error"]["message"]
    assert healthy.status_code == 200


async def test_embeddings_and_models(app: Starlette) -> None:
    async with _client(app) as c:
        e1 = await c.post("/v1/embeddings", json={"model": "emb", "input": "a"})
        e2 = await c.post("/v1/embeddings", json={"model": "emb", "input": "a"})
        models = await c.get("/v1/models")
    assert (e1.headers["x-vsm-cache"], e2.headers["x-vsm-cache"]) == ("miss", "hit")
    assert e1.json()["data"][0]["embedding"] == e2.json()["data"][0]["embedding"]
    assert {m["id"] for m in models.json()["data"]} >= {"main", "backup", "emb"}


async def test_edge_without_the_llm_server_says_so(fakes: Fakes) -> None:
    ctx = ServerContext.create(make_settings(fakes))
    app = gated(Starlette(routes=openai_routes(ctx)), _auth)
    async with _client(app) as c:
        r = await c.post("/v1/chat/completions", json=_chat("x"))
    await ctx.aclose()
    assert r.status_code == 503 and r.json()["error"]["code"] == "llm_cdn_not_loaded"


async def _make_key(settings: Any) -> str:
    db = Database(settings)
    await create_tenant(db, "acme")
    key, _ = await create_api_key(db, "acme", ["llm"])
    await db.aclose()
    return key


@pytest.fixture
def served_edge(fakes: Fakes, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The edge behind uvicorn on 127.0.0.1 with the default authentication (real API keys)."""
    settings = make_settings(fakes, home=tmp_path / ".vsm")
    migrate.upgrade(settings.migration_database_url)
    key = asyncio.run(_make_key(settings))
    ctx = ServerContext.create(settings)
    ctx.extras[EXTRAS_KEY] = make_engine(settings, tmp_path, Clock())
    authenticator = Authenticator(ctx.db, default_tenant="default", allow_anonymous=False)
    with serve_app(gated(Starlette(routes=openai_routes(ctx)), authenticator, settings)) as url:
        yield f"{url}/v1", key


def test_real_openai_client_gets_completions_and_streams(served_edge: tuple[str, str], fakes: Fakes) -> None:
    url, key = served_edge
    wrong = openai.OpenAI(base_url=url, api_key="vsm_not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}])
    client = openai.OpenAI(base_url=url, api_key=key, max_retries=0)
    done = client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hello there"}],
                                          temperature=0)
    assert done.choices[0].message.content == "main says: hello there [call 1]"
    stream = client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hello there"}],
                                            temperature=0, stream=True, stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        usage = chunk.usage or usage
    assert "".join(pieces) == "main says: hello there [call 1]" and usage is not None and usage.total_tokens == 15
    assert fakes[1].calls["main"] == 1
    live = client.chat.completions.create(model="main", messages=[{"role": "user", "content": "live one"}],
                                          temperature=0, stream=True)  # a miss: streamed as it arrives
    assert "".join(c.choices[0].delta.content or "" for c in live if c.choices).strip() == "main says: live one [call 2]"
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="down", messages=[{"role": "user", "content": "x"}], temperature=0)
    assert info.value.status_code == 503
    assert [m.id for m in client.models.list()][:2] == ["main", "backup"]


def _sse_text(raw: str) -> tuple[str, list[dict[str, Any]]]:
    frames = [f.removeprefix("data: ") for f in raw.strip().split("\n\n")]
    assert frames[-1] == "[DONE]", frames[-1]
    events = [json.loads(f) for f in frames[:-1]]
    return "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e["choices"]), events


async def test_a_miss_streams_live_and_is_then_cached(app: Starlette, fakes: Fakes) -> None:
    async with _client(app) as c:
        live = await c.post("/v1/chat/completions", json=_chat("live please", stream=True))
        again = await c.post("/v1/chat/completions", json=_chat("live please", stream=True))
        plain = await c.post("/v1/chat/completions", json=_chat("live please"))
        fakes[1].mode["main"] = "fail"
        fallback = await c.post("/v1/chat/completions", json=_chat("other", stream=True))
    assert (live.headers["x-vsm-cache"], again.headers["x-vsm-cache"], plain.headers["x-vsm-cache"]) == ("miss", "hit", "hit")
    text, _ = _sse_text(live.text)
    assert text.strip() == "main says: live please [call 1]"  # the fake streams word by word
    assert _sse_text(again.text)[0] == text
    assert plain.json()["choices"][0]["message"]["content"] == text
    assert fakes[1].calls["main"] == 3  # 1 live + 2 failed attempts for "other"
    assert fallback.headers["x-vsm-model"] == "backup" and _sse_text(fallback.text)[0].startswith("backup says")
