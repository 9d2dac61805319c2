"""tools/list of ~1,000 tools across 10 upstreams, through the router's /mcp.

Ten stdio upstreams (tests/integration/router/upstream_server.py with --tools 93: 100 tools each,
so 1,000 in all) are mounted by a `vsm-mcp serve` process. One session is opened on /mcp
(initialize + initialized), then `tools/list` is sent `--n` times on a kept-alive HTTP
connection; the round trip until the whole body has arrived is timed. Decoding the ~120 KB of
JSON is the client's cost, not the router's: it is timed separately (`client_decode_p50_ms`).
An aggregate list has no direct equivalent on one upstream, so the baseline printed next to it
is the round trip of `ping` on the same session: the floor of any request through this stack.

    python benchmarks/tools_list.py [--n 300] [--upstreams 10] [--per 100] [--json]

Goal (DESIGN.md): p50 < 5 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from router_overhead import UPSTREAM, free_port, pct, process, wait_http  # noqa: E402

HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def decode(r: httpx.Response) -> dict:  # type: ignore[type-arg]
    if r.headers.get("content-type", "").startswith("application/json"):
        return r.json()  # type: ignore[no-any-return]
    data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])  # type: ignore[no-any-return]


async def measure(base: str, n: int, expected: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as h:
        for _ in range(600):  # wait until every upstream's tools are in the catalog
            ready = (await h.get("/readyz")).json()
            ups = ready.get("checks", {}).get("upstreams", {})
            if ups and all(u.get("state") == "ready" for u in ups.values()):
                break
            await anyio.sleep(0.2)
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
        r = await h.post("/mcp", json=init, headers=HEADERS)
        hdrs = {**HEADERS, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        await h.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=hdrs)
        listing = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
        ping = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}).encode()
        count = len(decode(await h.post("/mcp", content=listing, headers=hdrs))["result"]["tools"])
        if count < expected:
            raise SystemExit(f"only {count} of {expected} tools listed")
        lat: dict[str, list[float]] = {"list": [], "ping": []}
        for i in range(n):
            for name, body in ((("list", listing), ("ping", ping)) if i % 2 == 0 else (("ping", ping), ("list", listing))):
                t0 = time.perf_counter()
                resp = await h.post("/mcp", content=body, headers=hdrs)  # the whole body is read
                lat[name].append((time.perf_counter() - t0) * 1000)
                t1 = time.perf_counter()
                assert "result" in decode(resp)
                lat.setdefault(f"{name}_decode", []).append((time.perf_counter() - t1) * 1000)
    return {
        "tools": count,
        "n": n,
        "p50_ms": round(pct(lat["list"], 50), 3),
        "p95_ms": round(pct(lat["list"], 95), 3),
        "p99_ms": round(pct(lat["list"], 99), 3),
        "ping_p50_ms": round(pct(lat["ping"], 50), 3),
        "client_decode_p50_ms": round(pct(lat["list_decode"], 50), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--upstreams", type=int, default=10)
    ap.add_argument("--per", type=int, default=100, help="tools per upstream (7 fixed + generated)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        lines = ["upstreams:"]
        for i in range(args.upstreams):
            lines.append(
                f"  - {{name: u{i}, kind: stdio, command: {json.dumps(sys.executable)}, "
                f"args: [{json.dumps(str(UPSTREAM))}, --name, u{i}, --tools, '{max(0, args.per - 7)}']}}"
            )
        manifest = Path(tmp) / "bench.yaml"
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = {**os.environ, "VSM_HOME": str(Path(tmp) / ".vsm"), "VSM_MANIFESTS": str(manifest),
               "VSM_PORT": str(port), "VSM_LOG_LEVEL": "warning", "VSM_UPSTREAM_START_WAIT": "60"}
        with process([sys.executable, "-m", "vsm_mcp.cli", "serve"], env):
            anyio.run(wait_http, f"http://127.0.0.1:{port}/healthz", 180.0)
            result = anyio.run(measure, f"http://127.0.0.1:{port}", args.n, args.upstreams * args.per)
    result["goal_met"] = result["p50_ms"] < 5
    if not args.json:
        for k, v in result.items():
            print(f"{k:>12}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
