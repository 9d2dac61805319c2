"""The storage server: objects (``storage_*``) and the bucket control plane (``bucket_*``).

Small objects travel inside MCP messages (text or base64, up to ``VSM_STORAGE_MAX_INLINE_BYTES``);
large ones over the edge, ``PUT/GET /v1/storage/{bucket}/{key}``, which streams. Every call
runs for the caller's tenant (``ctx.tenant_of``), and a failure the caller can fix comes back
as an ``is_error`` result whose text starts with the error type (``not_found: …``).
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import ToolAnnotations

from servers.tool_errors import tool_errors
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments, NotFound, VsmError
from vsm_mcp.storage import buckets as cbcp
from vsm_mcp.storage.lifecycle import run_sweeper, sweep_bucket
from vsm_mcp.storage.service import object_dict, service_for

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# put and delete replace or remove data; repeating them leaves the same state
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
CREATE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)


def _decode(text: str | None, data_base64: str | None) -> bytes:
    if (text is None) == (data_base64 is None):
        raise InvalidArguments("give exactly one of 'text' or 'base64'")
    if text is not None:
        return text.encode("utf-8")
    try:
        return b64decode(data_base64 or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArguments("'base64' is not valid base64") from None


def build(ctx: ServerContext) -> MCPServer:
    svc = service_for(ctx)
    limit = ctx.settings.storage_max_inline_bytes
    backends = svc.backend_names

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        svc.backend("default")  # opening the file backend removes temp files of dead writers
        async with anyio.create_task_group() as tg:
            if ctx.settings.storage_sweep_interval_s > 0:
                tg.start_soon(run_sweeper, svc, ctx.settings.storage_sweep_interval_s)
            yield
            tg.cancel_scope.cancel()

    server = MCPServer(
        "storage",
        instructions="Tenant-scoped object storage. Buckets hold objects under '/'-separated keys; "
        f"objects up to {limit} bytes move inline (text or base64), larger ones over "
        "PUT/GET /v1/storage/{bucket}/{key}. Buckets have quotas and lifecycle rules (bucket_set_policy).",
        lifespan=lifespan,
    )

    async def tenant(mcp_ctx: Context) -> str:
        return await ctx.tenant_of(mcp_ctx)

    @server.tool(title="Store an object in a bucket", annotations=WRITE)
    @tool_errors
    async def storage_put(
        bucket: str, key: str, mcp_ctx: Context, text: str | None = None, base64: str | None = None,
        content_type: str | None = None, meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a small object at bucket/key, replacing any existing one. Give the body as ``text``
        (UTF-8) or ``base64``. The bucket is created on first use when allowed. Returns its metadata."""
        data = _decode(text, base64)
        if len(data) > limit:
            raise InvalidArguments(f"object is {len(data)} bytes; inline puts take up to {limit}, use PUT /v1/storage")
        ctype = content_type or ("text/plain; charset=utf-8" if text is not None else None)
        row = await svc.put(await tenant(mcp_ctx), bucket, key, data, content_type=ctype, meta=meta)
        return object_dict(row)

    @server.tool(title="Read an object from a bucket", annotations=READ)
    @tool_errors
    async def storage_get(
        bucket: str, key: str, mcp_ctx: Context, encoding: str = "auto", start: int = 0, end: int | None = None
    ) -> dict[str, Any]:
        """Read an object (or the byte range [start, end)). ``encoding``: ``text``, ``base64`` or
        ``auto`` (text when it is UTF-8). Objects above the inline limit must be read in ranges or over HTTP."""
        if encoding not in {"auto", "text", "base64"}:
            raise InvalidArguments("encoding must be 'auto', 'text' or 'base64'")
        t = await tenant(mcp_ctx)
        row = await svc.stat(t, bucket, key)
        stop = row.size if end is None else min(end, row.size)
        if stop - start > limit:
            raise InvalidArguments(
                f"range is {stop - start} bytes; inline reads take up to {limit}: pass start/end or use GET /v1/storage"
            )
        row, data = await svc.read(t, bucket, key, start=start, end=end)
        out = object_dict(row) | {"range": [start, start + len(data)]}
        if encoding != "base64":
            try:
                return out | {"text": data.decode("utf-8")}
            except UnicodeDecodeError:
                if encoding == "text":
                    raise InvalidArguments("object is not UTF-8 text; use encoding='base64'") from None
        return out | {"base64": b64encode(data).decode()}

    @server.tool(title="Delete an object", annotations=WRITE)
    @tool_errors
    async def storage_delete(bucket: str, key: str, mcp_ctx: Context) -> dict[str, Any]:
        """Delete an object (a versioned bucket keeps it as a noncurrent version). ``deleted`` is
        false when there was nothing to delete."""
        return {"bucket": bucket, "key": key, "deleted": await svc.delete(await tenant(mcp_ctx), bucket, key)}

    @server.tool(title="List the objects in a bucket", annotations=READ)
    @tool_errors
    async def storage_list(
        bucket: str, mcp_ctx: Context, prefix: str = "", after: str = "", limit: int = 100
    ) -> dict[str, Any]:
        """List objects in key order, optionally under ``prefix``. Pages of up to ``limit`` (≤ 1000);
        pass ``next_after`` back as ``after`` to continue, it is null on the last page."""
        rows, nxt = await svc.list_objects(await tenant(mcp_ctx), bucket, prefix=prefix, after=after, limit=limit)
        return {"objects": [object_dict(r) for r in rows], "next_after": nxt}

    @server.tool(title="An object's metadata", annotations=READ)
    @tool_errors
    async def storage_stat(bucket: str, key: str, mcp_ctx: Context, versions: bool = False) -> dict[str, Any]:
        """Metadata of an object: size, sha256, content type, times, user meta; with ``versions`` its
        noncurrent versions too (newest first)."""
        t = await tenant(mcp_ctx)
        out = object_dict(await svc.stat(t, bucket, key))
        if versions:
            out["versions"] = [object_dict(v) for v in await svc.versions(t, bucket, key)]
        return out

    @server.tool(title="Create a bucket", annotations=CREATE)
    @tool_errors
    async def bucket_create(
        name: str, mcp_ctx: Context, backend: str = "default", quota_bytes: int | None = None,
        quota_objects: int | None = None, expire_days: float | None = None, versioning: bool = False,
        keep_versions: int | None = None,
    ) -> dict[str, Any]:
        """Create a bucket with its policy: backend (a configured name), quotas (null = unlimited),
        ``expire_days`` (objects older are removed by the sweep), versioning and how many noncurrent
        versions to keep. Fails with conflict if it exists."""
        policy = cbcp.BucketPolicy(backend, quota_bytes, quota_objects, expire_days, versioning, keep_versions)
        return cbcp.bucket_dict(await cbcp.create_bucket(ctx.db, await tenant(mcp_ctx), name, policy, backends))

    @server.tool(title="Change a bucket's quotas and lifecycle", annotations=WRITE)
    @tool_errors
    async def bucket_set_policy(name: str, policy: dict[str, Any], mcp_ctx: Context) -> dict[str, Any]:
        """Change some of a bucket's policy fields (backend, quota_bytes, quota_objects, expire_days,
        versioning, keep_versions; null clears a limit). Tighter lifecycle rules apply at the next sweep."""
        return cbcp.bucket_dict(await cbcp.set_policy(ctx.db, await tenant(mcp_ctx), name, policy, backends))

    @server.tool(title="Bucket usage and quotas", annotations=READ)
    @tool_errors
    async def bucket_usage(mcp_ctx: Context, name: str | None = None) -> dict[str, Any]:
        """A bucket's policy and usage (objects, bytes incl. kept versions); without ``name``, every bucket."""
        t = await tenant(mcp_ctx)
        if name is not None:
            return cbcp.bucket_dict(await cbcp.get_bucket(ctx.db, t, name), await cbcp.usage(ctx.db, t, name))
        rows = await cbcp.list_buckets(ctx.db, t)
        return {"buckets": [cbcp.bucket_dict(b, await cbcp.usage(ctx.db, t, b.name)) for b in rows]}

    @server.tool(title="Apply a bucket's lifecycle rules now", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    @tool_errors
    async def bucket_sweep(name: str, mcp_ctx: Context) -> dict[str, Any]:
        """Apply a bucket's lifecycle rules now: remove expired objects and versions beyond
        ``keep_versions``, and reap bytes left by interrupted writes. Returns the counts."""
        return (await sweep_bucket(svc, await tenant(mcp_ctx), name)).as_dict()

    @server.resource(
        "storage://{bucket}/{+key}", name="object", mime_type="application/octet-stream",
        description="An object's bytes (text for text/* objects); the inline limit applies.",
    )
    async def read_object(bucket: str, key: str, mcp_ctx: Context) -> str | bytes:
        try:
            t = await tenant(mcp_ctx)
            row = await svc.stat(t, bucket, key)
            if row.size > limit:
                raise InvalidArguments(f"object is {row.size} bytes; read it with GET /v1/storage/{bucket}/{key}")
            row, data = await svc.read(t, bucket, key)
        except NotFound as exc:
            raise ResourceNotFoundError(exc.message) from exc
        except VsmError as exc:
            raise ResourceError(f"{exc.label}: {exc.message}") from exc
        if row.content_type.startswith("text/"):
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return data

    return server
