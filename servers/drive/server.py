"""The ``drive`` server: Google Drive connectors (``gdrive``), synced incrementally and durably
through the Changes API into the content layer's semantic containers (``vsm_mcp.connectors``).

Tools: ``connector_add`` / ``connector_list`` / ``connector_sync`` / ``connector_status`` /
``connector_remove``, ``drive_get`` / ``drive_search`` over the synced files.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from servers.drive.gdrive import GoogleDrive
from servers.tool_errors import tool_errors
from vsm_mcp.connectors import sync
from vsm_mcp.connectors.tools import connector_server
from vsm_mcp.context import ServerContext

sync.register(GoogleDrive())


def build(ctx: ServerContext) -> MCPServer:
    return connector_server(
        ctx, "drive", ["gdrive"],
        "Google Drive connectors (type gdrive): add one with an OAuth token as ${ENV}, sync it "
        "incrementally (Changes API) into searchable containers, then drive_search / drive_get the files.",
        tool_errors, label="Google Drive",
    )
