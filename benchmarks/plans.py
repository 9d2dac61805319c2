"""Durable plan execution vs a plain in-memory asyncio scheduler, on the same 1,000-step DAG of
real tool calls (through the dispatcher to an in-process upstream).

The DAG: ``--depth`` layers of ``--width`` steps; every step after the first layer runs after two
(seeded, random) steps of the layer before. Every step calls ``bench__echo`` through
``Dispatcher.call_tool`` as the same principal, at most ``VSM_PLAN_TENANT_PARALLELISM`` (16) at
a time on both sides.

* ``memory``: asyncio tasks, one per step, awaiting their dependencies' tasks, then calling — no
  durability, the baseline; measured beside each durable side, rounds interleaved.
* ``sqlite`` / ``postgres``: the planner — plan_create, plan_approve, then from plan_run until the
  plan succeeded (the DBOS workflow, its queue hand-off, the plan_steps rows in group commits,
  events). PostgreSQL: a fresh database on 127.0.0.1:5432, the app connecting as ``vsm_app``.

Reported per side: steps/s over the run, and the per-step scheduling latency (from the end of
the step's last dependency to the start of its tool call; for the first layer, from the start)
p50/p99. The cost of durability = durable seconds / memory seconds (budget ≤ 3×, DESIGN.md).

    python benchmarks/plans.py [--json] [--width 50 --depth 20] [--rounds 2] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PARALLELISM = 16


def build_builtin(ctx: object) -> Any:
    """The upstream: one cheap tool (the cost measured is the plumbing, not the work)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.types import ToolAnnotations

    server = MCPServer("bench")

    @server.tool(annotations=ToolAnnotations(idempotent_hint=True))
    def echo(i: int) -> dict[str, int]:
        """Echo the step number."""
        return {"i": i}

    return server


