"""Tool search with the optional model rerank (router/rerank.py): latency it adds and the LLM
cache on repeated queries, first stage alone vs with rerank, side by side in one run.

Everything in-process on 127.0.0.1: the router (``running_router``, the default manifest's
built-in servers, the configured embedder) with ``VSM_TOOL_SEARCH_RERANK_MODEL`` set, its llm
server pointed at the local fake of the OpenAI API (tests/integration/llm_cdn/fake_openai.py,
real HTTP through litellm), which answers with the listed candidates reversed after
``--latencies-ms`` of artificial latency. Each search goes through ``ToolSearch.find`` — the
function find_tools, ``GET /v1/tools?q=`` and ``vsm-mcp tools search`` call — as the local
principal; the rerank is a routed ``llm__llm_complete`` call (grants, policy, audit).

Per model latency L (a model name per L, so each phase starts with a cold LLM cache), over the
queries the model is asked about (``sent``; a no-match query is never sent):

* ``first_ms`` — the search without rerank (query embeddings already cached; the same for both);
* ``miss_ms`` — the first search of each query with rerank: a provider call (``LLM miss``);
* ``hit_ms`` — the same queries again: the LLM-CDN's exact cache answers (temperature 0, seed 0,
  identical prompt); ``hit_rate`` = repeated searches answered by the cache (``first_searches``
  counts the first pass's statuses),
  ``provider_calls`` = calls the fake saw (first pass / repeats; one per query sent if the cache works);
* ``added_*`` — p50 with rerank minus p50 without, and the ratio of the two.

And one over-budget phase: a model slower than ``VSM_TOOL_SEARCH_RERANK_TIMEOUT_S`` (``--budget-ms``)
— the search answers at the budget, in first-stage order.

The rerank's *quality* is not measured: it needs a real model, and none runs here. The fake's
ranking (reversed) is arbitrary; this script measures cost and cache behaviour only.

    python benchmarks/tool_rerank.py [--queries 20] [--repeats 5] [--latencies-ms 0,200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from router.local import running_router  # noqa: E402
from router.meta_tools import ToolSearch  # noqa: E402
from tests.integration.llm_cdn.fake_openai import FakeState, fake_openai  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.auth import Principal  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402

# Tasks an agent asks of the default aggregate (built-in servers); none is tuned to a result here.
QUERIES = [
    "remember a fact about the user", "ask a language model a question", "block deletes outside business hours",
    "store a file in a bucket", "list the files in a bucket", "delete an object from storage",
    "search my documents for a phrase", "create a plan from a goal", "show the steps of a plan",
    "publish an event on the bus", "subscribe to events about orders", "purge the llm cache",
    "embed a sentence into a vector", "add a policy rule for a tenant", "list the upstream servers",
    "fetch a web page", "summarize a live stream of messages", "what does the cache hold",
    "create a content container", "ingest documents into a collection", "transcribe an audio file",
    "query beliefs about a user", "cancel a running plan", "get tool cache statistics",
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 3)


def listed_reversed(body: dict[str, Any]) -> str:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return "\n".join(reversed(re.findall(r"^- ([A-Za-z0-9_-]+)", user, flags=re.M)))


async def timed(search: ToolSearch, principal: Principal, query: str) -> tuple[float, Any]:
    t0 = time.perf_counter()
    found = await search.find(principal, query, limit=5)
    return (time.perf_counter() - t0) * 1000, found


async def phase(search: ToolSearch, principal: Principal, fake: FakeState, model: str, latency_ms: float,
                queries: list[str], repeats: int) -> dict[str, Any]:
    """First stage vs rerank (miss, then hits) for ``model`` answering after ``latency_ms``."""
    reranker = search.reranker
    assert reranker is not None
    fake.latency_s = latency_ms / 1000
    first_by: dict[str, list[float]] = {q: [] for q in queries}
    saved, search.reranker = reranker, None
    for _ in range(repeats):
        for q in queries:
            first_by[q].append((await timed(search, principal, q))[0])
    search.reranker = saved
    reranker.model = model
    calls0 = fake.calls[model]
    miss: list[float] = []
    sent: set[str] = set()  # queries the model was asked about (a no-match query is skipped)
    statuses: dict[str, int] = {}
    for q in queries:
        ms, found = await timed(search, principal, q)
        key = f"{found.rerank.status}/{found.rerank.cache}" if found.rerank else "off"
        statuses[key] = statuses.get(key, 0) + 1
        if found.rerank is not None and found.rerank.cache is not None:
            sent.add(q)
            miss.append(ms)
    calls_miss = fake.calls[model] - calls0
    hit: list[float] = []
    hits = 0
    for _ in range(repeats):
        for q in queries:
            ms, found = await timed(search, principal, q)
            if q in sent:
                hit.append(ms)
                hits += bool(found.rerank and found.rerank.cache == "hit")
    first = [ms for q in sent for ms in first_by[q]]
    if not sent:
        raise SystemExit("no query was sent to the model (all no_match?): nothing to measure")
    p50 = {k: statistics.median(v) for k, v in (("first", first), ("miss", miss), ("hit", hit))}
    return {
        "model_latency_ms": latency_ms, "queries": len(queries), "sent": len(sent), "repeats": repeats,
        "sent_queries": [q for q in queries if q in sent],
        "first_p50_ms": pct(first, 50), "first_p95_ms": pct(first, 95),
        "miss_p50_ms": pct(miss, 50), "miss_p95_ms": pct(miss, 95),
        "hit_p50_ms": pct(hit, 50), "hit_p95_ms": pct(hit, 95),
        "added_miss_p50_ms": round(p50["miss"] - p50["first"], 3),
        "added_hit_p50_ms": round(p50["hit"] - p50["first"], 3),
        "miss_ratio": round(p50["miss"] / p50["first"], 2), "hit_ratio": round(p50["hit"] / p50["first"], 2),
        "first_searches": statuses, "provider_calls_first": calls_miss,
        "provider_calls_repeats": fake.calls[model] - calls0 - calls_miss,
        "hit_rate": round(hits / len(hit), 3),
    }


async def over_budget(search: ToolSearch, principal: Principal, fake: FakeState, queries: list[str],
                      latency_ms: float, budget_ms: float) -> dict[str, Any]:
    """A model slower than the budget: time of each search, then whether a repeat hits the cache."""
    reranker = search.reranker
    assert reranker is not None
    fake.latency_s = latency_ms / 1000
    reranker.model, saved_budget = "over", reranker.timeout_s
    reranker.timeout_s = budget_ms / 1000
    total: list[float] = []
    statuses: dict[str, int] = {}
    for q in queries:
        ms, found = await timed(search, principal, q)
        total.append(ms)
        key = found.rerank.status if found.rerank else "off"
        statuses[key] = statuses.get(key, 0) + 1
    await asyncio.sleep(latency_ms / 1000 + 0.5)  # let any answer that was still coming land
    repeat = {}
    for q in queries[:3]:
        _, found = await timed(search, principal, q)
        key = f"{found.rerank.status}/{found.rerank.cache}" if found.rerank else "off"
        repeat[key] = repeat.get(key, 0) + 1
    reranker.timeout_s = saved_budget
    return {"model_latency_ms": latency_ms, "budget_ms": budget_ms, "searches": len(queries),
            "p50_ms": pct(total, 50), "max_ms": round(max(total), 3), "statuses": statuses,
            "repeat_after_timeout": repeat}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    queries = QUERIES[: args.queries]
    latencies = [float(x) for x in args.latencies_ms.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as home, fake_openai() as (base, fake):
        fake.answer = listed_reversed
        names = [f"fake-{i}" for i in range(len(latencies))] + ["over", "warm"]
        models = {"models": [{"name": n, "target": f"openai/{n}", "api_base": base, "api_key": "k"} for n in names]}
        settings = load_settings(home=Path(home), embedder=args.embedder, llm_models=json.dumps(models),
                                 llm_retries=0, tool_search_rerank_model=names[0],
                                 tool_search_rerank_candidates=args.candidates, tool_cache=False)
        await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
        async with running_router(settings) as (runtime, principal):
            search = runtime.tool_search
            saved, search.reranker = search.reranker, None
            t0 = time.perf_counter()
            for q in queries:  # index the catalog and embed every query once: both sides reuse them
                await search.find(principal, q, limit=5)
            warm_s = time.perf_counter() - t0
            search.reranker = saved
            assert saved is not None
            saved.model = "warm"  # litellm's import and first connection, outside every timing
            await search.find(principal, queries[0], limit=5)
            out: dict[str, Any] = {"embedder": settings.embedder, "candidates": args.candidates,
                                   "tools": len(search.registry.records(None)), "warmup_s": round(warm_s, 2),
                                   "load": round(os.getloadavg()[0], 2), "phases": []}
            for name, latency in zip(names, latencies, strict=False):
                out["phases"].append(await phase(search, principal, fake, name, latency, queries, args.repeats))
            sent = out["phases"][0]["sent_queries"] if out["phases"] else queries
            out["over_budget"] = await over_budget(search, principal, fake, sent[: args.over_queries],
                                                   args.over_latency_ms, args.budget_ms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=20, help=f"distinct queries (at most {len(QUERIES)})")
    ap.add_argument("--repeats", type=int, default=5, help="passes over the queries for first-stage and hit timings")
    ap.add_argument("--latencies-ms", default="0,200", help="the fake model's artificial latency per phase")
    ap.add_argument("--candidates", type=int, default=10, help="VSM_TOOL_SEARCH_RERANK_CANDIDATES")
    ap.add_argument("--budget-ms", type=float, default=300.0, help="rerank timeout in the over-budget phase")
    ap.add_argument("--over-latency-ms", type=float, default=1000.0, help="the model's latency in that phase")
    ap.add_argument("--over-queries", type=int, default=5)
    ap.add_argument("--embedder", default="minilm", help="VSM_EMBEDDER (hash: a quick smoke run)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the over-budget phase's fallback lines are expected
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"embedder {res['embedder']}, {res['tools']} tools, {res['candidates']} candidates, "
          f"load {res['load']}, warm-up {res['warmup_s']} s")
    print(f"{'model ms':>8} {'first p50/p95':>15} {'miss p50/p95':>15} {'hit p50/p95':>15} "
          f"{'added miss':>10} {'added hit':>9} {'hit rate':>8} {'calls 1st/rep':>13}")
    for p in res["phases"]:
        print(f"  ({p['sent']} of {p['queries']} queries sent to the model; first pass {p['first_searches']})")
        print(f"{p['model_latency_ms']:>8.0f} {p['first_p50_ms']:>7.2f}/{p['first_p95_ms']:<7.2f} "
              f"{p['miss_p50_ms']:>7.2f}/{p['miss_p95_ms']:<7.2f} {p['hit_p50_ms']:>7.2f}/{p['hit_p95_ms']:<7.2f} "
              f"{p['added_miss_p50_ms']:>10.2f} {p['added_hit_p50_ms']:>9.2f} {p['hit_rate']:>8.3f} "
              f"{p['provider_calls_first']:>6}/{p['provider_calls_repeats']:<6}")
    ob = res["over_budget"]
    print(f"over budget: model {ob['model_latency_ms']:.0f} ms, budget {ob['budget_ms']:.0f} ms -> search p50 "
          f"{ob['p50_ms']:.1f} ms, max {ob['max_ms']:.1f} ms, {ob['statuses']}; repeat: {ob['repeat_after_timeout']}")


if __name__ == "__main__":
    main()
