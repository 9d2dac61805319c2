"""Tool search at 1,000 and 10,000 tools: index build, the search function and find_tools through /mcp.

Catalog: the tool-retrieval dev set (471 real tools of 15 servers) plus variants — the same
servers registered again under other ids (``<server>-r<k>``), as when one MCP server is
mounted for several accounts or stages — until the size is reached. The embedded text leads
with the server id, so every variant is its own text: 10,000 tools are 10,000 texts to embed.

Encoders side by side (``--embedder``, default ``minilm`` = ``minilm:dyn8``, against
``--baseline-embedder``, default ``minilm:int8``, the encoder before issue 26), interleaved chunk
by chunk and query by query so machine noise hits both alike:

* ``bulk``: a sample of the catalog's tool texts (``--encode-sample``, every k-th text, so it
  has the catalog's length mix) through ``embed`` in chunks of 256 — the registry's indexing
  path, with its worker threads: CPU per text (``process_time``, all threads) and texts/s wall;
* ``query``: one dev query through ``embed`` (CPU: ``thread_time``).

Then per size, with ``--embedder``:

* ``index``: ``ToolRegistry.replace_servers`` of the whole catalog **from an empty vector store**
  (a fresh directory): embedding, BM25, snapshot — wall and CPU (``process_time``), and the
  load average around it; ``restart``: the same on a new registry over the now-filled store (a
  restarted router: every vector read back, nothing embedded). ``--baseline-build`` also times
  the baseline encoder's build of the largest size from empty (minutes with ``minilm:int8``);
* ``encode`` / ``search_cold`` / ``search_warm`` / ``bm25_only``: the embedder alone on a query,
  ``ToolRegistry.search`` (hybrid, limit 5) the first time a query is seen (it embeds it), again
  (its embedding cached), and in bm25 mode; each also as ``…_cpu`` (``thread_time``: leaves out
  time spent waiting for a core on a busy machine);
* ``find_tools``: the meta-tool over streamable HTTP on one router app served by uvicorn on
  127.0.0.1 (in this process; one app for every size, its registry swapped), with ``ping`` on
  the same session as the floor of any request.

    python benchmarks/tool_search_scale.py [--sizes 1000,10000] [--rounds 3] [--baseline-build] [--json]

The last line is one JSON object; above it, one line ``VERDICT …`` against issue 26's goals:
10,000 tools indexed from an empty store in < 30 s on 2 cores, a new query's search p95 < 5 ms
at 10,000 tools, and ≥ 3.5x less encoder CPU per tool text than the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from router.registry.embedding_store import DiskEmbeddingStore  # noqa: E402
from router.registry.index import EMBED_BATCH, ToolRecord, ToolRegistry  # noqa: E402
from vsm_mcp.cli.bench_retrieval import load_queries, load_tools  # noqa: E402
from vsm_mcp.cli.tools import embedding_progress  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402
from vsm_mcp.embeddings import Embedder, make_embedder  # noqa: E402

DEV = Path("/work/shared/bench/tool_retrieval")
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
GOAL_INDEX_S, GOAL_P95_MS, GOAL_RATIO, GOAL_TOOLS = 30.0, 5.0, 3.5, 10_000
_LOOPS: list[asyncio.AbstractEventLoop] = []  # the running loop, for the watchdog's report


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 3)


def stats(lat: dict[str, list[float]]) -> dict[str, float]:
    return {f"{k}_{s}": pct(v, p) for k, v in lat.items() if v for s, p in (("p50_ms", 50), ("p95_ms", 95))}


def load() -> float:
    return round(os.getloadavg()[0], 2)


def catalog(base: dict[str, list[ToolRecord]], size: int) -> dict[str, list[ToolRecord]]:
    """``size`` tools: the dev set, then copies of its servers under new ids."""
    out: dict[str, list[ToolRecord]] = {}
    total, k = 0, 0
    while total < size:
        for server, records in base.items():
            sid = server if k == 0 else f"{server}-r{k}"
            take = records[: size - total]
            out[sid] = [replace(r, server=sid, public_name=f"{sid}__{r.name}") for r in take]
            total += len(take)
            if total >= size:
                break
        k += 1
    return out


# --- encoders side by side ------------------------------------------------------------------


def compare_encoders(ours: Embedder, base: Embedder, texts: list[str], queries: list[str]) -> dict[str, Any]:
    """Bulk CPU per text and texts/s, and per-query CPU, of both encoders, interleaved."""
    for emb in (ours, base):
        emb.embed(texts[:4])  # load or build the model outside the timing
    cpu = {"ours": 0.0, "base": 0.0}
    wall = {"ours": 0.0, "base": 0.0}
    for n, start in enumerate(range(0, len(texts), EMBED_BATCH)):
        chunk = texts[start : start + EMBED_BATCH]
        pair = (("ours", ours), ("base", base))
        for side, emb in pair if n % 2 == 0 else pair[::-1]:
            w0, c0 = time.perf_counter(), time.process_time()
            emb.embed(chunk)
            wall[side] += time.perf_counter() - w0
            cpu[side] += time.process_time() - c0
    lat: dict[str, list[float]] = {"ours_query_cpu": [], "base_query_cpu": []}
    for i, q in enumerate(queries):
        pair2 = (("ours", ours), ("base", base))
        for side, emb in pair2 if i % 2 == 0 else pair2[::-1]:
            c0 = time.thread_time()
            emb.embed([q])
            lat[f"{side}_query_cpu"].append((time.thread_time() - c0) * 1000)
    n = len(texts)
    out: dict[str, Any] = {
        "embedder": ours.name, "baseline": base.name, "texts": n,
        "ours_bulk_cpu_ms_per_text": round(cpu["ours"] / n * 1000, 3),
        "base_bulk_cpu_ms_per_text": round(cpu["base"] / n * 1000, 3),
        "ours_bulk_texts_per_s": round(n / wall["ours"], 1),
        "base_bulk_texts_per_s": round(n / wall["base"], 1),
        **stats(lat),
    }
    out["bulk_cpu_ratio"] = round(cpu["base"] / max(cpu["ours"], 1e-9), 2)
    out["query_cpu_p50_ratio"] = round(out["base_query_cpu_p50_ms"] / max(out["ours_query_cpu_p50_ms"], 1e-9), 2)
    return out


# --- index build ----------------------------------------------------------------------------


def build(embedder: Embedder, store_dir: Path, tools: dict[str, list[ToolRecord]], label: str) -> tuple[ToolRegistry, dict[str, Any]]:
    """A registry over ``tools`` with vectors from (or into) the store at ``store_dir``."""
    registry = ToolRegistry(embedder, store=DiskEmbeddingStore(store_dir, embedder.dim))
    load0, w0, c0 = load(), time.perf_counter(), time.process_time()
    with embedding_progress(label, enabled=sys.stderr.isatty()) as update:
        registry.progress = update
        registry.replace_servers(tools)
    row = {"s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2),
           "embedded_texts": registry.embedded_count, "load_before": load0, "load_after": load()}
    return registry, row


# --- search ---------------------------------------------------------------------------------


def measure_function(registry: ToolRegistry, queries: list[str], rounds: int) -> dict[str, Any]:
    """Wall-clock and CPU time (``thread_time``: excludes waiting for a core on a busy machine)."""
    lat: dict[str, list[float]] = {}

    def timed(name: str, query: str, mode: str = "hybrid") -> None:
        w0, c0 = time.perf_counter(), time.thread_time()
        registry.search(query, limit=5, mode=mode)  # type: ignore[arg-type]
        lat.setdefault(name, []).append((time.perf_counter() - w0) * 1000)
        lat.setdefault(f"{name}_cpu", []).append((time.thread_time() - c0) * 1000)

    for q in queries:
        w0, c0 = time.perf_counter(), time.thread_time()
        registry.embedder.embed([q])
        lat.setdefault("encode", []).append((time.perf_counter() - w0) * 1000)
        lat.setdefault("encode_cpu", []).append((time.thread_time() - c0) * 1000)
    registry.clear_query_cache()
    for q in queries:
        timed("search_cold", q)
    for _ in range(rounds):
        for q in queries:
            timed("search_warm", q)
            timed("bm25_only", q, "bm25")
    return stats(lat)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decode(r: httpx.Response) -> dict[str, Any]:
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()  # type: ignore[no-any-return]
    data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def router_app(home: Path, embedder_spec: str) -> AsyncIterator[tuple[str, Callable[[ToolRegistry], None]]]:
    """One migrated home and one served router app for every size: (base URL, set_registry)."""
    from router.app import create_app
    from vsm_mcp import migrate

    port = free_port()
    settings = load_settings(home=home, port=port, rate_limit=0, embedder=embedder_spec)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    app = create_app(settings, specs=[])

    def set_registry(registry: ToolRegistry) -> None:
        search = app.state.runtime.tool_search
        search.registry = registry  # the catalog built above, already indexed
        # The app's catalog does not know these servers: let callers see them, as if mounted.
        servers = frozenset(registry.servers())
        search.visible_keys = lambda tenant: servers

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}", set_registry
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


async def drive(base: str, queries: list[str], rounds: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as h:
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
        r = await h.post("/mcp?expose=search", json=init, headers=HEADERS)
        hdrs = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        await h.post("/mcp?expose=search", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=hdrs)
        ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        lat: dict[str, list[float]] = {"find_tools": [], "ping": []}
        for i in range(rounds):
            for j, q in enumerate(queries):
                call = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                   "params": {"name": "find_tools", "arguments": {"query": q, "limit": 5}}}).encode()
                pair = (("find_tools", call), ("ping", ping))
                for name, body in pair if (i + j) % 2 == 0 else pair[::-1]:
                    t0 = time.perf_counter()
                    resp = await h.post("/mcp?expose=search", content=body, headers=hdrs)
                    lat[name].append((time.perf_counter() - t0) * 1000)
                    msg = decode(resp)
                    if "result" not in msg or msg["result"].get("isError"):
                        raise SystemExit(f"{name} failed: {msg}")
                    if name == "find_tools" and not msg["result"]["structuredContent"]["tools"]:
                        raise SystemExit(f"find_tools found no tool for {q!r}: the catalog is not visible")
    return stats(lat)


# --- run ------------------------------------------------------------------------------------


async def measure_sizes(
    embedder: Embedder, spec: str, base: dict[str, list[ToolRecord]], sizes: list[int], queries: list[str],
    rounds: int, tmp: Path,
) -> dict[str, Any]:
    _LOOPS.append(asyncio.get_running_loop())
    result: dict[str, Any] = {}
    async with router_app(tmp / "home", spec) as (url, set_registry):
        for size in sizes:
            tools = catalog(base, size)
            store = tmp / f"store-{size}"
            registry, first = build(embedder, store, tools, f"indexing {size} tools")
            _, again = build(embedder, store, tools, f"re-reading {size} tools")
            row: dict[str, Any] = {"tools": len(registry), "index_s": first["s"], "index_cpu_s": first["cpu_s"],
                                   "embedded_texts": first["embedded_texts"],
                                   "index_load": [first["load_before"], first["load_after"]],
                                   "restart_index_s": again["s"], "restart_embedded_texts": again["embedded_texts"]}
            row.update(measure_function(registry, queries, rounds))
            set_registry(registry)
            row.update(await drive(url, queries, 1))
            row["find_tools_over_ping_p50"] = round(row["find_tools_p50_ms"] / max(row["ping_p50_ms"], 1e-6), 2)
            result[str(size)] = row
    return result


def verdict(result: dict[str, Any], top: int) -> str:
    row = result[str(top)]
    enc = result.get("encoders")
    parts = []
    if top >= GOAL_TOOLS:
        ok = row["index_s"] < GOAL_INDEX_S
        parts.append(f"index {top:,} tools from an empty store {row['index_s']} s wall, {row['index_cpu_s']} s CPU "
                     f"(goal < {GOAL_INDEX_S:g} s: {'MET' if ok else 'NOT MET'})")
        ok = row["search_cold_p95_ms"] < GOAL_P95_MS
        parts.append(f"new-query search p95 {row['search_cold_p95_ms']} ms wall, {row['search_cold_cpu_p95_ms']} ms CPU "
                     f"(goal < {GOAL_P95_MS:g} ms: {'MET' if ok else 'NOT MET'}"
                     f"{'' if ok or row['search_cold_cpu_p95_ms'] >= GOAL_P95_MS else ' on wall, met on CPU'})")
    else:
        parts.append(f"largest size {top} < {GOAL_TOOLS:,}: no goal checked")
    if enc:
        ok = enc["bulk_cpu_ratio"] >= GOAL_RATIO
        parts.append(f"encoder CPU per tool text {enc['ours_bulk_cpu_ms_per_text']} ms vs {enc['base_bulk_cpu_ms_per_text']} "
                     f"({enc['baseline']}): {enc['bulk_cpu_ratio']}x less (goal >= {GOAL_RATIO:g}x: {'MET' if ok else 'NOT MET'})")
    parts.append(f"load average {result['load_start']} -> {result['load_end']} on {os.cpu_count()} cores"
                 + (" (busy machine: rerun quiet for the record)" if max(result["load_start"], result["load_end"]) > 1.0 else ""))
    return "VERDICT " + "; ".join(parts)


def watchdog(seconds: float) -> None:
    """After ``seconds``, print every thread's stack and the pending asyncio tasks, and exit 3.

    A run that hangs (a shutdown that never finishes) then says where instead of being killed
    silently by its caller's timeout (tests/unit/registry/test_scale_benchmark_smoke.py).
    """
    import faulthandler
    import threading

    def fire() -> None:
        print(f"tool_search_scale: still running after {seconds:g} s; stacks follow", file=sys.stderr)
        if _LOOPS and _LOOPS[-1].is_running():
            for task in asyncio.all_tasks(_LOOPS[-1]):
                print(f"--- task {task.get_name()}: {task.get_coro()!r}", file=sys.stderr)
                task.print_stack(limit=8, file=sys.stderr)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--rounds", type=int, default=3, help="warm passes over the queries")
    ap.add_argument("--queries", type=int, default=203, help="how many dev queries to use")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--baseline-embedder", default="auto",
                    help="encoder to compare with: auto = minilm:int8 when --embedder is a minilm one; none to skip")
    ap.add_argument("--encode-sample", type=int, default=1024, help="tool texts in the side-by-side bulk comparison")
    ap.add_argument("--baseline-build", action="store_true", help="also index the largest size with the baseline (slow)")
    ap.add_argument("--deadline", type=float, default=0, help="seconds; past them print where it waits and exit 3")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.deadline > 0:
        watchdog(args.deadline)
    sizes = [int(s) for s in args.sizes.split(",")]
    base = load_tools(DEV / "tools.jsonl")
    known = {f"{r.server}/{r.name}" for recs in base.values() for r in recs}
    queries = [q.text for q in load_queries(DEV / "queries.jsonl", known)][: args.queries]
    embedder = make_embedder(args.embedder)
    baseline = args.baseline_embedder
    if baseline == "auto":
        baseline = "minilm:int8" if args.embedder.startswith("minilm") else "none"
    result: dict[str, Any] = {"embedder": embedder.name, "queries": len(queries), "load_start": load()}
    if baseline != "none":
        all_texts = [r.embedding_text for recs in catalog(base, max(sizes)).values() for r in recs]
        step = max(1, len(all_texts) // max(args.encode_sample, 1))
        result["encoders"] = compare_encoders(embedder, make_embedder(baseline), all_texts[::step], queries)
        if not args.json:
            print(json.dumps(result["encoders"], indent=2))
    with tempfile.TemporaryDirectory() as tmp:
        result.update(asyncio.run(measure_sizes(embedder, args.embedder, base, sizes, queries, args.rounds, Path(tmp))))
        if args.baseline_build and baseline != "none":
            _, row = build(make_embedder(baseline), Path(tmp) / "store-baseline", catalog(base, max(sizes)),
                           f"indexing {max(sizes)} tools with {baseline}")
            result["baseline_index"] = {"embedder": baseline, "tools": max(sizes), **row}
    if not args.json:
        for size in sizes:
            print(json.dumps(result[str(size)], indent=2))
    result["load_end"] = load()
    top = result[str(max(sizes))]
    for kind in ("warm", "cold"):
        result[f"goal_{kind}_met"] = top[f"search_{kind}_p95_ms"] < GOAL_P95_MS
        result[f"goal_{kind}_cpu_met"] = top[f"search_{kind}_cpu_p95_ms"] < GOAL_P95_MS
    if max(sizes) >= GOAL_TOOLS:
        result["goal_index_met"] = top["index_s"] < GOAL_INDEX_S
    if "encoders" in result:
        result["goal_encoder_ratio_met"] = result["encoders"]["bulk_cpu_ratio"] >= GOAL_RATIO
    print(verdict(result, max(sizes)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
