"""The ``drive`` server: Google Drive connectors (``gdrive``), synced incrementally and durably
through the Changes API into the content layer's semantic containers (``vsm_mcp.connectors``).

Tools: ``connector_add`` / ``connector_list`` / ``connector_sync`` / ``connector_status`` /
``connector_remove``, ``drive_get`` / ``drive_search`` over the synced files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer

from servers.drive.gdrive import GoogleDrive
from servers.tool_errors import tool_errors
from vsm_mcp.connectors import sync
from vsm_mcp.connectors.tools import register_tools
from vsm_mcp.context import ServerContext

sync.register(GoogleDrive())


def build(ctx: ServerContext) -> MCPServer:
    holder: list[sync.SyncEngine] = []

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if holder and ctx.extras.get("connectors.owner") == "drive":
                ctx.extras.pop("connectors.owner", None)
                await holder[0].aclose()
                ctx.extras.pop(sync.EXTRAS_KEY, None)

    server = MCPServer(
        "drive",
        instructions="Google Drive connectors (type gdrive): add one with an OAuth token as ${ENV}, sync it "
        "incrementally (Changes API) into searchable containers, then drive_search / drive_get the files.",
        lifespan=lifespan,
    )
    holder.append(register_tools(server, ctx, ["gdrive"], "drive", tool_errors, label="Google Drive"))
    ctx.extras.setdefault("connectors.owner", "drive")
    return server
