"""The content server: semantic containers and the ingest pipeline (fetch → normalize → containerize → index).

A container is a tenant's versioned document: original bytes in storage, normalized text and
immutable content-addressed versions in ``content_*`` tables, chunks and embeddings in the
search server's collection, plus metadata, lineage, a policy and capabilities (see
``policy.py``). Tools:

* ``ingest_url`` / ``ingest_file`` — start a durable ingest job (URLs, optionally following
  links; or storage objects); ``ingest_status`` follows it.
* ``ingest_items`` — the same for a batch (a connector's page: one pass, one index call);
* ``ingest_item`` — the entry point for connectors: one item's bytes + metadata + lineage,
  ingested inline (idempotent by content hash, so a connector's retried step is safe).
* ``container_get``, ``container_versions``, ``container_search`` (hybrid, filtered by tenant
  and by each container's policy), ``container_delete`` (chunks, blobs and rows).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.content import jobs, pipeline
from servers.content.engine import ContentEngine, engine_of
from servers.content.fetch import check_url
from servers.content.pipeline import Item
from servers.content.policy import ContainerPolicy, parse_capabilities
from servers.tool_errors import tool_errors
from vsm_mcp.auth import Principal
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments

READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
INGEST = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=False, open_world_hint=True)
WRITE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=False, open_world_hint=False)
DELETE = ToolAnnotations(read_only_hint=False, idempotent_hint=True, destructive_hint=True, open_world_hint=False)
MAX_ITEMS = 1000
RUNNER_KEY = "content.jobs"


async def principal_of(ctx: ServerContext, mcp_ctx: Context) -> Principal:
    """The caller (tenant, scopes, key) as the router passed it in ``_meta``."""
    return await ctx.principal_of(mcp_ctx)


def _template(policy: dict[str, Any] | None, capabilities: list[str] | None, meta: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "policy": ContainerPolicy.parse(policy).as_dict() if policy else {},
        "capabilities": parse_capabilities(capabilities) if capabilities is not None else [],
        "meta": dict(meta or {}),
    }


def runner_of(ctx: ServerContext, engine: ContentEngine) -> jobs.JobRunner:
    runner = ctx.extras.get(RUNNER_KEY)
    if runner is None:
        runner = ctx.extras[RUNNER_KEY] = jobs.JobRunner(engine)
    assert isinstance(runner, jobs.JobRunner)
    return runner


def build(ctx: ServerContext) -> MCPServer:
    engine = engine_of(ctx)
    jobs.attach(engine)
    runner = runner_of(ctx, engine)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await runner.aclose()
            await engine.aclose()

    server = MCPServer(
        "content",
        instructions="Semantic containers: ingest web pages, files and connector items into versioned, "
        "searchable containers (original bytes, normalized text, chunks), each with its own policy.",
        lifespan=lifespan,
    )

    async def start(mcp_ctx: Context, items: list[Item], depth: int, max_documents: int, same_host: bool,
                    template: dict[str, Any], wait: bool) -> dict[str, Any]:
        principal = await principal_of(ctx, mcp_ctx)
        spec = runner.spec(principal.tenant_id, items, depth=depth, max_documents=max_documents,
                           same_host=same_host, template=template)
        job = await runner.start(spec)
        if wait:
            return await runner.wait(principal.tenant_id, job, timeout=ctx.settings.content_wait_s)
        return {"job": job, "state": "queued", "total": len(items)}

    @server.tool(title="Ingest web pages: fetch (crawl) URLs and make them searchable documents", annotations=INGEST)
    @tool_errors
    async def ingest_url(
        urls: list[str], mcp_ctx: Context, depth: int = 0, max_documents: int = 1000, same_host: bool = True,
        policy: dict[str, Any] | None = None, capabilities: list[str] | None = None,
        meta: dict[str, Any] | None = None, wait: bool = False,
    ) -> dict[str, Any]:
        """Ingest web pages into containers (a durable job; follow it with ingest_status). ``depth``:
        follow links found in HTML this many hops (on the start URLs' hosts unless ``same_host`` is
        false), up to ``max_documents``. Private, loopback, link-local and metadata addresses are
        refused (also after redirects and DNS) unless VSM_FETCH_ALLOW lists them. ``policy``
        {read: [...], deny: [...]} and ``capabilities`` apply to the containers made. ``wait``:
        answer when the job has finished or after VSM_CONTENT_WAIT_S with the status so far
        (then follow it with ingest_status)."""
        if not urls or len(urls) > MAX_ITEMS:
            raise InvalidArguments(f"urls must hold 1..{MAX_ITEMS} URLs")
        for url in urls:  # refuse a forbidden seed now, with its reason; later hops fail their document
            _scheme, host, port = check_url(url)
            await engine.fetcher.guard.check(url, host, port)
        if not 0 <= depth <= 5:
            raise InvalidArguments("depth must be in 0..5")
        if not 1 <= max_documents <= 1_000_000:
            raise InvalidArguments("max_documents must be in 1..1000000")
        template = _template(policy, capabilities, meta)
        items = [Item(kind="url", ref=u, **template) for u in urls]
        return await start(mcp_ctx, items, depth, max_documents, same_host, template, wait)

    @server.tool(title="Ingest stored files (PDF, HTML, text) from a storage bucket into searchable documents", annotations=INGEST)
    @tool_errors
    async def ingest_file(
        bucket: str, keys: list[str], mcp_ctx: Context, content_type: str | None = None,
        policy: dict[str, Any] | None = None, capabilities: list[str] | None = None,
        meta: dict[str, Any] | None = None, wait: bool = False,
    ) -> dict[str, Any]:
        """Ingest storage objects (bucket + keys) into containers, as a durable job. The container's
        source is ``storage:<bucket>/<key>``; the bytes are copied into the content bucket per version."""
        if not keys or len(keys) > MAX_ITEMS:
            raise InvalidArguments(f"keys must hold 1..{MAX_ITEMS} object keys")
        template = _template(policy, capabilities, meta)
        items = [Item(kind="storage", ref=f"{bucket}/{k}", content_type=content_type or "", **template) for k in keys]
        return await start(mcp_ctx, items, 0, len(items), True, template, wait)

    @server.tool(title="Ingest one document given with its text or bytes", annotations=INGEST)
    @tool_errors
    async def ingest_item(
        source: str, mcp_ctx: Context, text: str | None = None, base64: str | None = None,
        content_type: str = "", title: str = "", lineage: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None, policy: dict[str, Any] | None = None,
        capabilities: list[str] | None = None, job: str = "items",
    ) -> dict[str, Any]:
        """Ingest one item handed over with its bytes (connectors use this): ``source`` is its stable
        id (``<connector>:<external id>``), the body is ``text`` or ``base64``, ``lineage`` says
        where it came from ({connector, cursor, external_id, url, …}). Runs inline: normalize →
        containerize → index. Idempotent: the same content again makes no version. Returns the
        container id, version number and whether a version was created; an unreadable body is
        reported (and its container marked failed) with the reason."""
        if not source or len(source) > 2048:
            raise InvalidArguments("source must be 1..2048 characters")
        if (text is None) == (base64 is None):
            raise InvalidArguments("give exactly one of 'text' or 'base64'")
        try:
            data = text.encode("utf-8") if text is not None else b64decode(base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArguments("'base64' is not valid base64") from None
        if len(data) > ctx.settings.fetch_max_bytes:
            raise InvalidArguments(f"item is {len(data)} bytes; the limit is {ctx.settings.fetch_max_bytes}")
        principal = await principal_of(ctx, mcp_ctx)
        template = _template(policy, capabilities, meta)
        item = Item(kind="item", ref=source, data=data, content_type=content_type, title=title,
                    lineage={"kind": "item", **(lineage or {})}, **template)
        res = await pipeline.prepare(engine, principal.tenant_id, [item], False)
        for failure in res["failed"]:
            await jobs._publish(engine, principal.tenant_id, job, "failed", failure)
            return {"source": source, "status": "failed", "reason": failure["reason"],
                    "container_id": (res["failed_containers"] or [None])[0]}
        await pipeline.index(engine, principal.tenant_id, res["containers"])
        out = res["outcomes"][0]
        return {"source": source, "status": "ok", "container_id": out["container_id"], "version": out["version"],
                "sha256": out["sha256"], "created": out["created"]}

    @server.tool(title="Ingest a batch of documents given with their text or bytes", annotations=INGEST)
    @tool_errors
    async def ingest_items(items: list[dict[str, Any]], mcp_ctx: Context, job: str = "items") -> dict[str, Any]:
        """Many ``ingest_item`` calls as one batch (a connector's page): each entry holds ``source``,
        ``text`` or ``base64``, and optionally ``content_type``, ``title``, ``lineage``, ``meta``.
        One normalize → containerize → index pass; idempotent by content hash like ingest_item.
        Returns one result per distinct source (status ok with container_id, version, created;
        or failed with the reason)."""
        if not items or len(items) > MAX_ITEMS:
            raise InvalidArguments(f"items must hold 1..{MAX_ITEMS} entries")
        principal = await principal_of(ctx, mcp_ctx)
        batch: list[Item] = []
        for n, it in enumerate(items):
            source, text, b64 = it.get("source"), it.get("text"), it.get("base64")
            if not isinstance(source, str) or not 0 < len(source) <= 2048:
                raise InvalidArguments(f"items[{n}].source must be 1..2048 characters")
            if (text is None) == (b64 is None):
                raise InvalidArguments(f"items[{n}]: give exactly one of 'text' or 'base64'")
            try:
                data = str(text).encode("utf-8") if text is not None else b64decode(str(b64), validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArguments(f"items[{n}].base64 is not valid base64") from None
            if len(data) > ctx.settings.fetch_max_bytes:
                raise InvalidArguments(f"items[{n}] is {len(data)} bytes; the limit is {ctx.settings.fetch_max_bytes}")
            template = _template(it.get("policy"), it.get("capabilities"), it.get("meta"))
            batch.append(Item(kind="item", ref=source, data=data, content_type=str(it.get("content_type") or ""),
                              title=str(it.get("title") or ""), lineage={"kind": "item", **(it.get("lineage") or {})},
                              **template))
        res = await pipeline.prepare(engine, principal.tenant_id, batch, False)
        for failure in res["failed"]:
            await jobs._publish(engine, principal.tenant_id, job, "failed", failure)
        await pipeline.index(engine, principal.tenant_id, res["containers"])
        results = [{"source": o["source"], "status": "ok", "container_id": o["container_id"], "version": o["version"],
                    "sha256": o["sha256"], "created": o["created"]} for o in res["outcomes"]]
        results += [{"source": f["ref"], "status": "failed", "reason": f["reason"]} for f in res["failed"]]
        return {"results": results, "created": res["created"], "unchanged": res["unchanged"], "failed": len(res["failed"])}

    @server.tool(title="Progress of an ingestion job", annotations=READ)
    @tool_errors
    async def ingest_status(job: str, mcp_ctx: Context) -> dict[str, Any]:
        """A job's progress: state (queued, running, done, failed), stage, documents done of total,
        versions created, unchanged, failed (with the last reasons), bytes, chunks indexed."""
        principal = await principal_of(ctx, mcp_ctx)
        return await runner.status(principal.tenant_id, job)

    @server.tool(title="Get an ingested document: its text, metadata and status", annotations=READ)
    @tool_errors
    async def container_get(
        container_id: str, mcp_ctx: Context, version: int | None = None, include_text: bool = False,
    ) -> dict[str, Any]:
        """A container: source, title, language, content type, status (and the failure reason),
        lineage, policy, capabilities and its current (or the given) version; ``include_text``
        adds the normalized text."""
        return await engine.get(await principal_of(ctx, mcp_ctx), container_id, version, include_text)

    @server.tool(title="Version history of an ingested document", annotations=READ)
    @tool_errors
    async def container_versions(container_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """Every version of a container, oldest first: number, sha256 of the normalized text,
        original size and sha256, where its bytes are stored, and the lineage that produced it."""
        return await engine.versions(await principal_of(ctx, mcp_ctx), container_id)

    @server.tool(title="Search the ingested documents (semantic and keyword)", annotations=READ)
    @tool_errors
    async def container_search(
        query: str, mcp_ctx: Context, k: int = 10, mode: Literal["hybrid", "vector", "bm25"] = "hybrid",
    ) -> dict[str, Any]:
        """The ``k`` containers that best match ``query`` (hybrid: embeddings + BM25 by default),
        only the caller's tenant's and only those whose policy lets the caller read them."""
        return await engine.search(await principal_of(ctx, mcp_ctx), query, k, mode)

    @server.tool(title="Delete an ingested document, its index entries and stored bytes", annotations=DELETE)
    @tool_errors
    async def container_delete(container_id: str, mcp_ctx: Context) -> dict[str, Any]:
        """Delete a container: its chunks from the index, its original bytes from storage, its
        versions. Calling it again after an interruption finishes the job."""
        return await engine.delete(await principal_of(ctx, mcp_ctx), container_id)

    return server
