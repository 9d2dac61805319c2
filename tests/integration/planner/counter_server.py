"""A test upstream that counts executions, for the planner's crash tests.

Run: ``python counter_server.py --transport stdio|http [--port N]`` with ``COUNTER_LOG`` set.
Every tool execution appends one JSON line to ``$COUNTER_LOG``: the tool, the key, the request's
``_meta`` idempotency key and traceparent, and the pid of this process and of its parent (for a
stdio upstream: the router or worker that spawned it). While ``$COUNTER_LOG.hold`` exists, calls
with ``hold=true`` block (the test kills the router there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations


def _record(tool: str, key: str, ctx: Context) -> bool:
    meta = ctx.request_context.meta or {}
    log = os.environ["COUNTER_LOG"]
    line = {
        "tool": tool, "key": key, "idem": meta.get("io.vsm/idempotency-key", ""),
        "traceparent": meta.get("traceparent", ""), "pid": os.getpid(), "ppid": os.getppid(),
    }
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\n")
    return Path(log + ".hold").exists()


def _holding() -> bool:
    return Path(os.environ["COUNTER_LOG"] + ".hold").exists()


async def _maybe_hold(held: bool, hold: bool, delay_ms: int) -> None:
    if held and hold:
        for _ in range(36_000):  # an hour at most; the test kills the process first
            if not _holding():
                break
            await asyncio.sleep(0.05)
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)


def build(name: str = "counter") -> MCPServer:
    server = MCPServer(name)

    @server.tool(annotations=ToolAnnotations(idempotent_hint=False))
    async def work(key: str, ctx: Context, delay_ms: int = 0, hold: bool = False) -> dict[str, Any]:
        """Count one execution of ``key`` (not idempotent)."""
        await _maybe_hold(_record("work", key, ctx), hold, delay_ms)
        return {"key": key, "n": len(key), "pid": os.getpid()}

    @server.tool(annotations=ToolAnnotations(idempotent_hint=True))
    async def work_idem(key: str, ctx: Context, delay_ms: int = 0, hold: bool = False) -> dict[str, Any]:
        """Count one execution of ``key`` (idempotent: safe to repeat)."""
        await _maybe_hold(_record("work_idem", key, ctx), hold, delay_ms)
        return {"key": key, "n": len(key), "pid": os.getpid()}

    @server.tool(annotations=ToolAnnotations(idempotent_hint=True))
    async def total(values: list[int], ctx: Context) -> dict[str, Any]:
        """Sum ``values`` (the fan-in)."""
        _record("total", ",".join(map(str, values)), ctx)
        return {"total": sum(values)}

    return server


def build_builtin(ctx: object) -> MCPServer:
    """Entry point for a ``kind: builtin`` manifest entry."""
    return build("counter")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = build()
    if args.transport == "stdio":
        asyncio.run(server.run_stdio_async())
    else:
        import uvicorn

        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
