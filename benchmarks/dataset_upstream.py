"""A stdio MCP server that serves tool definitions from the tool-retrieval dev set, as-is.

    python benchmarks/dataset_upstream.py --tools /work/shared/bench/tool_retrieval/tools.jsonl \
        --server fs-go [--limit N]

It lists the tools of one dataset server (name, description, input schema verbatim from
``tools.jsonl``) so the router mounts them as ``<upstream>__<name>`` exactly as it would the real
server. Calls answer a fixed text: only ``tools/list`` matters to the benchmarks using it
(benchmarks/schema_tokens.py). The dataset is read at run time and never copied into the repo.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import mcp.types as mt
from mcp.server.lowlevel.server import Server
from mcp.server.stdio import stdio_server


def load(path: Path, server: str, limit: int | None) -> list[mt.Tool]:
    tools: list[mt.Tool] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["server"] != server:
            continue
        schema = row.get("input_schema") or {"type": "object", "properties": {}}
        tools.append(
            mt.Tool(name=row["name"], description=row.get("description") or None, input_schema=schema)
        )
    return tools[:limit] if limit is not None else tools


def build(tools: list[mt.Tool]) -> Server[Any]:
    async def list_tools(ctx: Any, params: Any) -> mt.ListToolsResult:
        return mt.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: mt.CallToolRequestParams) -> mt.CallToolResult:
        return mt.CallToolResult(
            content=[mt.TextContent(type="text", text=f"{params.name}: not implemented here")]
        )

    return Server("dataset", on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(server: Server[Any]) -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", type=Path, required=True)
    ap.add_argument("--server", required=True, help="the dataset's server id whose tools to serve")
    ap.add_argument("--limit", type=int, default=None, help="serve only the first N of its tools")
    args = ap.parse_args()
    anyio.run(serve, build(load(args.tools, args.server, args.limit)))


if __name__ == "__main__":
    main()
