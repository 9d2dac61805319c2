"""Shared LLM cache across agents: two concurrent agents replay a recorded agent-traffic trace
through one vsm-mcp's OpenAI-compatible ``/v1/chat/completions``.

Two traces, each documenting its provenance in its generator:

* benchmarks/data/llm_trace/trace.jsonl (default): synthetic and seeded, made by
  benchmarks/make_llm_trace.py;
* benchmarks/data/llm_trace/opencode.jsonl (``--trace``): recorded from two real OpenCode
  processes working through vsm-mcp, made by benchmarks/record_opencode_trace.py. OpenCode sends
  no ``temperature``, so its header says ``cache_mode: all`` and the replay uses that mode
  (``--cache-mode`` overrides; under the default ``deterministic`` every request is a bypass).
  Its requests were streamed; they are replayed without ``stream`` (the key ignores it), so the
  answer can be read whole.

Everything runs on 127.0.0.1:

* a fake OpenAI-compatible provider (tests/integration/llm_cdn/fake_openai.py, uvicorn in a
  thread) answering after ``--latency-ms``; its answer names the provider call that made it
  (``[call n]``), so every answer an agent receives can be traced to the request that caused it;
* one vsm-mcp router app (router.app.create_app, the ``llm`` entry of manifests/default.yaml,
  served by uvicorn) with the exact cache (diskcache) and the semantic cache on
  (``VSM_LLM_SEMANTIC_CACHE=true``, default threshold, ``--embedder`` default all-MiniLM-L6-v2);
* two agents — asyncio tasks with their own HTTP client — each sending its half of the trace in
  order, one request at a time, concurrently with the other (as two OpenCode processes would).

Figures (from the ``x-vsm-cache`` answer header and the provider's call counter):

* ``exact_hits`` / ``semantic_hits`` / ``shared`` (joined an identical in-flight request) /
  ``misses`` / ``bypass`` (not cacheable: temperature 0.7), and their rates;
  ``cache_hit_rate`` = (exact + semantic) / requests; ``served_without_provider_rate`` adds shared;
  ``ceiling_hit_rate``: what a perfect cache could serve on this trace (every cacheable request
  but the first of each intent) — the hit rate is a property of the traffic as much as the cache;
* ``cross_agent_hits``: answers one agent got from the cache that the other agent's request had
  fetched;
* ``provider_calls`` vs the baseline of one per request: ``provider_calls_saved``, and
  ``prompt_tokens_saved_bytes_div4`` (the prompts — messages and tool schemas — that never
  reached the provider, bytes/4), priced at ``--price-model``'s input rate from litellm's local
  cost map (``prompt_cost_saved_usd``);
* false hits: a cached answer whose originating request had a different ``intent`` (the trace's
  ground truth). ``false_hits`` over all requests and ``labelled_false_hits`` over the labelled
  near-duplicate subset (``equivalent`` + ``near_miss``); goal 0. ``equivalent_served`` counts
  rewordings answered from the cache (semantic or exact after normalisation).

    python benchmarks/llm_cache_trace.py [--trace PATH] [--cache-mode MODE] [--latency-ms 100]
                                         [--embedder minilm] [--price-model gpt-4o-mini] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import yaml  # noqa: E402

from router.app import create_app  # noqa: E402
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest  # noqa: E402
from tests.asgi_server import serve_asgi  # noqa: E402
from tests.integration.llm_cdn.fake_openai import FakeState, fake_openai  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402

TRACE = Path(__file__).resolve().parent / "data" / "llm_trace" / "trace.jsonl"
LABELLED = ("equivalent", "near_miss")


def load_trace(path: Path = TRACE) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, rows) with each row's system ``ref`` expanded to the header's prompt (and a
    ``tools`` ref to the header's tool list)."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    header, rows = lines[0], lines[1:]
    if header.get("kind") != "header":
        raise SystemExit(f"{path}: first line is not the trace header")
    for row in rows:
        for msg in row["request"]["messages"]:
            if "ref" in msg:
                msg["content"] = header["system"][msg.pop("ref")]
        tools = row["request"].get("tools")
        if isinstance(tools, dict) and "ref" in tools:
            row["request"]["tools"] = header["tools"][tools["ref"]]
    return header, rows


def llm_specs(home: Path) -> list[Any]:
    entries = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] == "llm"]
    return parse_manifest({"upstreams": entries}, "llm.yaml")


async def agent(url: str, rows: list[dict[str, Any]], seen: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:  # one client = one agent process
        for row in rows:
            body = {k: v for k, v in row["request"].items() if k not in ("stream", "stream_options")}
            r = await http.post("/v1/chat/completions", json=body)
            if r.status_code != 200:
                raise SystemExit(f"agent {row['agent']} request {row['seq']}: HTTP {r.status_code} {r.text[:200]}")
            content = r.json()["choices"][0]["message"]["content"]
            seen.append({**row, "cache": r.headers.get("x-vsm-cache", ""), "content": content})


def _prompt_bytes(request: dict[str, Any]) -> int:
    return len(json.dumps([request["messages"], request.get("tools") or []]).encode())


def analyse(seen: list[dict[str, Any]], provider_calls: int) -> dict[str, Any]:
    origin: dict[str, dict[str, Any]] = {}  # answer text -> the request whose provider call made it
    for s in seen:
        if s["cache"] in ("miss", "bypass"):
            origin[s["content"]] = s
    kinds = {k: sum(1 for s in seen if s["cache"] == k) for k in ("hit", "semantic", "shared", "miss", "bypass")}
    n = len(seen)
    false_hits, labelled_false, cross, unexplained = 0, 0, 0, 0
    for s in seen:
        if s["cache"] not in ("hit", "semantic", "shared"):
            continue
        src = origin.get(s["content"])
        if src is None:
            unexplained += 1
            continue
        if src["intent"] != s["intent"]:
            false_hits += 1
            labelled_false += s["label"] in LABELLED
        if src["agent"] != s["agent"] and s["cache"] in ("hit", "semantic"):
            cross += 1
    not_sent = [s for s in seen if s["cache"] in ("hit", "semantic", "shared")]
    saved_bytes = sum(_prompt_bytes(s["request"]) for s in not_sent)
    labelled = [s for s in seen if s["label"] in LABELLED]
    # What a perfect cache could serve: every cacheable request except the first of each intent.
    cacheable = [s for s in seen if s["cache"] != "bypass"]
    ceiling = (len(cacheable) - len({s["intent"] for s in cacheable})) / n
    return {
        "requests": n,
        "requests_per_agent": {a: sum(1 for s in seen if s["agent"] == a) for a in ("a", "b")},
        "exact_hits": kinds["hit"],
        "semantic_hits": kinds["semantic"],
        "shared": kinds["shared"],
        "misses": kinds["miss"],
        "bypass": kinds["bypass"],
        "exact_hit_rate": round(kinds["hit"] / n, 4),
        "semantic_hit_rate": round(kinds["semantic"] / n, 4),
        "cache_hit_rate": round((kinds["hit"] + kinds["semantic"]) / n, 4),
        "served_without_provider_rate": round((kinds["hit"] + kinds["semantic"] + kinds["shared"]) / n, 4),
        "ceiling_hit_rate": round(ceiling, 4),
        "cross_agent_hits": cross,
        "provider_calls": provider_calls,
        "baseline_provider_calls": n,
        "provider_calls_saved": n - provider_calls,
        "prompt_tokens_bytes_div4": sum(_prompt_bytes(s["request"]) for s in seen) // 4,
        "prompt_tokens_saved_bytes_div4": saved_bytes // 4,
        "labelled_requests": len(labelled),
        "equivalent": sum(1 for s in labelled if s["label"] == "equivalent"),
        "equivalent_served": sum(1 for s in labelled if s["label"] == "equivalent"
                                 and s["cache"] in ("hit", "semantic", "shared")),
        "near_miss": sum(1 for s in labelled if s["label"] == "near_miss"),
        "false_hits": false_hits,
        "labelled_false_hits": labelled_false,
        "unexplained_cached_answers": unexplained,
    }


async def run(rows: list[dict[str, Any]], fake_base: str, state: FakeState, home: Path,
              embedder: str = "minilm", model: str = "agent-model", cache_mode: str = "deterministic") -> dict[str, Any]:
    models = {"models": [{"name": model, "target": f"openai/{model}", "api_base": fake_base, "api_key": "k"}]}
    settings = load_settings(home=home / ".vsm", llm_models=json.dumps(models), llm_semantic_cache=True,
                             embedder=embedder, rate_limit=0, llm_timeout_s=60, llm_cache_mode=cache_mode)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    before = state.total
    seen: list[dict[str, Any]] = []
    async with serve_asgi(create_app(settings, specs=llm_specs(home))) as url:
        by_agent = {a: [r for r in rows if r["agent"] == a] for a in ("a", "b")}
        await asyncio.gather(*(agent(url, rs, seen) for rs in by_agent.values()))
    out = analyse(seen, state.total - before)
    out["embedder"] = embedder
    out["semantic_threshold"] = settings.llm_semantic_threshold
    out["cache_mode"] = cache_mode
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trace", type=Path, default=TRACE)
    ap.add_argument("--latency-ms", type=float, default=100.0, help="the fake provider's answer time")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--cache-mode", choices=("deterministic", "all", "off"),
                    help="VSM_LLM_CACHE_MODE for the replay (default: the trace header's cache_mode, else deterministic)")
    ap.add_argument("--price-model", default="gpt-4o-mini", help="whose input price (litellm's local cost map) values the saved prompts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    header, rows = load_trace(args.trace)
    with tempfile.TemporaryDirectory() as tmp, fake_openai() as (base, state):
        state.latency_s = args.latency_ms / 1000
        mode = args.cache_mode or header.get("cache_mode", "deterministic")
        result = asyncio.run(run(rows, base, state, Path(tmp), args.embedder, header["model"], mode))
    result["trace"] = str(args.trace.relative_to(Path(__file__).resolve().parents[1])) \
        if args.trace.is_relative_to(Path(__file__).resolve().parents[1]) else str(args.trace)
    result["provider_latency_ms"] = args.latency_ms
    import litellm  # imported by the router already; its local cost map has list prices

    price = float(litellm.model_cost[args.price_model]["input_cost_per_token"])
    result["price_model"] = args.price_model
    result["prompt_cost_saved_usd"] = round(result["prompt_tokens_saved_bytes_div4"] * price, 6)
    result["prompt_cost_baseline_usd"] = round(result["prompt_tokens_bytes_div4"] * price, 6)
    result["goals"] = {"cache_hit_rate_gt_60pct": result["cache_hit_rate"] > 0.6,
                       "false_hits_eq_0": result["false_hits"] == 0}
    if not args.json:
        for k, v in result.items():
            print(f"{k:>32}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
