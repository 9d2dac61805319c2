"""Ingest pipeline throughput and container search latency at scale (issue 22).

    python benchmarks/ingest.py [--docs 300] [--embedder minilm] [--search-sizes 10000,30000,100000]
                                [--queries 200] [--no-postgres] [--json]

1. **End to end**, on SQLite and on PostgreSQL (a fresh database, the app as the non-owner role):
   a generated site (``tests/content_site.py``: HTML pages, every 10th a PDF, every 7th link
   through a redirect) served by a separate process on 127.0.0.1 is ingested with
   ``content__ingest_url(depth=1)`` through the in-process router (content, search and storage
   from manifests/default.yaml). *Ours*: batches of ``VSM_CONTENT_BATCH_SIZE`` prepared
   ``VSM_CONTENT_PARALLEL_BATCHES`` at a time; *baseline*: the same code one document at a time
   (batch 1, no overlap) — the naive loop. Each on its own tenant.
2. **Per stage** (SQLite): each stage alone over the same documents — fetch (8 concurrent),
   normalize, containerize (storage put + rows, batches of 32), index (embedding + chunk rows,
   batches of 32) — documents/s.
3. **Search** (SQLite): ``content__container_search`` (hybrid, query embedded by the embedder)
   p50/p95 over ``--search-sizes`` containers, beside the bare ``search__search`` it wraps.
   Containers are bulk-loaded straight into the tables (container, version and one chunk row
   each, the chunk with a random unit vector and 30 Zipf words of a 20,000-word vocabulary) —
   their vectors are not embedded, the queries are.

The last line of output is a JSON object (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from sqlmodel import col  # noqa: E402

from benchmarks.scratch_pg import create_database, drop_database  # noqa: E402
from router.local import running_router  # noqa: E402
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest  # noqa: E402
from servers.content import pipeline  # noqa: E402
from servers.content.pipeline import Item  # noqa: E402
from servers.content.tables import Container, ContainerVersion  # noqa: E402
from servers.search.tables import SearchChunk, SearchCollection  # noqa: E402
from tests.content_site import Site  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.auth import Principal  # noqa: E402
from vsm_mcp.config import Settings, load_settings  # noqa: E402
from vsm_mcp.db import Database  # noqa: E402
from vsm_mcp.tenants import ensure_tenant  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p)) if xs else 0.0


class SiteProcess:
    """The test site in its own process, so serving it does not take this process's GIL."""

    def __init__(self, n: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.content_site", str(n)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def specs() -> list[Any]:
    ups = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"]
           if u["name"] in ("content", "search", "storage")]
    for u in ups:  # the first search after a bulk load rebuilds the index from rows: minutes at 100,000
        u["timeout"] = 1800
    return parse_manifest({"upstreams": ups}, "bench.yaml")


async def prepare_db(settings: Settings) -> None:
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    if settings.is_postgres:
        owner = Database(settings, settings.migration_database_url)
        try:
            await ensure_tenant(owner, settings.default_tenant)
        finally:
            await owner.aclose()


async def call(runtime: Any, tenant: str, tool: str, **args: Any) -> dict[str, Any]:
    res = await runtime.dispatcher.call_tool(Principal(tenant, frozenset({"*"})), tool, args, source="bench")
    if res.is_error:
        raise RuntimeError(f"{tool}: {res.content[0].text}")
    return dict(res.structured_content or {})


# --- 1 + 2: throughput -------------------------------------------------------------------------

async def end_to_end(settings: Settings, url: str, n: int, stages: bool) -> dict[str, Any]:
    await prepare_db(settings)
    out: dict[str, Any] = {}
    async with running_router(settings, specs()) as (runtime, _):
        engine = runtime.ctx.extras["content"]
        await call(runtime, "warm", "content__ingest_item", source="warm", text="warm up the embedder and the index")
        for name, batch, parallel in (("ours", settings.content_batch_size, settings.content_parallel_batches),
                                      ("baseline", 1, 1)):
            engine.batch_size, engine.parallel_batches = batch, parallel
            t0 = time.perf_counter()
            done = await call(runtime, f"bench-{name}", "content__ingest_url", urls=[url + "/"], depth=1,
                              max_documents=n + 1)
            while done.get("state") not in ("done", "failed"):
                await asyncio.sleep(0.2)
                done = await call(runtime, f"bench-{name}", "content__ingest_status", job=done["job"])
            dt = time.perf_counter() - t0
            assert done["state"] == "done" and done["failed"] == 0, done
            out[name] = {"seconds": round(dt, 2), "docs_per_s": round(done["documents"] / dt, 2),
                         "documents": done["documents"], "chunks": done["chunks"]}
            log(f"  {name}: {done['documents']} documents in {dt:.1f} s = {done['documents'] / dt:.1f} docs/s")
        out["ratio"] = round(out["ours"]["docs_per_s"] / out["baseline"]["docs_per_s"], 2)
        if stages:
            out["stages"] = await per_stage(engine, url, n)
    return out


