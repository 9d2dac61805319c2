"""Connector sync throughput, items/s per connector through the whole pipeline (issue 23).

    python benchmarks/connectors.py [--items 500] [--types wordpress,contentful,gdrive,ghost,…] [--json]

For each connector type a local API following the product's documented shapes
(``tests/fakes/cms_apis.py``) holds ``--items`` items and is served on 127.0.0.1 by uvicorn in
this process. *Ours*: a full initial ``connector_sync`` through the in-process router
(cms/drive, content, search, storage from manifests/default.yaml) with the durable spine (DBOS on
SQLite): fetch page → ``content__ingest_items`` (normalize, containerize, index with the
``hash:64`` embedder) → cursor saved, one step per page of 100. *Baseline*: the same pages fetched
by the same connector code through the same guarded client, nothing ingested — the source's own
cost, so ``ratio`` = what the pipeline costs per item on top of fetching. Then 10 edits + 3
deletions and the incremental sync's wall time. The machine is shared (2 cores): load average
printed beside each row. The last line is a JSON object (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.asgi_server import serve_asgi  # noqa: E402
from tests.fakes.cms_apis import (  # noqa: E402
    FakeContentful,
    FakeDrive,
    FakeDrupal,
    FakeGhost,
    FakeSanity,
    FakeStrapi,
    FakeWordPress,
)
from tests.integration.connectors.conftest import connector_settings, open_stack  # noqa: E402
from vsm_mcp.connectors import sync  # noqa: E402
from vsm_mcp.connectors.base import Source  # noqa: E402
from vsm_mcp.connectors.http import GuardedHttp  # noqa: E402

FAKES: dict[str, Any] = {"wordpress": FakeWordPress, "contentful": FakeContentful, "gdrive": FakeDrive,
                         "ghost": FakeGhost, "strapi": FakeStrapi, "drupal": FakeDrupal, "sanity": FakeSanity}


async def fetch_only(kind: str, fake: Any, base: str) -> tuple[int, float]:
    """Items/s of the connector's pages alone (no ingest): the baseline."""
    import servers.cms.server  # noqa: F401  (registers the cms types)
    import servers.drive.server  # noqa: F401

    args = fake.connector_args(base)
    creds = {k: os.environ[v[2:-1]] for k, v in args.get("credentials", {}).items()}
    source = Source("bench", kind, base, creds, args.get("options", {}), 100)
    http = GuardedHttp(["127.0.0.1/32"])
    cursor: dict[str, Any] | None = None
    items, started = 0, time.perf_counter()
    try:
        while True:
            page = await sync.TYPES[kind].page(http, source, cursor)
            items += sum(not c.deleted for c in page.changes)
            cursor = page.cursor
            if page.done:
                break
    finally:
        await http.aclose()
    return items, time.perf_counter() - started


async def one(kind: str, n: int) -> dict[str, Any]:
    fake = FAKES[kind]()
    ids = fake.seed(n)
    os.environ.update(fake.credentials_env())
    server = fake.server
    with tempfile.TemporaryDirectory() as tmp:
        async with serve_asgi(fake.app()) as base:
            fetched, base_s = await fetch_only(kind, fake, base)
            async for stack in open_stack(connector_settings(Path(tmp))):
                await stack.call(f"{server}__connector_add", name="b", **fake.connector_args(base))
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                first = await stack.sync(server, "b")
                full_s = time.perf_counter() - t0
                fake.edit(ids[10:20])
                fake.delete(ids[100:103])
                t1 = time.perf_counter()
                second = await stack.sync(server, "b")
                incr_s = time.perf_counter() - t1
    assert first["counts"]["created"] == n and second["counts"]["created"] == 10, (first, second)
    return {
        "connector": kind, "items": n, "pages": first["counts"]["pages"],
        "ours_items_per_s": round(n / full_s, 1), "ours_s": round(full_s, 2),
        "baseline_fetch_only_items_per_s": round(fetched / base_s, 1), "baseline_s": round(base_s, 3),
        "ratio_ours_over_baseline": round((n / full_s) / (fetched / base_s), 4),
        "incremental_10_edits_3_deletions_s": round(incr_s, 2), "incremental_counts": second["counts"],
        "load_avg_1m": round(load0, 2),
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--types", default=",".join(FAKES))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = [await one(kind, a.items) for kind in a.types.split(",")]
    if not a.json:
        for r in rows:
            print(f"{r['connector']:<11} {r['items']} items / {r['pages']} pages: {r['ours_items_per_s']:>7} items/s "
                  f"through the pipeline ({r['ours_s']} s); fetch only {r['baseline_fetch_only_items_per_s']} items/s; "
                  f"incremental (10 edits, 3 deletions) {r['incremental_10_edits_3_deletions_s']} s; load {r['load_avg_1m']}")
    print(json.dumps({"benchmark": "connectors", "machine": f"{platform.machine()} {os.cpu_count()} cpus",
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}))


if __name__ == "__main__":
    asyncio.run(main())
