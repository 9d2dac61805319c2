"""``/v1/storage/{bucket}/{key}`` — objects over plain HTTP, streamed both ways.

* ``PUT``    body streamed into the backend (never held whole); ``Content-Length``, when sent,
  is checked against the bucket quota before the first byte is stored. 201 + metadata JSON.
* ``GET``    streamed; one ``Range: bytes=a-b | a- | -n`` gives 206 + ``Content-Range``, an
  unsatisfiable one 416; several ranges or a malformed header are ignored (full body, as RFC 9110
  allows). ``ETag`` is the sha256. ``HEAD`` gives the same headers without the body.
* ``DELETE`` 204, or 404 when there was nothing to delete.
* ``GET /v1/storage/{bucket}?prefix=&after=&limit=`` lists a page of objects as JSON.

Each route is declared to the gate (router/gate/route.py) as the storage tool it amounts to —
reads need ``storage:read``, writes ``storage:write``, and the tenant's policy meets
``storage_get`` / ``storage_put`` / ``storage_delete`` / ``storage_list`` exactly as for the MCP
tools. The caller acts for its own tenant only.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from router.gate.route import gated_route, principal
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments, NotFound, VsmError
from vsm_mcp.models import Artifact
from vsm_mcp.storage.service import StorageService, object_dict, service_for

Authenticate = Callable[[HTTPConnection], Awaitable[Principal]]
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single-range header, None to serve everything; InvalidArguments if unsatisfiable."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # malformed or multi-range: ignored
    first, last = m.group(1), m.group(2)
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0:
            raise InvalidArguments("unsatisfiable range", data={"size": size})
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or (last and int(last) < start):
        raise InvalidArguments("unsatisfiable range", data={"size": size})
    return start, end


def _headers(row: Artifact) -> dict[str, str]:
    when = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)  # SQLite: naive UTC
    return {
        "content-type": row.content_type,
        "etag": f'"{row.sha256}"',
        "accept-ranges": "bytes",
        "last-modified": format_datetime(when.astimezone(UTC), usegmt=True),
    }


def _error(exc: VsmError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_http(), status_code=exc.status, headers=headers)


class StorageEdge:
    """The endpoints; one instance per app."""

    def __init__(self, svc: StorageService, authenticate: Authenticate) -> None:
        self.svc, self.authenticate = svc, authenticate

    async def _principal(self, request: Request) -> Principal:
        return await self.authenticate(request)  # scopes and policy: the gate, by the route's declaration

    async def object(self, request: Request) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        try:
            if request.method in {"GET", "HEAD"}:
                return await self._get(request, bucket, key)
            if request.method == "PUT":
                return await self._put(request, bucket, key)
            return await self._delete(request, bucket, key)
        except VsmError as exc:
            return _error(exc)

    async def _get(self, request: Request, bucket: str, key: str) -> Response:
        p = await self._principal(request)
        row = await self.svc.stat(p.tenant_id, bucket, key)
        headers = _headers(row)
        try:
            rng = parse_range(request.headers.get("range"), row.size)
        except InvalidArguments as exc:
            # 416 is HTTP-only (no taxonomy class): the body keeps the one error shape
            return JSONResponse(exc.to_http(), status_code=416, headers={"content-range": f"bytes */{row.size}"})
        start, end = rng if rng else (0, row.size)
        status = 206 if rng else 200
        if rng:
            headers["content-range"] = f"bytes {start}-{end - 1}/{row.size}"
        headers["content-length"] = str(end - start)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers)
        row, reader = await self.svc.open(p.tenant_id, bucket, key, start=start, end=end)
        if reader.end - reader.start != end - start:  # replaced between stat and open
            await reader.aclose()
            raise NotFound(f"object {key!r} changed while opening; retry")
        return StreamingResponse(reader, status_code=status, headers=headers | {"etag": f'"{row.sha256}"'})

    async def _put(self, request: Request, bucket: str, key: str) -> Response:
        p = await self._principal(request)
        length = request.headers.get("content-length")
        if length is not None and not length.isdigit():
            raise InvalidArguments("Content-Length must be a whole number")
        row = await self.svc.put(
            p.tenant_id, bucket, key, request.stream(),
            content_type=request.headers.get("content-type"), size_hint=int(length) if length else None,
        )
        return JSONResponse(object_dict(row), status_code=201, headers={"etag": f'"{row.sha256}"'})

    async def _delete(self, request: Request, bucket: str, key: str) -> Response:
        p = await self._principal(request)
        if not await self.svc.delete(p.tenant_id, bucket, key):
            raise NotFound(f"no object {key!r} in bucket {bucket!r}")
        return Response(status_code=204)

    async def listing(self, request: Request) -> Response:
        try:
            p = await self._principal(request)
            q = request.query_params
            limit = q.get("limit", "100")
            if not limit.isdigit():
                raise InvalidArguments("limit must be a whole number")
            rows, nxt = await self.svc.list_objects(
                p.tenant_id, request.path_params["bucket"], prefix=q.get("prefix", ""), after=q.get("after", ""),
                limit=int(limit),
            )
        except VsmError as exc:
            return _error(exc)
        body: dict[str, Any] = {"objects": [object_dict(r) for r in rows], "next_after": nxt}
        return JSONResponse(body)


def storage_routes(ctx: ServerContext, authenticate: Authenticate = principal) -> list[Route]:
    """The routes to append to the app (they share the process's StorageService via ``ctx``)."""
    edge = StorageEdge(service_for(ctx), authenticate)
    obj = "/v1/storage/{bucket}/{key:path}"
    return [
        gated_route("/v1/storage/{bucket}", edge.listing, methods=["GET"], capability="storage:read",
                    action="storage__storage_list", name="storage_list"),
        gated_route(obj, edge.object, methods=["GET", "HEAD"], capability="storage:read",
                    action="storage__storage_get", name="storage_get"),
        gated_route(obj, edge.object, methods=["PUT"], capability="storage:write",
                    action="storage__storage_put", name="storage_put"),
        gated_route(obj, edge.object, methods=["DELETE"], capability="storage:write",
                    action="storage__storage_delete", name="storage_delete"),
    ]
