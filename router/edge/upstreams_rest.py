"""REST for the upstream registry: each route is one call of an ``admin__*`` tool (router/admin.py)
through the dispatch pipeline, so REST and MCP share grants (the ``admin`` scope), policy, rate
limits and audit, and there is one implementation of every check.

    GET    /v1/upstreams?scope=tenant|global                 admin__upstream_list
    POST   /v1/upstreams              {name, kind, …, scope}  admin__upstream_add
    PATCH  /v1/upstreams/{name}       {changes…, scope?}      admin__upstream_update
    DELETE /v1/upstreams/{name}?scope=                        admin__upstream_remove
    POST   /v1/upstreams/{name}/enable | /disable             admin__upstream_enable / _disable
    PUT    /v1/tool-overrides/{server}/{tool}  {name?, description?, hidden?, cacheable?, tags?, pin?}
    DELETE /v1/tool-overrides/{server}/{tool}
    PUT    /v1/upstream-secrets/{name}  {value}               admin__secret_set (value never returned)
    DELETE /v1/upstream-secrets/{name}

A tool error (a bad definition, a duplicate name …) answers 400 with the tool's one-line message.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.dispatch import Dispatcher
from router.edge._auth import Authenticate, error_response
from router.gate.route import TOOL_CALL, gated_route, principal
from vsm_mcp.errors import InvalidArguments, VsmError

ADMIN = "admin"


async def _body(request: Request, max_body_bytes: int) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > max_body_bytes:
        raise InvalidArguments(f"request body is {len(raw)} bytes; the limit is {max_body_bytes}")
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidArguments(f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArguments("request body must be a JSON object")
    return data


def _scope(request: Request, body: dict[str, Any] | None = None) -> dict[str, Any]:
    scope = (body or {}).pop("scope", None) or request.query_params.get("scope")
    return {"scope": scope} if scope else {}


def upstreams_routes(
    dispatcher: Dispatcher, max_body_bytes: int = 1 << 20, authenticate: Authenticate = principal,
) -> list[Route]:
    """The routes above, each calling ``admin__<tool>`` as the gate's principal (declared TOOL_CALL:
    scopes, policy, limits and audit are the dispatcher's, per call)."""

    async def call(request: Request, tool: str, arguments: dict[str, Any]) -> Response:
        principal = await authenticate(request)
        result = await dispatcher.call_tool(principal, f"{ADMIN}__{tool}", arguments, source="rest")
        if result.is_error:
            text = next((getattr(b, "text", "") for b in result.content if getattr(b, "text", "")), "failed")
            return JSONResponse({"error": {"code": "invalid_arguments", "message": text}}, status_code=400)
        return JSONResponse(result.structured_content or {})

    def route(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except VsmError as exc:
                return error_response(exc)

        return endpoint

    @route
    async def list_upstreams(request: Request) -> Response:
        return await call(request, "upstream_list", _scope(request))

    @route
    async def add(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        return await call(request, "upstream_add", {**body, **_scope(request, body)})

    @route
    async def update(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        scope = _scope(request, body)
        return await call(request, "upstream_update", {"name": request.path_params["name"], "changes": body, **scope})

    @route
    async def remove(request: Request) -> Response:
        return await call(request, "upstream_remove", {"name": request.path_params["name"], **_scope(request)})

    @route
    async def enable(request: Request) -> Response:
        return await call(request, "upstream_enable", {"name": request.path_params["name"], **_scope(request)})

    @route
    async def disable(request: Request) -> Response:
        return await call(request, "upstream_disable", {"name": request.path_params["name"], **_scope(request)})

    @route
    async def override_set(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        p = request.path_params
        return await call(request, "tool_override_set", {"server": p["server"], "tool": p["tool"], **body, **_scope(request, body)})

    @route
    async def override_remove(request: Request) -> Response:
        p = request.path_params
        return await call(request, "tool_override_remove", {"server": p["server"], "tool": p["tool"], **_scope(request)})

    @route
    async def secret_set(request: Request) -> Response:
        body = await _body(request, max_body_bytes)
        scope = _scope(request, body)
        return await call(request, "secret_set", {"name": request.path_params["name"], "value": body.get("value"), **scope})

    @route
    async def secret_remove(request: Request) -> Response:
        return await call(request, "secret_remove", {"name": request.path_params["name"], **_scope(request)})

    def gated(path: str, fn: Callable[[Request], Awaitable[Response]], method: str, name: str) -> Route:
        return gated_route(path, fn, methods=[method], capability=TOOL_CALL, name=name)

    return [
        gated("/v1/upstreams", list_upstreams, "GET", "upstream_list"),
        gated("/v1/upstreams", add, "POST", "upstream_add"),
        gated("/v1/upstreams/{name}", update, "PATCH", "upstream_update"),
        gated("/v1/upstreams/{name}", remove, "DELETE", "upstream_remove"),
        gated("/v1/upstreams/{name}/enable", enable, "POST", "upstream_enable"),
        gated("/v1/upstreams/{name}/disable", disable, "POST", "upstream_disable"),
        gated("/v1/tool-overrides/{server}/{tool}", override_set, "PUT", "tool_override_set"),
        gated("/v1/tool-overrides/{server}/{tool}", override_remove, "DELETE", "tool_override_remove"),
        gated("/v1/upstream-secrets/{name}", secret_set, "PUT", "secret_set"),
        gated("/v1/upstream-secrets/{name}", secret_remove, "DELETE", "secret_remove"),
    ]
