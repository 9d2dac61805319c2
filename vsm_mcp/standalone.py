"""Run one capability server alone: ``vsm-mcp server NAME`` and ``python -m servers.NAME``.

The server module is not imported here (the kernel never imports ``servers``); the caller
passes its ``build(ctx) -> MCPServer`` function.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, Literal

import anyio

from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext

Transport = Literal["stdio", "http"]


async def serve_standalone(
    build: Callable[[ServerContext], Any], transport: Transport, host: str, port: int
) -> None:
    settings = load_settings()
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    await ctx.bus.start()
    try:
        server = build(ctx)
        if transport == "stdio":
            await server.run_stdio_async()
        else:
            await server.run_streamable_http_async(host=host, port=port)
    finally:
        await ctx.aclose()


def main(build: Callable[[ServerContext], Any], name: str, argv: Sequence[str] | None = None) -> None:
    """Entry point for ``python -m servers.<name>``."""
    parser = argparse.ArgumentParser(prog=f"python -m servers.{name}", description=f"Run the {name} MCP server alone.")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    anyio.run(serve_standalone, build, args.transport, args.host, args.port)
