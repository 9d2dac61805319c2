"""LLM-CDN: replay an agent-like request trace through our engine against a fake provider.

Everything runs on 127.0.0.1: a fake OpenAI-compatible provider (tests/integration/llm_cdn/
fake_openai.py, served by uvicorn) answering after ``--latency-ms`` (200 ms by default), and our
engine in-process (diskcache backend, litellm's real HTTP path to the fake).

The trace (seeded, ``--requests`` long) imitates coding-agent traffic:

* 4 agent roles, each with a long system prompt shared by every request of that role;
* user turns drawn Zipf-distributed (s = 1.1) from a pool of 150 task prompts — a few tasks are
  asked again and again (re-runs, retries, sibling agents), most rarely;
* 35 % of requests carry a tool round-trip (assistant tool call + tool result), the tool result
  drawn Zipf-distributed from 40 outputs (the same file read / test run seen repeatedly);
* 90 % are deterministic (temperature 0, cacheable), 10 % sample at temperature 0.7 (bypass);
* replayed by 16 concurrent "agents".

Figures:

* ``hit_rate`` — requests answered from the cache (exact + semantic) / all requests;
  ``upstream_calls`` — calls the provider saw for the trace (baseline: one per request);
* ``hit_p50_ms`` / ``hit_p99_ms`` — in-process latency of ``Engine.complete`` for cache hits,
  measured on 2,000 hits of trace requests with no other load (``hit_p99_under_load_ms``: the hits
  seen while replaying the trace, with 16 agents and misses in flight);
* ``miss_overhead_ms`` — median of (our miss − a direct litellm call to the provider), paired and
  interleaved in the same run; ``miss_ratio`` the same as a ratio of medians;
* ``dedup_upstream_calls`` — provider calls for 100 concurrent identical requests (goal 1);
* ``semantic_hit_rate`` / ``false_hit_rate`` — over a labelled set of prompt pairs (equivalent
  rewordings vs near-miss prompts that need a different answer), at the default threshold with
  the real all-MiniLM-L6-v2 embedder: share of equivalent pairs served semantically, share of
  near-miss pairs wrongly served (goal 0).

    python benchmarks/llm_cdn.py [--requests 600] [--latency-ms 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from servers.llm_cdn import semantic as sem  # noqa: E402
from servers.llm_cdn.cache import DiskBackend  # noqa: E402
from servers.llm_cdn.engine import Engine  # noqa: E402
from servers.llm_cdn.models_config import load_models  # noqa: E402
from servers.llm_cdn.providers import Providers, _litellm  # noqa: E402
from tests.integration.llm_cdn.fake_openai import FakeState, fake_openai  # noqa: E402
from vsm_mcp.bus import MemoryBus  # noqa: E402
from vsm_mcp.config import Settings, load_settings  # noqa: E402

ROLES = {
    "coder": "You are a senior software engineer. Follow the repository conventions, write tests, keep diffs small. " * 8,
    "reviewer": "You review pull requests for correctness, security and style; answer with concrete findings. " * 8,
    "planner": "You break a goal into ordered steps with tool calls; never skip verification steps. " * 8,
    "tester": "You write and run tests; report failures with the exact command and output. " * 8,
}
VERBS = ["fix", "explain", "refactor", "add tests for", "document", "review"]
THINGS = ["the cache module", "the login handler", "the CSV parser", "the retry loop", "the config loader",
          "the rate limiter", "the SSE endpoint", "the migration script", "the CLI entry point",
          "the tenant filter", "the search index", "the upload path", "the webhook handler",
          "the metrics exporter", "the scheduler", "the email sender", "the S3 adapter", "the date utils",
          "the JSON schema validator", "the auth middleware", "the queue consumer", "the image resizer",
          "the pagination helper", "the feature flags", "the logging setup"]
TOOL_OUTPUTS = [f"$ pytest -q tests/test_{t}.py\n{'.' * (10 + i)}F\nFAILED test_{t} - AssertionError: {i} != {i + 1}"
                for i, t in enumerate(["cache", "auth", "csv", "retry", "cfg"] * 4)] + \
               [f"$ cat src/{m}.py\n" + f"def {m}(x):\n    return x + {i}\n" * 5 for i, m in
                enumerate(["util", "core", "api", "db", "io", "net", "cli", "web", "log", "jobs"] * 2)]


def zipf_index(rnd: random.Random, n: int, s: float = 1.1) -> int:
    weights = [1 / (k + 1) ** s for k in range(n)]
    return rnd.choices(range(n), weights=weights)[0]


def build_trace(n: int, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    tasks = [f"{v} {t}" for t in THINGS for v in VERBS][:150]
    rnd.shuffle(tasks)
    trace = []
    for _ in range(n):
        role = rnd.choice(list(ROLES))
        msgs: list[dict[str, Any]] = [{"role": "system", "content": ROLES[role]},
                                      {"role": "user", "content": f"Please {tasks[zipf_index(rnd, len(tasks))]}."}]
        if rnd.random() < 0.35:
            out = TOOL_OUTPUTS[zipf_index(rnd, len(TOOL_OUTPUTS))]
            call = {"id": "call_1", "type": "function", "function": {"name": "shell", "arguments": '{"cmd": "run"}'}}
            msgs += [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_1", "content": out}]
        temperature = 0.7 if rnd.random() < 0.10 else 0
        trace.append({"model": "bench", "messages": msgs, "temperature": temperature})
    return trace


# --- the labelled semantic set: (template A, template B) are rewordings of one request --------------
TEMPLATES = [
    ("How do I {x} in Python?", "How can I {x} in Python?"),
    ("Explain what {x} is.", "explain what {x} is"),
    ("What's the difference between a list and {x}?", "What is the difference between a list and {x}"),
    ("Write a unit test for {x}.", "Please write a unit test for {x}"),
    ("Summarize the file {x}.", "Summarize the file {x}"),
    ("Show me an example of {x}.", "Show me an example of {x}!"),
    ("Why does {x} fail?", "Why does {x} fail ?"),
    ("Can you explain {x}?", "Can you  explain {x}?"),
]
SLOTS = ["a mutex", "a semaphore", "a closure", "a generator", "a decorator", "a context manager",
         "a coroutine", "a tuple", "a set", "a dictionary", "a heap", "a deque", "a bloom filter",
         "a trie", "a hash map", "a linked list", "a binary tree", "a b-tree", "a skip list", "a ring buffer",
         "merge sort", "quicksort", "binary search", "a regex", "a thread pool", "a lock file",
         "an HTTP cookie", "a JWT", "a UUID", "a checksum", "a socket", "a pipe"]


def labelled_pairs(seed: int = 11) -> list[tuple[str, str, bool]]:
    """(prompt a, prompt b, equivalent?) — equivalents reword; near-misses change the subject."""
    rnd = random.Random(seed)
    pairs: list[tuple[str, str, bool]] = []
    for a_t, b_t in TEMPLATES:
        slots = rnd.sample(SLOTS, 16)
        for i, x in enumerate(slots):
            pairs.append((a_t.format(x=x), b_t.format(x=x), True))
            y = slots[(i + 1) % len(slots)]
            pairs.append((a_t.format(x=x), a_t.format(x=y), False))
    return pairs


def settings_for(base: str, home: Path, **extra: Any) -> Settings:
    models = {"models": [{"name": "bench", "target": "openai/bench", "api_base": base, "api_key": "k"}]}
    return load_settings(home=home, llm_models=json.dumps(models), llm_timeout_s=30, **extra)


def engine_for(settings: Settings, home: Path, semantic: sem.SemanticIndex | None = None) -> Engine:
    backend = DiskBackend(home / "llm", settings.llm_cache_max_bytes)
    return Engine(settings, MemoryBus(), backend, Providers(load_models(settings.llm_models), settings), semantic=semantic)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else 0.0


async def replay(engine: Engine, trace: list[dict[str, Any]], agents: int) -> list[tuple[str, float]]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for req in trace:
        queue.put_nowait(req)
    seen: list[tuple[str, float]] = []

    async def agent() -> None:
        while not queue.empty():
            req = queue.get_nowait()
            t0 = time.perf_counter()
            out = await engine.complete("bench-tenant", req)
            seen.append((out.cache, (time.perf_counter() - t0) * 1000))

    await asyncio.gather(*(agent() for _ in range(agents)))
    return seen


async def hit_latency(engine: Engine, trace: list[dict[str, Any]], n: int) -> list[float]:
    cached = [r for r in trace if r["temperature"] == 0]
    times = []
    for i in range(n):
        req = cached[i % len(cached)]
        t0 = time.perf_counter()
        out = await engine.complete("bench-tenant", req)
        times.append((time.perf_counter() - t0) * 1000)
        assert out.cache == "hit", out.cache
    return times


async def miss_overhead(engine: Engine, base: str, n: int) -> tuple[float, float, float]:
    lt = _litellm()
    ours, direct, diffs = [], [], []
    for i in range(n):
        req = {"model": "bench", "messages": [{"role": "user", "content": f"fresh question {i}"}], "temperature": 0}
        pair = []
        for side in (("ours", "direct") if i % 2 == 0 else ("direct", "ours")):
            t0 = time.perf_counter()
            if side == "ours":
                await engine.complete("overhead-tenant", req)
            else:
                await lt.acompletion(model="openai/bench", api_base=base, api_key="k", num_retries=0,
                                     messages=[{"role": "user", "content": f"direct question {i}"}], temperature=0)
            pair.append((side, (time.perf_counter() - t0) * 1000))
        d = dict(pair)
        ours.append(d["ours"])
        direct.append(d["direct"])
        diffs.append(d["ours"] - d["direct"])
    return statistics.median(diffs), statistics.median(ours), statistics.median(direct)


async def dedup(engine: Engine, state: FakeState) -> int:
    before = state.total
    req = {"model": "bench", "messages": [{"role": "user", "content": "the same question, 100 times"}], "temperature": 0}
    await asyncio.gather(*(engine.complete("dedup-tenant", req) for _ in range(100)))
    return state.total - before


async def semantic_eval(engine: Engine, pairs: list[tuple[str, str, bool]]) -> dict[str, Any]:
    hits = {True: 0, False: 0}
    totals = {True: 0, False: 0}
    for i, (a, b, equivalent) in enumerate(pairs):
        tenant = f"sem-{i}"  # a fresh tenant per pair: pairs cannot help each other
        await engine.complete(tenant, {"model": "bench", "messages": [{"role": "user", "content": a}], "temperature": 0})
        out = await engine.complete(tenant, {"model": "bench", "messages": [{"role": "user", "content": b}], "temperature": 0})
        totals[equivalent] += 1
        hits[equivalent] += out.cache == "semantic"
    return {"pairs": len(pairs), "equivalent_pairs": totals[True], "near_miss_pairs": totals[False],
            "semantic_hit_rate": round(hits[True] / totals[True], 4),
            "false_hit_rate": round(hits[False] / totals[False], 4)}


async def run(args: argparse.Namespace, base: str, state: FakeState, home: Path) -> dict[str, Any]:
    settings = settings_for(base, home)
    engine = engine_for(settings, home / "trace")
    await asyncio.to_thread(_litellm)
    trace = build_trace(args.requests)
    state.latency_s = args.latency_ms / 1000
    before = state.total
    seen = await replay(engine, trace, agents=16)
    upstream = state.total - before
    kinds = [k for k, _ in seen]
    under_load = [ms for k, ms in seen if k == "hit"]
    hits = await hit_latency(engine, trace, args.hits)
    overhead, ours_med, direct_med = await miss_overhead(engine, base, args.miss_pairs)
    dedup_calls = await dedup(engine, state)
    await engine.aclose()

    state.latency_s = 0.0  # the semantic set measures similarity, not provider time
    s_settings = settings_for(base, home, llm_semantic_cache=True)
    from vsm_mcp.embeddings import make_embedder

    index = sem.SemanticIndex(make_embedder(args.embedder), s_settings.llm_semantic_threshold)
    s_engine = engine_for(s_settings, home / "semantic", index)
    pairs = labelled_pairs()
    sem_figures = await semantic_eval(s_engine, pairs[: args.pairs] if args.pairs else pairs)
    await s_engine.aclose()
    return {
        "requests": len(trace), "provider_latency_ms": args.latency_ms,
        "hit_rate": round((kinds.count("hit") + kinds.count("semantic")) / len(kinds), 4),
        "shared": kinds.count("shared"), "bypass": kinds.count("bypass"),
        "upstream_calls": upstream, "baseline_upstream_calls": len(trace),
        "upstream_call_ratio": round(upstream / len(trace), 4),
        "hit_p50_ms": round(pct(hits, 50), 4), "hit_p99_ms": round(pct(hits, 99), 4),
        "hit_p99_under_load_ms": round(pct(under_load, 99), 4),
        "miss_overhead_ms": round(overhead, 3), "miss_p50_ms": round(ours_med, 3),
        "direct_p50_ms": round(direct_med, 3), "miss_ratio": round(ours_med / direct_med, 4),
        "dedup_upstream_calls": dedup_calls,
        "embedder": args.embedder, "semantic_threshold": s_settings.llm_semantic_threshold, **sem_figures,
        "goals": {"hit_p99_lt_1ms": pct(hits, 99) < 1.0, "dedup_eq_1": dedup_calls == 1,
                  "false_hit_rate_eq_0": sem_figures["false_hit_rate"] == 0},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=600)
    p.add_argument("--latency-ms", type=float, default=200.0)
    p.add_argument("--hits", type=int, default=2000)
    p.add_argument("--miss-pairs", type=int, default=30)
    p.add_argument("--embedder", default="minilm")
    p.add_argument("--pairs", type=int, default=0, help="use only the first N labelled pairs (0 = all)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on the last line")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fake_openai() as (base, state):
        result = asyncio.run(run(args, base, state, Path(tmp)))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
