"""A tiny built-in upstream for the edge tests: ``build(ctx) -> MCPServer`` like servers/*."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

from vsm_mcp.context import ServerContext


def build(_ctx: ServerContext) -> MCPServer:
    server = MCPServer("echo")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    def fail(message: str = "boom") -> str:
        """Always fails (a tool error)."""
        raise ValueError(message)

    return server
