"""A small MCP server used as a test upstream (stdio or streamable HTTP).

Run: ``python upstream_server.py --name NAME --transport stdio|http [--port N] [--tools N]``.
Tools: echo, add, fail (a tool error), slow (sleeps), whoami (the tenant in _meta), pid,
progress (reports 3 steps), meta (the _meta received), chatty (2 logs + 2 progress), ask
(sampling from the client), plus ``--tools N`` generated ``t0000``… tools for catalog tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations


def build(name: str, extra_tools: int = 0) -> MCPServer:
    server = MCPServer(name)

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def fail(message: str = "boom") -> str:
        """Always fails (a tool error)."""
        raise ValueError(message)

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await asyncio.sleep(seconds)
        return "done"

    @server.tool()
    def whoami(ctx: Context) -> str:
        """The tenant the router put in _meta."""
        meta = ctx.request_context.meta or {}
        return str(meta.get("io.vsm/tenant", ""))

    @server.tool()
    def pid() -> int:
        """This process id."""
        return os.getpid()

    @server.tool()
    async def progress(ctx: Context) -> str:
        """Report three progress steps."""
        for i in range(3):
            await ctx.report_progress(i + 1, 3, f"step {i + 1}")
        return "finished"

    @server.tool()
    def meta(ctx: Context) -> dict[str, object]:
        """The request's _meta as this server received it (trace context, tenant, ...)."""
        return dict(ctx.request_context.meta or {})

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """Two log messages (info, debug) and two progress steps, then an answer."""
        await ctx.info("chatty: info")
        await ctx.debug("chatty: debug")
        await ctx.report_progress(1, 2, "half")
        await ctx.report_progress(2, 2, "all")
        return "said it"

    @server.tool()
    async def ask(ctx: Context) -> str:
        """Asks the client to sample a message (a server->client request) and returns its text."""
        from mcp.types import SamplingMessage, TextContent

        result = await ctx.session.create_message(
            [SamplingMessage(role="user", content=TextContent(type="text", text="who are you?"))], max_tokens=10,
            related_request_id=ctx.request_id,
        )
        content = result.content
        return str(getattr(content, "text", content))

    @server.prompt()
    def greet(who: str) -> str:
        """A greeting prompt."""
        return f"Hello {who}, from {name}"

    @server.resource(f"test://{name}/info")
    def info() -> str:
        """A fixed resource."""
        return f"info of {name}"

    @server.resource(f"test://{name}/items/{{item}}")
    def item(item: str) -> str:
        """A templated resource."""
        return f"{name} item {item}"

    @server.tool()
    async def grow(name: str, ctx: Context) -> str:
        """Register a tool with this name and announce it (tools/list_changed)."""

        def extra() -> str:
            return name

        server.add_tool(extra, name=name, description=f"grown tool {name}")
        await ctx.session.send_tool_list_changed()
        return "grown"

    for i in range(extra_tools):
        def make(i: int):  # noqa: ANN202
            def tool(x: str = "") -> str:
                return f"{name}:{i}:{x}"
            return tool
        server.add_tool(make(i), name=f"t{i:04d}", description=f"generated tool {i} of {name}")
    return server


def build_builtin(ctx: object) -> MCPServer:
    """Entry point for a ``kind: builtin`` manifest entry in tests."""
    return build("b")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", default="up")
    p.add_argument("--transport", choices=["stdio", "http", "sse"], default="stdio")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tools", type=int, default=0)
    p.add_argument("--json-response", action="store_true")
    p.add_argument("--stateless", action="store_true")
    args = p.parse_args()
    server = build(args.name, args.tools)
    if args.transport == "stdio":
        asyncio.run(server.run_stdio_async())
    else:
        import uvicorn

        if args.transport == "sse":  # the legacy HTTP+SSE transport only
            app = server.sse_app()
        else:
            app = server.streamable_http_app(json_response=args.json_response, stateless_http=args.stateless)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