def dag(width: int, depth: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    steps: list[dict[str, Any]] = []
    for layer in range(depth):
        for k in range(width):
            after = sorted({f"s{layer - 1}_{rng.randrange(width)}" for _ in range(2)}) if layer else []
            steps.append({"id": f"s{layer}_{k}", "tool": "bench__echo", "arguments": {"i": layer * width + k},
                          "after": after})
    return steps


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


def summary(n: int, seconds: float, lat: list[float]) -> dict[str, Any]:
    return {"seconds": round(seconds, 3), "steps_per_s": round(n / seconds, 1),
            "sched_p50_ms": round(pct(lat, 50) * 1000, 2), "sched_p99_ms": round(pct(lat, 99) * 1000, 2)}


async def run_memory(runtime: Any, principal: Any, steps: list[dict[str, Any]]) -> dict[str, Any]:
    sem = asyncio.Semaphore(PARALLELISM)
    ends: dict[str, float] = {}
    lat: list[float] = []
    tasks: dict[str, asyncio.Task[None]] = {}
    t0 = time.perf_counter()

    async def one(step: dict[str, Any]) -> None:
        for d in step["after"]:
            await tasks[d]
        ready = max((ends[d] for d in step["after"]), default=t0)
        async with sem:
            lat.append(time.perf_counter() - ready)
            res = await runtime.dispatcher.call_tool(principal, step["tool"], step["arguments"])
            assert not res.is_error
        ends[step["id"]] = time.perf_counter()

    for s in steps:
        tasks[s["id"]] = asyncio.create_task(one(s))
    await asyncio.gather(*tasks.values())
    return summary(len(steps), time.perf_counter() - t0, lat)


async def run_durable(runtime: Any, principal: Any, steps: list[dict[str, Any]]) -> dict[str, Any]:
    async def call(tool: str, **args: Any) -> dict[str, Any]:
        res = await runtime.dispatcher.call_tool(principal, tool, args)
        assert not res.is_error, res.content
        return dict(res.structured_content or {})

    # Only the plan's end is watched live (a subscriber to every step event would be the
    # benchmark's own load); step times come from plan_status afterwards (the rows' started_at
    # — written as the step starts, just before its call — and ended_at).
    sub = await runtime.ctx.bus.subscribe(["plan.#"], maxsize=10_000)
    c0 = time.perf_counter()
    plan_id = (await call("planner__plan_create", name="bench", steps=steps))["plan_id"]
    await call("planner__plan_approve", plan_id=plan_id)
    create_s = time.perf_counter() - c0
    t0 = time.time()
    await call("planner__plan_run", plan_id=plan_id)
    async for ev in sub:
        if ev.data.get("plan_id") == plan_id and ev.type in ("plan.succeeded", "plan.failed"):
            assert ev.type == "plan.succeeded", ev.data
            t1 = ev.time.timestamp()
            break
    await sub.aclose()
    rows = {s["id"]: s for s in (await call("planner__plan_status", plan_id=plan_id))["steps"]}

    lat = [_ts(rows[s["id"]]["started_at"]) - max((_ts(rows[d]["ended_at"]) for d in s["after"]), default=t0)
           for s in steps]
    out = summary(len(steps), t1 - t0, lat)
    out["create_and_approve_s"] = round(create_s, 3)
    return out


def _ts(text: str) -> float:
    """An ISO time from plan_status as epoch seconds (SQLite hands back naive UTC)."""
    from datetime import UTC, datetime

    t = datetime.fromisoformat(text)
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


async def side(settings: Any, steps: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    from router.local import running_router
    from router.upstreams.manifest import parse_manifest

    specs = parse_manifest({"upstreams": [
        {"name": "planner", "kind": "builtin", "target": "servers.planner.server:build"},
        {"name": "bench", "kind": "builtin", "target": "benchmarks.plans:build_builtin"},
    ]}, "bench.yaml")
    memory: list[dict[str, Any]] = []
    durable: list[dict[str, Any]] = []
    async with running_router(settings, specs, durable_role="bench") as (runtime, principal):
        await run_memory(runtime, principal, steps[:100])  # warm-up: sessions, schema caches
        for _ in range(rounds):  # interleaved, so a load spike hits both sides
            memory.append(await run_memory(runtime, principal, steps))
            durable.append(await run_durable(runtime, principal, steps))
    best = min(durable, key=lambda r: r["seconds"])
    base = min(memory, key=lambda r: r["seconds"])
    # Each side against the baseline measured beside it (same process, interleaved rounds).
    return {"durable": {**best, "ratio": round(best["seconds"] / base["seconds"], 2)}, "durable_rounds": durable,
            "memory": base, "memory_rounds": memory}


async def default_tenant(owner_url: str) -> None:
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import ensure_tenant

    db = Database(load_settings(database_url=owner_url))
    try:
        await ensure_tenant(db, "default")
    finally:
        await db.aclose()


def main() -> None:
    import logging

    from benchmarks.scratch_pg import create_database, drop_database
    from vsm_mcp import migrate
    from vsm_mcp.config import load_settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--width", type=int, default=50)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    logging.getLogger("mcp").setLevel(logging.WARNING)
    steps = dag(args.width, args.depth, args.seed)
    common = {"rate_limit": 0, "embedder": "hash", "plan_tenant_parallelism": PARALLELISM, "plan_max_steps": len(steps)}
    results: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average": os.getloadavg()[0], "steps": len(steps), "width": args.width, "depth": args.depth,
        "parallelism": PARALLELISM,
    }
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings(home=Path(home) / ".vsm", **common)
        migrate.upgrade(settings.migration_database_url)
        sqlite = asyncio.run(side(settings, steps, args.rounds))
    results["sqlite"] = {"memory": sqlite["memory"], "durable": sqlite["durable"],
                         "rounds": {"memory": sqlite["memory_rounds"], "durable": sqlite["durable_rounds"]}}
    if not args.no_postgres:
        name, owner, app = asyncio.run(create_database())
        try:
            migrate.upgrade(owner)
            asyncio.run(default_tenant(owner))
            with tempfile.TemporaryDirectory() as home:
                settings = load_settings(home=Path(home) / ".vsm", database_url=app, migration_database_url=owner, **common)
                pg = asyncio.run(side(settings, steps, args.rounds))
            results["postgres"] = {"memory": pg["memory"], "durable": pg["durable"],
                                   "rounds": {"memory": pg["memory_rounds"], "durable": pg["durable_rounds"]}}
        finally:
            asyncio.run(drop_database(name))
    results["ratio"] = {k: results[k]["durable"]["ratio"] for k in ("sqlite", "postgres") if k in results}
    results["budget_met"] = all(r <= 3.0 for r in results["ratio"].values())
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for k in ("sqlite", "postgres"):
        if k in results:
            for kind in ("memory", "durable"):
                r = results[k][kind]
                print(f"{k:>8} {kind:>7}: {r['steps_per_s']:>8} steps/s  {r['seconds']:>7}s  "
                      f"sched p50 {r['sched_p50_ms']} ms  p99 {r['sched_p99_ms']} ms")
    print("ratio (durable / memory, same run):", results["ratio"], "budget ≤ 3x met:", results["budget_met"])


if __name__ == "__main__":
    main()
