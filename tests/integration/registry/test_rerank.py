"""Tool search's optional model rerank (router/rerank.py) inside a running router: the llm server
of manifests/default.yaml mounted in-process, its models served by the local fake of the OpenAI
API over real HTTP; the fake answers with a ranking of the tools listed in the prompt."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp import Client

from router.local import running_router
from router.meta_tools import ToolSearch, result_json
from router.registry.index import SearchResult
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from servers.llm_cdn.engine import Engine
from tests.integration.llm_cdn.fake_openai import FakeState, fake_openai
from tests.integration.router.conftest import router_settings, serve_router
from vsm_mcp.auth import Principal
from vsm_mcp.config import Settings

# litellm (imported on a thread when the llm server starts) makes pydantic warn about its TypedDicts'
# ReadOnly items, singular or plural; under filterwarnings=error that would break its import.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings(r"ignore:Items? .* (is|are) using the `ReadOnly` qualifier")]
QUERY = "add two integers sum"  # dyn__add first, a match (test_router_search.py)
NO_TOOL = "order a pepperoni pizza for tonight"  # a no_match there
BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "tool_rerank.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def listed(body: dict[str, Any]) -> list[str]:
    """The tool names of the rerank prompt, in its order (what the model is shown)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return re.findall(r"^- ([A-Za-z0-9_-]+)", user, flags=re.M)


def reverse(body: dict[str, Any]) -> str:
    return "\n".join(reversed(listed(body)))


def with_policy() -> list[dict[str, Any]]:
    return [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] == "policy"]


def entries() -> list[dict[str, Any]]:
    llm = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] == "llm"]
    return [*llm, {"name": "dyn", "kind": "builtin", "target": "tests.integration.registry.dynamic_server:build"}]


def models(base: str) -> str:
    return json.dumps({"models": [{"name": n, "target": f"openai/{n}", "api_base": base, "api_key": "k"}
                                  for n in ("rank", "broken", "slow")]})


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[str, FakeState]]:
    with fake_openai() as up:
        yield up


@pytest.fixture
def fake(provider: tuple[str, FakeState]) -> tuple[str, FakeState]:
    base, st = provider
    st.mode.clear()
    st.calls.clear()
    st.latency_s = 0.0
    st.answer = reverse
    return base, st


def settings_for(base: str, **extra: Any) -> Settings:
    return router_settings(embedder="hash", llm_models=models(base), llm_retries=0, **extra)


@pytest.fixture
async def router(fake: tuple[str, FakeState]) -> AsyncIterator[tuple[ToolSearch, Principal]]:
    settings = await asyncio.to_thread(settings_for, fake[0], tool_search_rerank_model="rank",
                                       tool_search_rerank_candidates=5, tool_search_rerank_timeout_s=10)
    async with running_router(settings, parse_manifest({"upstreams": entries()}, "test.yaml")) as (runtime, principal):
        yield runtime.tool_search, principal


async def first_stage(search: ToolSearch, principal: Principal, query: str, limit: int) -> SearchResult:
    saved, search.reranker = search.reranker, None
    try:
        return await search.find(principal, query, limit=limit)
    finally:
        search.reranker = saved


def names(result: SearchResult) -> list[str]:
    return [h.record.public_name for h in result.hits]


async def test_off_by_default_no_model_call(fake: tuple[str, FakeState]) -> None:
    assert Settings().tool_search_rerank_model == ""
    settings = await asyncio.to_thread(settings_for, fake[0])
    async with running_router(settings, parse_manifest({"upstreams": entries()}, "test.yaml")) as (runtime, principal):
        assert runtime.tool_search.reranker is None
        found = await runtime.tool_search.find(principal, QUERY, limit=3)
    assert not found.reranked and found.rerank is None and "rerank" not in result_json(found)
    assert result_json(found)["reranked"] is False and fake[1].total == 0


