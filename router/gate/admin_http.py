"""``/v1/admin/keys`` — the calling tenant's API keys over REST, for an ``admin`` key.

* ``GET  /v1/admin/keys``                  list (never secrets)
* ``POST /v1/admin/keys``                  ``{"scopes": [...], "name": "", "expires_in": "90d"}`` → 201 with the secret, once
* ``POST /v1/admin/keys/{key_id}/revoke``  revoke at once, on every replica
* ``POST /v1/admin/keys/{key_id}/rotate``  ``{"grace": "1h"}`` → a new secret; the old one lives for the grace

The same operations as ``vsm-mcp keys`` and the ``keys`` server's tools (one implementation,
vsm_mcp/keys.py); the gate checks scope ``admin`` and the tenant's policy on the matching
``keys__…`` action, and audits each request.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from router.gate.route import gated_route, principal
from vsm_mcp import keys
from vsm_mcp.bus import Bus
from vsm_mcp.db import Database
from vsm_mcp.errors import InvalidArguments, VsmError


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 65536:
        raise InvalidArguments("request body is larger than 64 KiB")
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidArguments(f"request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArguments("request body must be a JSON object")
    return data


def _error(exc: VsmError) -> JSONResponse:
    return JSONResponse(exc.to_http(), status_code=exc.status)


def admin_routes(db: Database, bus: Bus | None) -> list[Route]:
    async def tenant(request: Request) -> tuple[str, str]:
        p = await principal(request)
        return p.tenant_id, p.tenant_name or await keys.tenant_name_of(db, p.tenant_id)

    async def list_keys(request: Request) -> Response:
        try:
            _tid, name = await tenant(request)
            return JSONResponse({"keys": [k.as_dict() for k in await keys.list_keys(db, name)]})
        except VsmError as exc:
            return _error(exc)

    async def create(request: Request) -> Response:
        try:
            _tid, name = await tenant(request)
            body = await _body(request)
            scopes = body.get("scopes")
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise InvalidArguments('"scopes" must be a list of strings, e.g. ["tools:call"]')
            ttl = keys.parse_duration(str(body["expires_in"])) if body.get("expires_in") else None
            secret, info = await keys.create_key(db, name, scopes, name=str(body.get("name", "")), expires_in=ttl)
            return JSONResponse({"key": secret, **info.as_dict()}, status_code=201)
        except VsmError as exc:
            return _error(exc)

    async def revoke(request: Request) -> Response:
        try:
            tid, _name = await tenant(request)
            info = await keys.revoke_key(db, request.path_params["key_id"], bus=bus, tenant_id=tid)
            return JSONResponse(info.as_dict())
        except VsmError as exc:
            return _error(exc)

    async def rotate(request: Request) -> Response:
        try:
            tid, _name = await tenant(request)
            grace = keys.parse_duration(str((await _body(request)).get("grace") or "1h"))
            secret, new, old = await keys.rotate_key(db, request.path_params["key_id"], grace=grace, bus=bus, tenant_id=tid)
            return JSONResponse({"key": secret, "new": new.as_dict(), "old": old.as_dict()}, status_code=201)
        except VsmError as exc:
            return _error(exc)

    return [
        gated_route("/v1/admin/keys", list_keys, methods=["GET"], capability="admin", action="keys__keys_list"),
        gated_route("/v1/admin/keys", create, methods=["POST"], capability="admin", action="keys__keys_create"),
        gated_route("/v1/admin/keys/{key_id}/revoke", revoke, methods=["POST"], capability="admin",
                    action="keys__keys_revoke"),
        gated_route("/v1/admin/keys/{key_id}/rotate", rotate, methods=["POST"], capability="admin",
                    action="keys__keys_rotate"),
    ]
