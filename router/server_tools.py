"""``ctx.tools`` for servers: routed calls, plus what only the router can answer about tools.

A server calls another server's tool through the dispatcher like any client (grants, policy,
limits, audit, as the principal it names). Two names are answered by the router itself,
because only it has the catalog and the registry — servers never import the router:

* ``find_tools`` — the registry's search with the principal's grants applied (the same answer
  as the meta-tool of that name: tools with calibrated scores, and ``no_match``);
* ``describe_tools`` ``{"names": [...]}`` — for each name ``{input_schema, annotations,
  idempotent, available, allowed}`` or ``null`` when no such tool exists. ``idempotent`` is the
  manifest's ``idempotent`` flag for the tool, else its ``idempotentHint`` annotation.
"""

from __future__ import annotations

import json
from typing import Any

import mcp.types as mt

from router.dispatch import Dispatcher
from router.meta_tools import ToolSearch, parse_find_args, result_json
from router.registry.catalog import Catalog
from vsm_mcp.auth import Principal, grants
from vsm_mcp.errors import InvalidArguments


def _result(payload: dict[str, Any]) -> mt.CallToolResult:
    return mt.CallToolResult(
        content=[mt.TextContent(type="text", text=json.dumps(payload, separators=(",", ":")))],
        structured_content=payload,
    )


class ServerTools:
    """The ``vsm_mcp.hooks.ToolCaller`` the router runtime gives servers (``ServerContext.tools``)."""

    def __init__(self, dispatcher: Dispatcher, catalog: Catalog, search: ToolSearch) -> None:
        self.dispatcher = dispatcher
        self.catalog = catalog
        self.search = search

    async def call(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        *,
        source: str = "server",
        meta: dict[str, Any] | None = None,
    ) -> mt.CallToolResult:
        if name == "find_tools":
            query, limit, server, tags = parse_find_args(arguments or {})
            found = await self.search.find(principal, query, limit=limit, server=server, tags=tags)
            return _result(result_json(found))
        if name == "describe_tools":
            return _result({"tools": self.describe(principal, (arguments or {}).get("names"))})
        return await self.dispatcher.call(principal, name, arguments, source=source, meta=meta)

    def describe(self, principal: Principal, names: Any) -> dict[str, Any]:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) > 1000:
            raise InvalidArguments("describe_tools: 'names' must be a list of at most 1000 tool names")
        out: dict[str, Any] = {}
        for name in names:
            entry = self.catalog.get(name, principal.tenant_id)  # the caller tenant's view (issue 27)
            if entry is None:
                out[name] = None
                continue
            up = self.dispatcher.upstreams.get(entry.server)
            flags: dict[str, bool] = getattr(up.spec, "idempotent", {}) if up is not None else {}
            hinted = bool(entry.annotations.get("idempotentHint"))
            out[name] = {
                "input_schema": entry.input_schema,
                "annotations": entry.annotations,
                "idempotent": flags.get(entry.name, hinted),
                "available": entry.available,
                "allowed": grants(principal.scopes, entry.tags),
            }
        return out