async def test_the_model_client_is_loaded_at_start_when_rerank_is_set_and_only_then(
    fake: tuple[str, FakeState], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first rerank of a process used to spend its 2 s budget importing litellm (~2.8 s) in
    the llm server and time out; the router now has it loaded by the time start-up returns."""
    warmed: list[str] = []
    warm_up = Engine.warm_up

    def counted(engine: Engine) -> None:
        warm_up(engine)
        warmed.append("litellm" if "litellm" in sys.modules else "nothing")

    monkeypatch.setattr(Engine, "warm_up", counted)
    on = await asyncio.to_thread(settings_for, fake[0], tool_search_rerank_model="rank")
    async with running_router(on, parse_manifest({"upstreams": entries()}, "test.yaml")) as (runtime, _):
        reranker = runtime.tool_search.reranker
        assert reranker is not None and reranker.warmed and warmed == ["litellm"]  # done before start returned
    off = await asyncio.to_thread(settings_for, fake[0])  # the same models, no rerank
    async with running_router(off, parse_manifest({"upstreams": entries()}, "test.yaml")) as (runtime, _):
        assert runtime.tool_search.reranker is None
    assert warmed == ["litellm"]  # not warmed again by the router without a rerank model


async def test_the_model_order_wins_and_a_repeat_is_served_by_the_llm_cache(
    router: tuple[ToolSearch, Principal], fake: tuple[str, FakeState],
) -> None:
    search, principal = router
    base = await first_stage(search, principal, QUERY, 5)
    assert not base.no_match and len(base.hits) == 5
    found = await search.find(principal, QUERY, limit=3)
    assert found.reranked and found.rerank is not None
    assert (found.rerank.status, found.rerank.cache) == ("reranked", "miss")
    assert names(found) == names(base)[::-1][:3]  # the model saw the first stage's top 5, reversed them
    scores = {h.record.public_name: h.score for h in base.hits}
    assert all(h.score == scores[h.record.public_name] for h in found.hits)  # calibrated scores kept
    assert found.no_match is base.no_match
    again = await search.find(principal, QUERY, limit=3)
    assert again.rerank is not None and again.rerank.cache == "hit" and names(again) == names(found)
    assert fake[1].calls["rank"] == 1  # the repeat cost no provider call
    body = result_json(again)
    assert body["reranked"] is True and body["rerank"] == {"status": "reranked", "cache": "hit"}


async def test_bad_answers_keep_or_complete_the_first_stage_order(
    router: tuple[ToolSearch, Principal], fake: tuple[str, FakeState], caplog: pytest.LogCaptureFixture,
) -> None:
    search, principal = router
    Case = tuple[str, Any, str, Any]
    cases: list[Case] = [
        # prose naming no candidate: unusable, first-stage order
        ("add two integers sum please", lambda b: "I would pick the adder!", "unparsed", lambda f: f),
        # unknown names ignored, numbering and backticks tolerated, missing ones appended in order
        ("add two integers sum now", lambda b: f"1. `nope__x`\n2. {listed(b)[3]}\n3. {listed(b)[3]}",
         "reranked", lambda f: [f[3], *f[:3], *f[4:]]),
        # a bare tool name counts when only one candidate has it
        ("add two integers sum today", lambda b: listed(b)[2].split("__", 1)[1], "reranked",
         lambda f: [f[2], *f[:2], *f[3:]]),
        # NONE: the model's opinion is reported, the calibrated verdict and order are kept
        ("add two integers sum again", lambda b: "NONE", "none", lambda f: f),
    ]
    for query, answer, status, expected in cases:
        fake[1].answer = answer
        base = await first_stage(search, principal, query, 5)
        found = await search.find(principal, query, limit=5)
        assert found.rerank is not None and found.rerank.status == status, query
        assert names(found) == expected(names(base)) and found.reranked is (status == "reranked"), query
        assert found.no_match is base.no_match
    assert any("named none of the candidates" in r.getMessage() for r in caplog.records)


async def test_a_broken_or_slow_model_falls_back_to_the_first_stage(
    router: tuple[ToolSearch, Principal], fake: tuple[str, FakeState], caplog: pytest.LogCaptureFixture,
) -> None:
    search, principal = router
    reranker = search.reranker
    assert reranker is not None
    base = names(await first_stage(search, principal, QUERY, 3))
    fake[1].mode["broken"] = "fail"
    reranker.model = "broken"
    caplog.set_level(logging.WARNING, logger="router.rerank")
    failed = await search.find(principal, QUERY, limit=3)
    assert failed.rerank is not None and failed.rerank.status == "failed"
    assert names(failed) == base and not failed.reranked
    # slower than the budget: the search answers at the budget in first-stage order
    fake[1].latency_s = 1.0
    reranker.model, reranker.timeout_s = "slow", 0.2
    slow = await search.find(principal, QUERY, limit=3)
    assert slow.rerank is not None and slow.rerank.status == "timeout" and names(slow) == base
    assert fake[1].calls["slow"] == 1  # it was asked, and not waited for
    messages = [r.getMessage() for r in caplog.records if r.name == "router.rerank"]
    assert len(messages) == 2 and "boom" in messages[0] and "within 0.20s" in messages[1]
    # an unknown model is an error of the llm tool: same fallback
    reranker.model, reranker.timeout_s = "no-such-model", 10
    unknown = await search.find(principal, QUERY, limit=3)
    assert unknown.rerank is not None and unknown.rerank.status == "failed" and names(unknown) == base


async def test_no_match_and_callers_without_llm_call_are_never_sent(
    router: tuple[ToolSearch, Principal], fake: tuple[str, FakeState],
) -> None:
    search, principal = router
    pizza = await search.find(principal, NO_TOOL, limit=3)
    assert pizza.no_match and pizza.rerank is not None and pizza.rerank.status == "skipped"
    assert names(pizza) == names(await first_stage(search, principal, NO_TOOL, 3))
    reader = Principal(principal.tenant_id, frozenset({"tools:call", "tools:read"}))
    denied = await search.find(reader, QUERY, limit=3)
    assert denied.rerank is not None and denied.rerank.status == "denied" and not denied.reranked
    assert fake[1].total == 0
    assert (await search.find(principal, QUERY, limit=3)).reranked  # the same query, for a caller with llm:call


async def test_a_reworded_query_is_never_served_another_querys_ranking(fake: tuple[str, FakeState]) -> None:
    """With the LLM semantic cache on, two prompts that differ only in the query's case would be
    one semantic entry; the rerank's seed keeps it out of that cache: each query asks the model."""
    settings = await asyncio.to_thread(settings_for, fake[0], tool_search_rerank_model="rank",
                                       tool_search_rerank_timeout_s=30, llm_semantic_cache=True)
    async with running_router(settings, parse_manifest({"upstreams": entries()}, "test.yaml")) as (runtime, principal):
        search = runtime.tool_search
        one = await search.find(principal, QUERY, limit=3)
        other = await search.find(principal, QUERY.upper(), limit=3)
        same = [names(await first_stage(search, principal, q, 10)) for q in (QUERY, QUERY.upper())]
        assert same[0] == same[1]  # the same candidates: the prompts differ only in the query's case
    assert one.rerank is not None and other.rerank is not None, (one, other)
    assert (one.rerank.cache, other.rerank.cache) == ("miss", "miss"), (one.rerank, other.rerank)
    assert fake[1].calls["rank"] == 2


async def test_find_tools_and_rest_search_are_reranked_through_the_router(fake: tuple[str, FakeState]) -> None:
    async with serve_router(entries(), embedder="hash", llm_models=models(fake[0]), llm_retries=0,
                            tool_search_rerank_model="rank", tool_search_rerank_candidates=4) as (url, _app):
        async with Client(f"{url}/mcp?expose=search", mode="legacy") as client:
            res = await client.call_tool("find_tools", {"query": QUERY, "limit": 2})
        assert not res.is_error and res.structured_content is not None
        mcp_body = res.structured_content
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            rest = (await http.get("/v1/tools", params={"q": QUERY, "limit": 2})).json()
    assert mcp_body["reranked"] is True and mcp_body["rerank"] == {"status": "reranked", "cache": "miss"}
    assert rest["reranked"] is True and rest["rerank"] == {"status": "reranked", "cache": "hit"}
    assert [t["name"] for t in rest["tools"]] == [t["name"] for t in mcp_body["tools"]]
    assert fake[1].calls["rank"] == 1  # one tenant, one prompt: the second front door hit the cache


async def test_benchmark_smoke() -> None:
    """benchmarks/tool_rerank.py end to end with tiny sizes; its cache figures, not its timings."""
    spec = importlib.util.spec_from_file_location("tool_rerank_bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(queries=4, repeats=1, latencies_ms="0", candidates=5, budget_ms=100.0,
                              over_latency_ms=300.0, over_queries=1, embedder="hash")
    out = await bench.run(args)
    (p,) = out["phases"]
    assert p["sent"] >= 1 and p["provider_calls_first"] == p["sent"] and p["provider_calls_repeats"] == 0
    assert p["hit_rate"] == 1.0
    assert out["over_budget"]["statuses"] == {"timeout": 1}  # slower than the budget: not waited for


async def test_a_tenant_policy_that_denies_the_model_is_a_quiet_denied(
    fake: tuple[str, FakeState], caplog: pytest.LogCaptureFixture,
) -> None:
    """A policy denial is the tenant's decision (audited by the dispatcher), not a fault to log
    on every search; the search keeps its first-stage order."""
    settings = await asyncio.to_thread(settings_for, fake[0], tool_search_rerank_model="rank",
                                       tool_search_rerank_candidates=5, tool_search_rerank_timeout_s=10)
    specs = parse_manifest({"upstreams": [*entries(), *with_policy()]}, "test.yaml")
    async with running_router(settings, specs) as (runtime, principal):
        rule = 'default allow\ndeny no_llm "no models for search" when tool.name == "llm_complete"\n'
        put = await runtime.dispatcher.call_tool(principal, "policy__policy_put", {"name": "nollm", "source": rule})
        assert not put.is_error
        search = runtime.tool_search
        base = await first_stage(search, principal, QUERY, 3)
        with caplog.at_level(logging.WARNING, logger="router.rerank"):
            found = await search.find(principal, QUERY, limit=3)
    assert found.rerank is not None and found.rerank.status == "denied" and not found.reranked
    assert names(found) == names(base) and fake[1].total == 0
    assert not [r for r in caplog.records if r.name == "router.rerank"]