async def per_stage(engine: Any, url: str, n: int) -> dict[str, float]:
    site = Site(n)  # same generator and seed as the served one: the same URLs
    urls = site.urls(url)
    tenant, res = "bench-stages", {}
    t0 = time.perf_counter()
    got, _, failed = await pipeline.fetch(engine, tenant, [Item("url", u) for u in urls])
    res["fetch"] = len(urls) / (time.perf_counter() - t0)
    assert not failed, failed
    t0 = time.perf_counter()
    normalized, bad = pipeline.normalize_all(engine, got)
    res["normalize"] = len(got) / (time.perf_counter() - t0)
    assert not bad, bad
    ids: list[str] = []
    t0 = time.perf_counter()
    for i in range(0, len(normalized), 32):
        ids += [o.container_id for o in await pipeline.containerize(engine, tenant, normalized[i : i + 32])]
    res["containerize"] = len(normalized) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(0, len(ids), 32):
        await pipeline.index(engine, tenant, ids[i : i + 32])
    res["index"] = len(ids) / (time.perf_counter() - t0)
    for k, v in res.items():
        log(f"  stage {k}: {v:.1f} docs/s")
    return {k: round(v, 1) for k, v in res.items()}


# --- 3: search at scale --------------------------------------------------------------------------

def vocabulary(n: int, seed: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa", "do", "fe", "gu", "ha", "ji", "ko"]
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syll, size=int(rng.integers(2, 5)))))
    return sorted(words)


