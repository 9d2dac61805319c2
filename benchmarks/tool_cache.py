"""Tool-result cache: a cache hit vs the uncached call to the upstream, through the dispatcher.

One router runtime (in-process, no HTTP) mounts a stdio upstream
(tests/integration/router/upstream_server.py) whose ``echo`` tool is readOnly+idempotent. Calls
alternate, call by call, between

* ``uncached`` — a second ``Dispatcher`` over the same catalog and upstream sessions, without a
  cache: the whole pipeline plus the upstream round trip (JSON-RPC over the child's stdio);
* ``hit`` — the runtime's dispatcher with the cache, same arguments every time (memory hit);
* ``disk hit`` / ``redis hit`` — the same with the in-memory level turned off, so each hit is
  read from diskcache (or Redis with ``--redis``) and decoded.

    python benchmarks/tool_cache.py [--json] [--n 3000] [--redis redis://127.0.0.1:6379/15]

Goal (DESIGN.md): hit ≤ 0.1× the upstream call.
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

import anyio  # noqa: E402

from router.dispatch import Dispatcher  # noqa: E402
from router.runtime import RouterRuntime  # noqa: E402
from router.tool_cache import DiskBackend, RedisBackend, ToolCache  # noqa: E402
from router.upstreams.manifest import parse_manifest  # noqa: E402
from vsm_mcp import migrate  # noqa: E402
from vsm_mcp.auth import Principal  # noqa: E402
from vsm_mcp.config import load_settings  # noqa: E402
from vsm_mcp.context import ServerContext  # noqa: E402
from vsm_mcp.tenants import ensure_tenant  # noqa: E402

UPSTREAM = str(Path(__file__).resolve().parent.parent / "tests" / "integration" / "router" / "upstream_server.py")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


async def measure(n: int, redis_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(home=Path(tmp) / ".vsm", rate_limit=0, tool_cache=True)
        await anyio.to_thread.run_sync(migrate.upgrade, s.migration_database_url)
        ctx = ServerContext.create(s)
        tenant = await ensure_tenant(ctx.db, "bench")
        p = Principal(tenant_id=tenant.id, scopes=frozenset({"*"}), key_id="k")
        entries = [{"name": "up", "kind": "stdio", "command": sys.executable,
                    "args": [UPSTREAM, "--name", "up", "--transport", "stdio"]}]
        rt = RouterRuntime(ctx, parse_manifest({"upstreams": entries}, "bench.yaml"))
        out: dict[str, Any] = {}
        async with anyio.create_task_group() as tg:
            await rt.start(tg, wait=60)
            plain = Dispatcher(rt.catalog, rt.upstreams)  # same sessions, no cache
            levels: dict[str, Dispatcher] = {"hit": rt.dispatcher}
            disk = ToolCache(DiskBackend(Path(tmp) / "disk-only", 64 * 1024 * 1024), lambda _s, _t: 600.0,
                             l1_entries=0)
            levels["disk_hit"] = Dispatcher(rt.catalog, rt.upstreams, cache=disk)
            redis_cache = None
            if redis_url:
                redis_cache = ToolCache(RedisBackend(redis_url), lambda _s, _t: 600.0, l1_entries=0)
                levels["redis_hit"] = Dispatcher(rt.catalog, rt.upstreams, cache=redis_cache)
            args = {"text": "hello"}
            for d in (plain, *levels.values()):  # warm: sessions, validators, the first (missing) call
                for _ in range(50):
                    await d.call_tool(p, "up__echo", args)
            await asyncio.sleep(0.2)  # background stores done
            lat: dict[str, list[float]] = {"uncached": [], **{k: [] for k in levels}}
            for i in range(n):
                order = [("uncached", plain), *levels.items()]
                if i % 2:
                    order.reverse()
                for name, d in order:
                    t0 = time.perf_counter()
                    r = await d.call_tool(p, "up__echo", args)
                    lat[name].append(time.perf_counter() - t0)
                    assert not r.is_error
            base = pct(lat["uncached"], 50)
            for name, xs in lat.items():
                out[name] = {"p50_us": round(pct(xs, 50) * 1e6, 1), "p99_us": round(pct(xs, 99) * 1e6, 1),
                             "ratio_p50_vs_uncached": round(pct(xs, 50) / base, 4)}
            out["cache_stats"] = rt.tool_cache.stats() if rt.tool_cache else {}
            await disk.aclose()
            if redis_cache is not None:
                await redis_cache.aclose()
            await rt.aclose()
            tg.cancel_scope.cancel()
        await ctx.aclose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--redis", default=os.environ.get("VSM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
                    help="Redis URL for the redis_hit level ('' to skip)")
    args = ap.parse_args()
    res = asyncio.run(measure(args.n, args.redis))
    res = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
           "n": args.n, **res, "goal_hit_le_0.1x": res["hit"]["ratio_p50_vs_uncached"] <= 0.1}
    if args.json:
        print(json.dumps(res, indent=2))
        return
    for k in ("uncached", "hit", "disk_hit", "redis_hit"):
        if k in res:
            print(f"{k:>9}: p50 {res[k]['p50_us']:>8} µs  p99 {res[k]['p99_us']:>8} µs  x{res[k]['ratio_p50_vs_uncached']}")


if __name__ == "__main__":
    main()
