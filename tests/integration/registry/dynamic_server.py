"""A builtin test upstream whose tool list changes at run time (``grow`` / ``shrink`` tools),
announcing each change with ``notifications/tools/list_changed``; plus a fixed ``sec`` server."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer


def build(ctx: object) -> MCPServer:
    server = MCPServer("dyn")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers and return their sum."""
        return a + b

    @server.tool()
    async def grow(name: str, description: str, ctx: Context) -> str:
        """Register a new tool with this name and description."""

        def extra(x: str = "") -> str:
            return f"{name}:{x}"

        server.add_tool(extra, name=name, description=description)
        await ctx.session.send_tool_list_changed()
        return "added"

    @server.tool()
    async def shrink(name: str, ctx: Context) -> str:
        """Unregister the tool with this name."""
        server.remove_tool(name)
        await ctx.session.send_tool_list_changed()
        return "removed"

    return server


def build_secret(ctx: object) -> MCPServer:
    server = MCPServer("sec")

    @server.tool()
    def rotate_master_password(account: str) -> str:
        """Rotate the master password of an account."""
        return f"rotated {account}"

    return server


if __name__ == "__main__":
    build(None).run("stdio")
