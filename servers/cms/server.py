"""The ``cms`` server: CMS connectors behind one interface (``vsm_mcp.connectors``), synced
incrementally and durably into the content layer's semantic containers.

Types: ``wordpress`` (REST API, application passwords), ``contentful`` (Sync API), ``ghost``
(Content API, content key), ``strapi`` (REST, API token), ``drupal`` (JSON:API),
``sanity`` (GROQ query API). Tools:
``connector_add`` / ``connector_list`` / ``connector_sync`` / ``connector_status`` /
``connector_remove``, and ``cms_get`` / ``cms_search`` over the synced containers. Items are
ingested and deleted through ``content__ingest_item`` / ``content__container_delete`` (via the
router, as the caller), never by importing the content server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.mcpserver import MCPServer

from servers.cms.contentful import Contentful
from servers.cms.drupal import Drupal
from servers.cms.ghost import Ghost
from servers.cms.sanity import Sanity
from servers.cms.strapi import Strapi
from servers.cms.wordpress import WordPress
from servers.tool_errors import tool_errors
from vsm_mcp.connectors import sync
from vsm_mcp.connectors.tools import register_tools
from vsm_mcp.context import ServerContext

TYPES = (WordPress(), Contentful(), Ghost(), Strapi(), Drupal(), Sanity())
for _c in TYPES:
    sync.register(_c)


def build(ctx: ServerContext) -> MCPServer:
    holder: list[sync.SyncEngine] = []

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if holder and ctx.extras.get("connectors.owner") == "cms":
                ctx.extras.pop("connectors.owner", None)
                await holder[0].aclose()
                ctx.extras.pop(sync.EXTRAS_KEY, None)

    server = MCPServer(
        "cms",
        instructions="CMS connectors (wordpress, contentful, ghost, strapi, drupal, sanity): add a connector with ${ENV} credentials, sync it "
        "incrementally into searchable containers, then cms_search / cms_get the synced items.",
        lifespan=lifespan,
    )
    holder.append(register_tools(server, ctx, [c.type for c in TYPES], "cms", tool_errors,
                                 label="CMS (WordPress, Contentful, Ghost, Strapi, Drupal, Sanity)"))
    ctx.extras.setdefault("connectors.owner", "cms")
    return server
