"""What a capability server is built from: ``servers.<name>.server.build(ctx) -> MCPServer``.

``ServerContext`` bundles the process-wide resources (settings, database, bus). The same
object is handed to built-in servers mounted in-process and to a server run alone with
``vsm-mcp server NAME``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vsm_mcp.auth import Principal
from vsm_mcp.bus import Bus, make_bus
from vsm_mcp.config import Settings
from vsm_mcp.db import Database
from vsm_mcp.errors import UpstreamUnavailable
from vsm_mcp.hooks import ToolCaller

TENANT_META_KEY = "io.vsm/tenant"
SCOPES_META_KEY = "io.vsm/scopes"
KEY_META_KEY = "io.vsm/key"


@dataclass
class ServerContext:
    settings: Settings
    db: Database
    bus: Bus
    extras: dict[str, Any] = field(default_factory=dict)
    tool_caller: ToolCaller | None = None  # set by the router runtime; None for a server run alone
    _default_tenant_id: str | None = None

    @classmethod
    def create(cls, settings: Settings) -> ServerContext:
        return cls(settings=settings, db=Database(settings), bus=make_bus(settings.bus_url))

    async def default_tenant_id(self) -> str:
        """The id of ``settings.default_tenant``, created on first use."""
        if self._default_tenant_id is None:
            from vsm_mcp.tenants import ensure_tenant

            self._default_tenant_id = (await ensure_tenant(self.db, self.settings.default_tenant)).id
        return self._default_tenant_id

    async def tenant_of(self, mcp_ctx: Any) -> str:
        """The tenant a tool call runs for: the router puts it in the request ``_meta``;
        a server run alone without the router falls back to the default tenant."""
        meta = None
        try:
            meta = mcp_ctx.request_context.meta
        except (AttributeError, ValueError):
            meta = None
        if meta and meta.get(TENANT_META_KEY):
            return str(meta[TENANT_META_KEY])
        return await self.default_tenant_id()

    @property
    def tools(self) -> ToolCaller:
        """Call another server's tool through the router (servers never import each other)."""
        if self.tool_caller is None:
            raise UpstreamUnavailable("this server runs without the router: it cannot call other servers' tools")
        return self.tool_caller

    async def principal_of(self, mcp_ctx: Any) -> Principal:
        """Who called the current tool: tenant and scopes from the router's request ``_meta``; a
        server run alone answers for the default tenant with no scopes."""
        meta = None
        try:
            meta = mcp_ctx.request_context.meta
        except (AttributeError, ValueError):
            meta = None
        if meta and meta.get(TENANT_META_KEY):
            scopes = meta.get(SCOPES_META_KEY) or []
            return Principal(str(meta[TENANT_META_KEY]), frozenset(str(s) for s in scopes), str(meta.get(KEY_META_KEY) or ""))
        return Principal(await self.default_tenant_id())

    async def aclose(self) -> None:
        await self.bus.aclose()
        await self.db.aclose()
