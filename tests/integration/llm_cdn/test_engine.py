"""The engine against fake providers over real HTTP (litellm's own client path)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from servers.llm_cdn.engine import Engine
from tests.integration.llm_cdn.conftest import Clock, make_engine, make_settings
from tests.integration.llm_cdn.fake_openai import FakeState
from vsm_mcp.bus import MemoryBus
from vsm_mcp.errors import InvalidArguments, NotFound, UpstreamUnavailable

pytestmark = pytest.mark.anyio
Fakes = tuple[str, FakeState, str, FakeState]


def chat(text: str, model: str = "main", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0, **params}


def content(body: dict[str, Any]) -> str:
    return str(body["choices"][0]["message"]["content"])


async def test_miss_then_hit_with_one_upstream_call(engine: Engine, fakes: Fakes) -> None:
    first = await engine.complete("t1", chat("hello"))
    again = await engine.complete("t1", {**chat("hello"), "user": "someone-else", "stream": True})
    assert (first.cache, again.cache) == ("miss", "hit")
    assert content(again.body) == content(first.body) == "main says: hello [call 1]"
    assert fakes[1].calls["main"] == 1
    stats = engine.snapshot()
    assert stats["hits"]["exact"] == 1 and stats["misses"] == 1 and stats["tokens_saved"] == 15


async def test_non_deterministic_requests_bypass_the_cache(engine: Engine, fakes: Fakes) -> None:
    a = await engine.complete("t1", chat("hi", temperature=0.7))
    b = await engine.complete("t1", chat("hi", temperature=0.7))
    assert (a.cache, b.cache) == ("bypass", "bypass") and content(a.body) != content(b.body)
    seeded = [await engine.complete("t1", chat("hi", temperature=0.7, seed=3)) for _ in range(2)]
    assert [o.cache for o in seeded] == ["miss", "hit"]


async def test_ttl_per_model_expires(engine: Engine, fakes: Fakes, clock: Clock) -> None:
    await engine.complete("t1", chat("x", model="solo"))  # solo: ttl_s 10
    clock.now += 9
    assert (await engine.complete("t1", chat("x", model="solo"))).cache == "hit"
    clock.now += 2
    again = await engine.complete("t1", chat("x", model="solo"))
    assert again.cache == "miss" and content(again.body).endswith("[call 2]")


async def test_one_tenant_never_gets_anothers_answer(engine: Engine, fakes: Fakes) -> None:
    a = await engine.complete("tenant-a", chat("secret"))
    b = await engine.complete("tenant-b", chat("secret"))
    assert (a.cache, b.cache) == ("miss", "miss")
    assert content(a.body).endswith("[call 1]") and content(b.body).endswith("[call 2]")


async def test_hundred_concurrent_identical_requests_make_one_upstream_call(engine: Engine, fakes: Fakes) -> None:
    fakes[1].latency_s = 0.3
    outs = await asyncio.gather(*(engine.complete("t1", chat("same")) for _ in range(100)))
    assert fakes[1].calls["main"] == 1
    assert {content(o.body) for o in outs} == {"main says: same [call 1]"}
    assert sorted({o.cache for o in outs}) == ["miss", "shared"]


async def test_fallback_to_second_model_when_first_fails(engine: Engine, fakes: Fakes) -> None:
    fakes[1].mode["main"] = "fail"
    out = await engine.complete("t1", chat("q"))
    assert out.model == "backup" and content(out.body).startswith("backup says")
    assert fakes[1].calls["main"] == 2  # 500 is retried once (llm_retries=1), then fail over
    # a fallback answer is not stored: once main is back, callers get main's answer
    fakes[1].mode["main"] = "ok"
    assert (await engine.complete("t1", chat("q"))).model == "main"


async def test_429_is_retried_with_backoff(engine: Engine, fakes: Fakes) -> None:
    fakes[1].mode["main"] = "429once"
    out = await engine.complete("t1", chat("rl"))
    assert out.model == "main" and fakes[1].calls["main"] == 2 and fakes[3].calls["backup"] == 0


async def test_client_errors_are_not_retried(engine: Engine) -> None:
    with pytest.raises(NotFound, match="not configured"):
        await engine.complete("t1", chat("x", model="nope"))
    with pytest.raises(InvalidArguments, match="messages"):
        await engine.complete("t1", {"model": "main", "messages": []})


async def test_breaker_opens_and_recovers(engine: Engine, fakes: Fakes, clock: Clock) -> None:
    fakes[1].mode["main"] = "fail"
    for i in range(2):  # threshold 2: two failed requests open main's provider circuit
        assert (await engine.complete("t1", chat(f"b{i}"))).model == "backup"
    calls = fakes[1].calls["main"]
    assert engine.snapshot()["breakers"][fakes[0]] == "open"
    assert (await engine.complete("t1", chat("b-open"))).model == "backup"
    assert fakes[1].calls["main"] == calls  # open circuit: not even tried
    fakes[1].mode["main"] = "ok"
    clock.now += 31  # past llm_breaker_reset_s: one trial call goes through and closes it
    assert (await engine.complete("t1", chat("b-again"))).model == "main"
    assert engine.snapshot()["breakers"][fakes[0]] == "closed"


async def test_stalled_provider_times_out_and_fails_over(fakes: Fakes, tmp_path: Path, clock: Clock) -> None:
    eng = make_engine(make_settings(fakes, llm_timeout_s=0.5), tmp_path, clock)
    fakes[1].mode["main"] = "stall"
    out = await eng.complete("t1", chat("slow"))
    assert out.model == "backup" and fakes[1].calls["main"] == 1  # timeouts are not retried
    await eng.aclose()


async def test_provider_down_503_but_cached_answers_still_serve(engine: Engine, fakes: Fakes) -> None:
    await engine.complete("t1", chat("keep", model="solo"))
    fakes[1].mode["solo"] = "fail"
    assert (await engine.complete("t1", chat("keep", model="solo"))).cache == "hit"
    with pytest.raises(UpstreamUnavailable, match="no LLM provider reachable for model 'solo'"):
        await engine.complete("t1", chat("new", model="solo"))
    with pytest.raises(UpstreamUnavailable, match="down"):
        await engine.complete("t1", chat("x", model="down"))  # nothing listens there


async def test_embeddings_cached_and_events_published(fakes: Fakes, tmp_path: Path, clock: Clock) -> None:
    bus = MemoryBus()
    sub = await bus.subscribe(["llm.cache.#"])
    eng = make_engine(make_settings(fakes), tmp_path, clock, bus)
    req = {"model": "emb", "input": ["a", "b"]}
    outs = [await eng.embed("t1", req) for _ in range(2)]
    assert [o.cache for o in outs] == ["miss", "hit"] and len(outs[1].body["data"]) == 2
    assert fakes[1].calls["emb"] == 1
    assert await eng.purge("t1", "emb") == 1
    await eng.aclose()
    events = aiter(sub)
    topics = [(await asyncio.wait_for(anext(events), 10)).topic for _ in range(4)]
    await sub.aclose()
    assert sorted(topics) == ["llm.cache.hit", "llm.cache.miss", "llm.cache.purge", "llm.cache.store"]


async def test_semantic_cache_reuses_rewordings_but_never_with_tools_or_seed(
    fakes: Fakes, tmp_path: Path, clock: Clock
) -> None:
    from servers.llm_cdn.semantic import SemanticIndex
    from vsm_mcp.embeddings import make_embedder

    settings = make_settings(fakes, llm_semantic_cache=True)
    eng = make_engine(settings, tmp_path, clock)
    eng.semantic = SemanticIndex(make_embedder("hash"), settings.llm_semantic_threshold)
    sys_msg = {"role": "system", "content": "be brief"}

    def req(text: str, **kw: Any) -> dict[str, Any]:
        return {"model": "main", "messages": [sys_msg, {"role": "user", "content": text}], "temperature": 0, **kw}

    first = await eng.complete("t1", req("What's the capital of France?"))
    reworded = await eng.complete("t1", req("what is the capital of france"))
    assert (first.cache, reworded.cache) == ("miss", "semantic") and reworded.body == first.body
    assert (await eng.complete("t2", req("what is the capital of france"))).cache == "miss"  # per tenant
    assert (await eng.complete("t1", req("what is the capital of france", max_tokens=5))).cache == "miss"  # params
    other = await eng.complete("t1", req("Who wrote Hamlet?"))
    assert other.cache == "miss"
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    await eng.complete("t1", req("What's the capital of Spain?", tools=[tool]))
    assert (await eng.complete("t1", req("what is the capital of spain", tools=[tool]))).cache == "miss"
    await eng.complete("t1", req("What's the capital of Italy?", seed=1))
    assert (await eng.complete("t1", req("what is the capital of italy", seed=1))).cache == "miss"
    assert eng.snapshot()["hits"]["semantic"] == 1
    await eng.aclose()


async def test_concurrent_identical_streams_make_one_upstream_call(engine: Engine, fakes: Fakes) -> None:
    fakes[1].latency_s = 0.3

    async def one() -> tuple[str, str]:
        out = await engine.stream("t1", chat("stream together"))
        if out.body is not None:
            return out.cache, content(out.body)
        assert out.chunks is not None
        text = "".join([(c["choices"][0]["delta"].get("content") or "") async for c in out.chunks if c["choices"]])
        return out.cache, text

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert fakes[1].calls["main"] == 1
    assert sorted({k for k, _ in results}) == ["miss", "shared"]
    assert len({t.strip() for _, t in results}) == 1
    assert (await engine.complete("t1", chat("stream together"))).cache == "hit"
