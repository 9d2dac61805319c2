"""``GET /v1/tools?q=…&limit=…`` — tool search (or the plain list) for clients that do not speak MCP.

With ``q`` it ranks tools exactly as the ``find_tools`` meta-tool does (router/meta_tools.py);
without it, it lists the tools the caller may call. Optional ``server``, ``tags`` (comma
separated) and ``mode`` (hybrid, bm25, embedding) narrow the search. The caller's grants apply:
a tool it may not call is never listed. Errors use the edge's one JSON error shape.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.edge._auth import Authenticate, error_response
from router.meta_tools import MAX_LIMIT, ToolSearch, hits_json
from router.registry import MODES
from vsm_mcp.auth import grants
from vsm_mcp.errors import InvalidArguments, VsmError


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 10
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidArguments(f"query parameter 'limit' must be an integer 1..{MAX_LIMIT} (got {raw!r})")
    return int(raw)


def tools_routes(search: ToolSearch, authenticate: Authenticate) -> list[Route]:
    """The ``/v1/tools`` route over the router's ``ToolSearch``."""

    async def list_or_search(request: Request) -> Response:
        try:
            principal = await authenticate(request)
            params = request.query_params
            limit = _limit(params.get("limit"))
            server = params.get("server") or None
            tags = [t for t in (params.get("tags") or "").split(",") if t] or None
            mode = params.get("mode") or "hybrid"
            if mode not in MODES:
                raise InvalidArguments(f"query parameter 'mode' must be one of {', '.join(MODES)} (got {mode!r})")
            query = params.get("q", "").strip()
            if query:
                hits = await search.find(principal, query, limit=limit, server=server, tags=tags, mode=mode)  # type: ignore[arg-type]
                return JSONResponse({"query": query, "tools": hits_json(hits)})
            await search.refresh()
            records = [
                r for r in search.registry.records(server)
                if r.available and grants(principal.scopes, r.tags) and all(t in _tag_keys(r.tags) for t in tags or ())
            ]
            body: list[dict[str, Any]] = [
                {"name": r.public_name, "server": r.server, "description": r.description, "input_schema": dict(r.input_schema)}
                for r in records[:limit]
            ]
            return JSONResponse({"tools": body, "total": len(records)})
        except VsmError as exc:
            return error_response(exc)

    return [Route("/v1/tools", list_or_search, methods=["GET"])]


def _tag_keys(tags: tuple[str, ...]) -> set[str]:
    return {k for t in tags for k in (t, t.split(":", 1)[0])}
