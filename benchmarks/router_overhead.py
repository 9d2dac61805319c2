"""Router overhead: the same tool called directly on an HTTP upstream vs through the router's /mcp.

One upstream MCP server (tests/integration/router/upstream_server.py, streamable HTTP) and one
`vsm-mcp serve` mounting it from a manifest run as separate processes on 127.0.0.1. The same
client code (mcp SDK `Client`, one session per side) calls `echo` directly and as `up__echo`
through the router. Sequential latencies are interleaved call by call in alternating order, so
machine noise hits both sides alike; throughput is measured with `--concurrency` callers on one
session per side, rounds alternating. The full pipeline runs (auth, grants, validation, rate
limit with a limit high enough not to trigger, episodes).

    python benchmarks/router_overhead.py [--n 400] [--concurrency 32] [--calls 800] [--client-mode both]
                                         [--audit-journal both] [--json]

Both protocol eras by default, one after the other against the same two processes: the top-level
figures are the mcp SDK's default client (``mode="auto"``: 2026-07-28, sessionless JSON), and
``"legacy"`` holds the same figures for handshake-era (2025-11-25) clients.

Goal (DESIGN.md): ratio_p50 <= 1.25 and ratio_rps >= 0.8, in both eras.

``--audit-journal both`` (the default) runs a second router with ``VSM_AUDIT_JOURNAL=false`` beside
the first and interleaves it into the same loops, so the episode journal's cost (a ``write(2)``
per call before the answer, vsm_mcp/journal.py) is measured side by side: ``nojournal_*`` figures
and ``journal_added_p50_ms``. The top-level router figures are the default (journal on).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.ports import free_port  # noqa: E402
from tests.process_group import process_group  # noqa: E402

UPSTREAM = ROOT / "tests" / "integration" / "router" / "upstream_server.py"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def process(cmd: list[str], env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return process_group(cmd, grace=10, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as h:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                r = await h.get(url)
                if r.status_code < 500:
                    return
            await anyio.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f}s")


async def throughput(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> float:
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return calls / (time.perf_counter() - t0)


async def measure(
    direct_url: str, router_url: str, n: int, calls: int, concurrency: int, mode: str = "legacy",
    nojournal_url: str | None = None,
) -> dict[str, Any]:
    async with contextlib.AsyncExitStack() as stack:
        direct = await stack.enter_async_context(Client(direct_url, mode=mode))  # type: ignore[arg-type]
        sides: list[tuple[str, Callable[[], Awaitable[Any]]]] = []

        def side(client: Client, tool: str) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                res = await client.call_tool(tool, {"text": "hello"})
                assert not res.is_error, res
                return res
            return call

        sides.append(("direct", side(direct, "echo")))
        routed = await stack.enter_async_context(Client(router_url, mode=mode))  # type: ignore[arg-type]
        sides.append(("router", side(routed, "up__echo")))
        if nojournal_url:
            plain = await stack.enter_async_context(Client(nojournal_url, mode=mode))  # type: ignore[arg-type]
            sides.append(("nojournal", side(plain, "up__echo")))
        for _ in range(30):  # warm-up: connections, caches, validators
            for _name, fn in sides:
                await fn()
        lat: dict[str, list[float]] = {name: [] for name, _ in sides}
        for i in range(n):
            k = i % len(sides)  # rotate who goes first, so machine noise hits every side alike
            for name, fn in sides[k:] + sides[:k]:
                t0 = time.perf_counter()
                await fn()
                lat[name].append((time.perf_counter() - t0) * 1000)
        rps: dict[str, list[float]] = {name: [] for name, _ in sides}
        for rnd in range(4):
            k = rnd % len(sides)
            for name, fn in sides[k:] + sides[:k]:
                rps[name].append(await throughput(fn, calls, concurrency))
    direct_p50, router_p50 = pct(lat["direct"], 50), pct(lat["router"], 50)
    direct_rps, router_rps = max(rps["direct"]), max(rps["router"])
    extra: dict[str, Any] = {}
    if nojournal_url:
        plain_p50, plain_rps = pct(lat["nojournal"], 50), max(rps["nojournal"])
        extra = {
            "nojournal_p50_ms": round(plain_p50, 3),
            "nojournal_rps": round(plain_rps, 1),
            "journal_added_p50_ms": round(router_p50 - plain_p50, 3),
            "journal_ratio_p50": round(router_p50 / plain_p50, 3),
            "journal_ratio_rps": round(router_rps / plain_rps, 3),
        }
    return {
        **extra,
        "n": n,
        "client_mode": mode,
        "concurrency": concurrency,
        "direct_p50_ms": round(direct_p50, 3),
        "router_p50_ms": round(router_p50, 3),
        "ratio_p50": round(router_p50 / direct_p50, 3),
        "direct_p99_ms": round(pct(lat["direct"], 99), 3),
        "router_p99_ms": round(pct(lat["router"], 99), 3),
        "added_p50_ms": round(router_p50 - direct_p50, 3),
        "direct_rps": round(direct_rps, 1),
        "router_rps": round(router_rps, 1),
        "ratio_rps": round(router_rps / direct_rps, 3),
    }


async def journal_micro(home: Path, n: int = 20_000, batch: int = 1_000) -> dict[str, Any]:
    """The journal's cost where it is paid: ``Recorder.record`` on the caller's path, with and
    without the journal, in alternating batches (end-to-end p50s drown a few µs in noise on a
    loaded machine). Includes building the episode row and its argument digest, which both sides do."""
    from router.recorder import Recorder
    from vsm_mcp import migrate
    from vsm_mcp.auth import Principal
    from vsm_mcp.config import load_settings
    from vsm_mcp.db import Database
    from vsm_mcp.hooks import CallInfo, CallOutcome

    settings = load_settings(home=home)
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    db = Database(settings)
    who = Principal(tenant_id="t", scopes=frozenset({"*"}), key_id="k")
    calls = [CallInfo(who, "up__echo", "up", "echo", {"text": f"hello {i}"}, trace_id=f"{i:032x}") for i in range(batch)]
    times: dict[str, list[float]] = {"journal": [], "plain": []}
    try:
        async with anyio.create_task_group() as tg:
            recs = {
                "journal": Recorder(db, [], interval=3600, capacity=10 * n, journal_dir=home / "journal"),
                "plain": Recorder(db, [], interval=3600, capacity=10 * n),
            }
            for rec in recs.values():
                await rec.start(tg)
            for rnd in range(n // batch):
                for name in (("journal", "plain") if rnd % 2 == 0 else ("plain", "journal")):
                    rec = recs[name]
                    t0 = time.perf_counter()
                    for call in calls:
                        rec.record(call, CallOutcome("ok", 1.0))
                    times[name].append((time.perf_counter() - t0) / batch * 1e6)
            for rec in recs.values():
                await rec.aclose()
            tg.cancel_scope.cancel()
    finally:
        await db.aclose()
    journal, plain = pct(times["journal"], 50), pct(times["plain"], 50)
    return {"record_us_journal": round(journal, 2), "record_us_plain": round(plain, 2),
            "journal_added_us": round(journal - plain, 2), "records": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=400, help="sequential calls per side")
    ap.add_argument("--calls", type=int, default=800, help="calls per throughput round")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument(
        "--client-mode", default="both", choices=["both", "legacy", "auto"],
        help="mcp Client mode on both sides: auto (the SDK default, 2026-07-28), legacy (2025-11-25 handshake), or both",
    )
    ap.add_argument(
        "--audit-journal", default="both", choices=["both", "on", "off"],
        help="the router's episode journal: both = a second router without it, interleaved (its cost)",
    )
    ap.add_argument("--journal-micro", action="store_true",
                    help="also time Recorder.record in-process with and without the journal (µs per call)")
    ap.add_argument("--json", action="store_true", help="print only the JSON result line")
    args = ap.parse_args()

    up_port, router_port, plain_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "bench.yaml"
        manifest.write_text(
            f"upstreams:\n  - name: up\n    kind: http\n    url: http://127.0.0.1:{up_port}/mcp\n", encoding="utf-8"
        )
        env = {
            **os.environ,
            "VSM_HOME": str(Path(tmp) / ".vsm"),
            "VSM_MANIFESTS": str(manifest),
            "VSM_PORT": str(router_port),
            "VSM_RATE_LIMIT": "1000000",  # the limiter runs, but never triggers
            "VSM_RATE_BURST": "1000000",
            # echo is readOnly+idempotent: with the tool-result cache on, every routed call after the
            # first would be a cache hit and this would measure the cache, not the routing.
            "VSM_TOOL_CACHE": "false",
            "VSM_TOOL_ROUTE_RATE_PER_S": "1000000",  # the gate's request limit on /mcp: runs, never triggers
            "VSM_TOOL_ROUTE_RATE_BURST": "1000000",
            "VSM_LOG_LEVEL": "warning",
            "VSM_AUDIT_JOURNAL": "false" if args.audit_journal == "off" else "true",
        }
        plain_env = {**env, "VSM_HOME": str(Path(tmp) / ".vsm-plain"), "VSM_PORT": str(plain_port),
                     "VSM_AUDIT_JOURNAL": "false"}
        both = args.audit_journal == "both"
        upstream_cmd = [sys.executable, str(UPSTREAM), "--transport", "http", "--port", str(up_port), "--name", "up"]
        router_cmd = [sys.executable, "-m", "vsm_mcp.cli", "serve"]
        with contextlib.ExitStack() as procs:
            procs.enter_context(process(upstream_cmd))
            procs.enter_context(process(router_cmd, env))
            if both:
                procs.enter_context(process(router_cmd, plain_env))
            anyio.run(wait_http, f"http://127.0.0.1:{up_port}/mcp")
            anyio.run(wait_http, f"http://127.0.0.1:{router_port}/healthz")
            if both:
                anyio.run(wait_http, f"http://127.0.0.1:{plain_port}/healthz")
            modes = ["auto", "legacy"] if args.client_mode == "both" else [args.client_mode]
            runs = {
                mode: anyio.run(
                    measure,
                    f"http://127.0.0.1:{up_port}/mcp",
                    f"http://127.0.0.1:{router_port}/mcp",
                    args.n,
                    args.calls,
                    args.concurrency,
                    mode,
                    f"http://127.0.0.1:{plain_port}/mcp" if both else None,
                )
                for mode in modes
            }
    result = runs[modes[0]]
    for mode in modes[1:]:
        result[mode] = runs[mode]
    if args.journal_micro:
        with tempfile.TemporaryDirectory() as tmp:
            result["journal_micro"] = anyio.run(journal_micro, Path(tmp) / ".vsm")
    result["goal_met"] = all(r["ratio_p50"] <= 1.25 and r["ratio_rps"] >= 0.8 for r in runs.values())
    if not args.json:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
