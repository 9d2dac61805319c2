"""Live stream relay latency: source event → ``/v1/events`` delivery, p50/p99.

A local source on 127.0.0.1 — SSE (starlette on uvicorn) or WebSocket (the ``websockets`` server) —
emits ``--n`` items ``--interval-ms`` apart, each stamped with its send time; one router app
(router.app.create_app, the ``relay`` entry of manifests/default.yaml) relays them
(``relay_start``: key phrases per item through the router's tool pipeline, no model; the
connection SSRF-checked and pinned) and a client subscribed to ``/v1/events?topics=relay.bench.*``
stamps each on arrival. All in one process, one clock. Baseline: the same source read directly by
a client of its kind (httpx SSE / websockets), so what the relay adds is the difference.

    python benchmarks/relay_latency.py [--source sse|ws|both] [--n 300] [--interval-ms 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from contextlib import asynccontextmanager  # noqa: E402

import httpx  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402
from websockets.asyncio.server import ServerConnection  # noqa: E402
from websockets.asyncio.server import serve as ws_serve  # noqa: E402

from router.app import create_app  # noqa: E402
from router.upstreams.manifest import UpstreamSpec  # noqa: E402
from tests.integration.edge.conftest import SseReader, eventually, serve  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402
from vsm_mcp.context import ServerContext  # noqa: E402
from vsm_mcp.tenants import create_api_key, create_tenant  # noqa: E402

logging.getLogger("websockets.server").setLevel(logging.WARNING)  # not a line per connection
RELAY = UpstreamSpec(name="relay", kind="builtin", target="servers.relay.server:build")
HEADLINES = ["Central bank raises interest rates", "Storm closes mountain passes", "New solar subsidies announced",
             "Rail strike delays commuters", "Chip maker opens new factory"]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))], 3)


def source(n: int, interval_s: float, go: asyncio.Event) -> Starlette:
    async def events(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            await go.wait()
            for i in range(n):
                item = {"title": HEADLINES[i % len(HEADLINES)], "seq": i, "sent": time.time()}
                yield f"id: {i}\ndata: {json.dumps(item)}\n\n".encode()
                await asyncio.sleep(interval_s)
            await asyncio.sleep(3600)  # stay open like a live source
        return StreamingResponse(gen(), media_type="text/event-stream")

    return Starlette(routes=[Route("/events", events)])


@asynccontextmanager
async def ws_source(n: int, interval_s: float, go: asyncio.Event) -> AsyncIterator[str]:
    async def handler(ws: ServerConnection) -> None:
        await go.wait()
        for i in range(n):
            await ws.send(json.dumps({"title": HEADLINES[i % len(HEADLINES)], "seq": i, "sent": time.time()}))
            await asyncio.sleep(interval_s)
        await ws.wait_closed()  # stay open like a live source

    async with ws_serve(handler, "127.0.0.1", 0) as server:
        yield f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/feed"


@asynccontextmanager
async def any_source(kind: str, n: int, interval_s: float, go: asyncio.Event) -> AsyncIterator[str]:
    if kind == "ws":
        async with ws_source(n, interval_s, go) as url:
            yield url
    else:
        async with serve(source(n, interval_s, go)) as base:
            yield f"{base}/events"


async def direct(kind: str, n: int, interval_s: float) -> list[float]:
    go = asyncio.Event()
    lat: list[float] = []
    async with any_source(kind, n, interval_s, go) as url:
        if kind == "ws":
            async with ws_connect(url, proxy=None) as ws:
                go.set()
                for _ in range(n):
                    message = await ws.recv()
                    lat.append((time.time() - json.loads(message)["sent"]) * 1000)
            return lat
        async with httpx.AsyncClient(timeout=None) as h, h.stream("GET", url) as resp:
            reader = SseReader(resp)
            go.set()
            for _ in range(n):
                ev = await reader.next_event()
                lat.append((time.time() - json.loads(ev.data)["sent"]) * 1000)
    return lat


async def relayed(kind: str, n: int, interval_s: float, home: Path) -> list[float]:
    settings = load_settings(home=home, allow_anonymous=False, fetch_allow=["127.0.0.1/32"], rate_limit=0)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    await create_tenant(ctx.db, "bench")
    key, _ = await create_api_key(ctx.db, "bench", ["events:read", "events:write", "tools:call"])
    auth = {"Authorization": f"Bearer {key}"}
    go = asyncio.Event()
    app = create_app(settings, ctx, specs=[RELAY])
    lat: list[float] = []
    async with any_source(kind, n, interval_s, go) as src, serve(app) as url, \
            httpx.AsyncClient(base_url=url, timeout=None) as client:
        await eventually(lambda: app.state.runtime.readiness()["ok"], what="the relay upstream")
        principal = await app.state.authenticator.authenticate(auth["Authorization"])
        async with client.stream("GET", "/v1/events", params={"topics": "relay.bench.*"}, headers=auth) as resp:
            reader = SseReader(resp)
            res = await app.state.dispatcher.call_tool(principal, "relay__relay_start",
                                                       {"stream": "bench", "url": src})
            if res.is_error:
                raise SystemExit(f"relay_start failed: {res.content}")
            go.set()
            for _ in range(n):
                ev = await reader.next_event(timeout=60)
                item = json.loads(json.loads(ev.data)["data"]["data"])
                lat.append((time.time() - item["sent"]) * 1000)
            await app.state.dispatcher.call_tool(principal, "relay__relay_stop", {"stream": "bench"})
    return lat


async def run(kind: str, n: int, interval_ms: float, home: Path) -> dict[str, Any]:
    base = await direct(kind, n, interval_ms / 1000)
    ours = await relayed(kind, n, interval_ms / 1000, home)
    return {"source": kind, "n": n, "interval_ms": interval_ms,
            "relay_p50_ms": pct(ours, 50), "relay_p99_ms": pct(ours, 99),
            "direct_p50_ms": pct(base, 50), "direct_p99_ms": pct(base, 99),
            "added_p50_ms": round(pct(ours, 50) - pct(base, 50), 3),
            "ratio_p50": round(pct(ours, 50) / max(pct(base, 50), 1e-3), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", choices=["sse", "ws", "both"], default="both")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--interval-ms", type=float, default=20.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    kinds = ["sse", "ws"] if args.source == "both" else [args.source]
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run(kind, args.n, args.interval_ms, Path(tmp)))
        if not args.json:
            for k, v in result.items():
                print(f"{k:>16}: {v}")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
