"""``GET /v1/tools?q=…&limit=…`` — tool search (or the plain list) for clients that do not speak MCP,
and ``POST /v1/tools/{name}/call`` — one call through the dispatch pipeline.

With ``q`` it ranks tools exactly as the ``find_tools`` meta-tool does (router/meta_tools.py);
without it, it lists the tools the caller may call. Optional ``server``, ``tags`` (comma
separated) and ``mode`` (hybrid, bm25, embedding) narrow the search. The caller's grants apply:
a tool it may not call is never listed. Errors use the edge's one JSON error shape.

The call body is ``{"arguments": {…}}``; the answer is the MCP ``CallToolResult`` as JSON (a tool
that ran and failed is a 200 with ``isError: true``; a routing failure is the error's HTTP status).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.dispatch import Dispatcher
from router.edge._auth import Authenticate, error_response
from router.gate.ratelimit import retry_after_header
from router.gate.route import AUTHENTICATED, TOOL_CALL, gated_route, principal
from router.meta_tools import MAX_LIMIT, ToolSearch, result_json
from router.registry.index import MODES
from vsm_mcp.errors import InvalidArguments, QuotaExceeded, RateLimited, VsmError


def _limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return 10
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidArguments(f"query parameter 'limit' must be an integer 1..{MAX_LIMIT} (got {raw!r})")
    return int(raw)


async def _read_limited(request: Request, max_body_bytes: int) -> bytes:
    """The body, refused with 413 before reading when its declared length is over the limit and
    as soon as a chunked one passes it (a 50 MB body used to be read whole, then refused)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        raise QuotaExceeded(f"request body of {int(declared)} bytes exceeds VSM_MAX_BODY_BYTES ({max_body_bytes} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise QuotaExceeded(f"request body exceeds VSM_MAX_BODY_BYTES ({max_body_bytes} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def _call_arguments(request: Request, max_body_bytes: int) -> dict[str, Any]:
    body = await _read_limited(request, max_body_bytes)
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise InvalidArguments(f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("arguments", {}), dict):
        raise InvalidArguments('request body must be an object {"arguments": {…}}')
    return dict(data.get("arguments", {}))


def tools_routes(
    search: ToolSearch, authenticate: Authenticate = principal, dispatcher: Dispatcher | None = None,
    max_body_bytes: int = 4 << 20,
) -> list[Route]:
    """``GET /v1/tools`` over the router's ``ToolSearch``; ``POST /v1/tools/{name}/call`` when a dispatcher is given."""

    async def call(request: Request) -> Response:
        assert dispatcher is not None
        try:
            principal = await authenticate(request)
            arguments = await _call_arguments(request, max_body_bytes)
            trace = request.headers.get("traceparent")
            result = await dispatcher.call_tool(
                principal, request.path_params["name"], arguments, source="rest",
                trace=(trace, request.headers.get("tracestate", "")) if trace else None,
            )
            return JSONResponse(result.model_dump(by_alias=True, mode="json", exclude_none=True))
        except RateLimited as exc:
            return error_response(exc, {"Retry-After": retry_after_header(exc.retry_after)})
        except VsmError as exc:
            return error_response(exc)

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
                found = await search.find(principal, query, limit=limit, server=server, tags=tags, mode=mode)  # type: ignore[arg-type]
                return JSONResponse({"query": query, **result_json(found)})
            await search.refresh()
            allowed = search.visible(principal)
            records = [
                r for r in search.registry.records(server)
                if r.available and allowed(r) and all(t in _tag_keys(r.tags) for t in tags or ())
            ]
            body: list[dict[str, Any]] = [
                {"name": r.public_name, "server": r.server.split("@", 1)[0], "description": r.description,
                 "input_schema": dict(r.input_schema)}
                for r in records[:limit]
            ]
            return JSONResponse({"tools": body, "total": len(records)})
        except VsmError as exc:
            return error_response(exc)

    # The listing shows each caller only what it may call; a call is a tool call (scopes, policy,
    # limits and audit per call in the dispatcher).
    routes = [gated_route("/v1/tools", list_or_search, methods=["GET"], capability=AUTHENTICATED,
                          action="router__find_tools", name="tools_list")]
    if dispatcher is not None:
        routes.append(gated_route("/v1/tools/{name}/call", call, methods=["POST"], capability=TOOL_CALL,
                                  name="tools_call"))
    return routes


def _tag_keys(tags: tuple[str, ...]) -> set[str]:
    return {k for t in tags for k in (t, t.split(":", 1)[0])}