async def load_containers(runtime: Any, tenant: str, start: int, stop: int, vocab: list[str], dim: int) -> None:
    rng = np.random.default_rng(start)
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    db = runtime.ctx.db
    for lo in range(start, stop, 1000):
        hi = min(stop, lo + 1000)
        ids = [str(uuid.uuid4()) for _ in range(lo, hi)]
        words = rng.choice(len(vocab), size=(len(ids), 30), p=zipf)  # one draw for the page (a draw per row redoes the cumsum)
        texts = [" ".join(vocab[w] for w in row) for row in words]
        async with db.tenant(tenant) as s:
            await s.execute(insert(Container), [
                {"id": cid, "tenant_id": tenant, "source": f"bench:{lo + j}", "source_kind": "item", "title": f"c{lo + j}",
                 "content_type": "text", "language": "und", "status": "ok", "error": "", "current_sha": f"{lo + j:064d}",
                 "current_version": 1, "indexed_sha": f"{lo + j:064d}", "etag": "", "last_modified": "", "lineage": {},
                 "meta": {}, "policy": {}, "capabilities": ["container_get", "container_search"]}
                for j, cid in enumerate(ids)])
            await s.execute(insert(ContainerVersion), [
                {"id": str(uuid.uuid4()), "tenant_id": tenant, "container_id": cid, "number": 1, "sha256": f"{lo + j:064d}",
                 "raw_sha256": "", "size": len(texts[j]), "content_type": "text", "language": "und", "title": "",
                 "blob_key": "", "text": texts[j], "lineage": {}} for j, cid in enumerate(ids)])
        vecs = rng.standard_normal((len(ids), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        # Chunks straight into the search server's table (one per container, as index_documents
        # would write them); a tool call carrying 1,000 x 384 floats as JSON costs more than the
        # search being measured. The version bump makes the server rebuild its index from rows.
        async with db.tenant(tenant) as s:
            coll = (await s.execute(select(SearchCollection).where(col(SearchCollection.name) == "content"))).scalar_one()
            first = coll.next_vid
            await s.execute(insert(SearchChunk), [
                {"id": str(uuid.uuid4()), "tenant_id": tenant, "collection_id": coll.id, "doc_id": cid, "chunk": 0,
                 "vid": first + j, "text": texts[j], "meta": {"container": cid, "version": 1}, "tags": ["read:*"],
                 "vector": vecs[j].tobytes()} for j, cid in enumerate(ids)])
            coll.next_vid, coll.version = first + len(ids), coll.version + 1
            s.add(coll)


async def search_scale(settings: Settings, sizes: list[int], queries: int) -> list[dict[str, Any]]:
    await prepare_db(settings)
    vocab = vocabulary(20_000)
    rng = np.random.default_rng(11)
    qs = [" ".join(rng.choice(vocab[:2000], size=3)) for _ in range(queries)]
    rows, tenant, loaded = [], "bench-search", 0
    async with running_router(settings, specs()) as (runtime, _):
        await call(runtime, tenant, "content__ingest_item", source="seed", text="seed container for the collection")
        dim = int((await call(runtime, tenant, "search__collection_stats", collection="content"))["dimension"])
        for size in sizes:
            t0 = time.perf_counter()
            await load_containers(runtime, tenant, loaded, size, vocab, dim)
            loaded = size
            load_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await call(runtime, tenant, "content__container_search", query=qs[0], k=10)  # builds the index
            build_s = time.perf_counter() - t0
            lat: dict[str, list[float]] = {"container_search": [], "search": []}
            cpu: dict[str, float] = {"container_search": 0.0, "search": 0.0}
            for q in qs:  # alternate, so both see the same machine load
                c0, t0 = time.process_time(), time.perf_counter()
                await call(runtime, tenant, "content__container_search", query=q, k=10)
                lat["container_search"].append((time.perf_counter() - t0) * 1000)
                cpu["container_search"] += time.process_time() - c0
                c0, t0 = time.process_time(), time.perf_counter()
                await call(runtime, "bench-search", "search__search", collection="content", query=q, k=30)
                lat["search"].append((time.perf_counter() - t0) * 1000)
                cpu["search"] += time.process_time() - c0
            row = {"containers": size, "load_s": round(load_s, 1), "first_search_s": round(build_s, 1),
                   **{f"{k}_p50_ms": round(pct(v, 50), 2) for k, v in lat.items()},
                   **{f"{k}_p95_ms": round(pct(v, 95), 2) for k, v in lat.items()},
                   # CPU per query (all threads of this process): what the load of other processes does not inflate
                   **{f"{k}_cpu_ms": round(v / len(qs) * 1000, 2) for k, v in cpu.items()},
                   "load_avg": round(os.getloadavg()[0], 2)}
            row["ratio_p95"] = round(row["container_search_p95_ms"] / row["search_p95_ms"], 2)
            log(f"  {size} containers: container_search p50 {row['container_search_p50_ms']} ms, "
                f"p95 {row['container_search_p95_ms']} ms (search p95 {row['search_p95_ms']} ms)")
            rows.append(row)
    return rows


async def main(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    for name in ("mcp", "httpx", "bm25s"):
        logging.getLogger(name).setLevel(logging.WARNING)
    result: dict[str, Any] = {
        "benchmark": "ingest", "date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "load_avg_start": round(os.getloadavg()[0], 2), "docs": args.docs, "embedder": args.embedder,
    }
    site = SiteProcess(max(args.docs, 1))
    base = {"embedder": args.embedder, "fetch_allow": ["127.0.0.1/32"], "storage_sweep_interval_s": 0, "rate_limit": 0}
    try:
        with tempfile.TemporaryDirectory(prefix="vsm-bench-ingest-") as tmp:
            if args.docs:
                log(f"end to end on SQLite ({args.docs} documents, embedder {args.embedder})")
                result["sqlite"] = await end_to_end(load_settings(home=Path(tmp) / "sqlite", **base), site.url, args.docs, True)
            if args.docs and args.postgres:
                log("end to end on PostgreSQL")
                name, owner, app = await create_database()
                try:
                    pg = load_settings(home=Path(tmp) / "pg", database_url=app, migration_database_url=owner, **base)
                    result["postgres"] = await end_to_end(pg, site.url, args.docs, False)
                finally:
                    await drop_database(name)
            if args.search_sizes:
                log(f"search over {args.search_sizes} containers")
                sizes = [int(s) for s in args.search_sizes.split(",")]
                result["search"] = await search_scale(load_settings(home=Path(tmp) / "search", **base), sizes, args.queries)
    finally:
        site.close()
    result["load_avg_end"] = round(os.getloadavg()[0], 2)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=300, help="site size; 0 = skip the end-to-end part")
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--search-sizes", default="10000,30000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--no-postgres", dest="postgres", action="store_false")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    res = asyncio.run(main(a))
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))
