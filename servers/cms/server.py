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

from mcp.server.mcpserver import MCPServer

from servers.cms.contentful import Contentful
from servers.cms.drupal import Drupal
from servers.cms.ghost import Ghost
from servers.cms.sanity import Sanity
from servers.cms.strapi import Strapi
from servers.cms.wordpress import WordPress
from servers.tool_errors import tool_errors
from vsm_mcp.connectors import sync
from vsm_mcp.connectors.tools import connector_server
from vsm_mcp.context import ServerContext

TYPES = (WordPress(), Contentful(), Ghost(), Strapi(), Drupal(), Sanity())
for _c in TYPES:
    sync.register(_c)


def build(ctx: ServerContext) -> MCPServer:
    return connector_server(
        ctx, "cms", [c.type for c in TYPES],
        "CMS connectors (wordpress, contentful, ghost, strapi, drupal, sanity): add a connector with ${ENV} credentials, sync it "
        "incrementally into searchable containers, then cms_search / cms_get the synced items.",
        tool_errors, label="CMS (WordPress, Contentful, Ghost, Strapi, Drupal, Sanity)",
    )
