"""The index stage's other half: chunks and embeddings live in the search server's collection.

The content server never imports the search server; it calls its tools through the router
(``ServerContext.tools``) as a *service principal* of the caller's tenant holding only the
``search`` scope (so content readers need ``content`` scopes, not ``search`` ones). One
collection per tenant (``VSM_CONTENT_COLLECTION``), created on first use with the search
server's default embedder and ``VSM_CONTENT_INDEX_BACKEND``. The search document id is the
container id, so re-indexing a container replaces all its chunks (idempotent: a retried index
step leaves exactly one set of chunks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from vsm_mcp.auth import Principal
from vsm_mcp.errors import Conflict, InvalidArguments, NotFound, UpstreamUnavailable, VsmError
from vsm_mcp.hooks import ToolCaller

SERVICE_KEY = "service:content"
MAX_DOCS_PER_CALL = 200  # keeps one index call's request and embedding work bounded

_TOOL_ERROR = re.compile(r"(?:Error executing tool \S+: )?([a-z_]+): (.*)", re.S)
_LABELS: dict[str, type[VsmError]] = {
    "not_found": NotFound, "conflict": Conflict, "invalid_arguments": InvalidArguments,
}


def service_principal(tenant: str) -> Principal:
    return Principal(tenant_id=tenant, scopes=frozenset({"search"}), key_id=SERVICE_KEY)


def _result(res: Any, tool: str) -> dict[str, Any]:
    """A CallToolResult's structured content, or the tool error mapped back to its class."""
    if getattr(res, "is_error", False):
        text = " ".join(getattr(c, "text", "") for c in res.content)
        m = _TOOL_ERROR.match(text)  # servers/tool_errors.py: "<label>: <message>", maybe behind the SDK's prefix
        label, message = (m.group(1), m.group(2)) if m else ("", text)
        raise _LABELS.get(label, UpstreamUnavailable)(f"{tool}: {message}")
    data = getattr(res, "structured_content", None)
    if data is None:
        texts = [getattr(c, "text", "") for c in getattr(res, "content", [])]
        data = json.loads(texts[0]) if texts else {}
    return dict(data)


class SearchIndex:
    """Chunks of containers in the tenant's content collection, through the search tools."""

    def __init__(self, tools: Callable[[], ToolCaller], collection: str, backend: str = "usearch") -> None:
        """``tools`` gives the router's caller at call time (``ServerContext.tools``: it raises
        UpstreamUnavailable for a server run without the router)."""
        self.tools, self.collection, self.backend = tools, collection, backend
        self._ready: set[str] = set()

    async def _call(self, tenant: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        res = await self.tools().call(service_principal(tenant), f"search__{tool}", args, source="content")
        return _result(res, f"search__{tool}")

    async def ensure(self, tenant: str) -> None:
        if tenant in self._ready:
            return
        try:
            await self._call(tenant, "collection_create", {"name": self.collection, "backend": self.backend})
        except Conflict:
            pass  # it exists
        self._ready.add(tenant)

    async def upsert(self, tenant: str, docs: Sequence[dict[str, Any]]) -> int:
        """Index ``{id, text, metadata, tags}`` documents (replacing their chunks); chunks written."""
        await self.ensure(tenant)
        chunks = 0
        for start in range(0, len(docs), MAX_DOCS_PER_CALL):
            out = await self._call(tenant, "index_documents", {
                "collection": self.collection, "documents": list(docs[start : start + MAX_DOCS_PER_CALL]),
            })
            chunks += int(out.get("chunks", 0))
        return chunks

    async def delete(self, tenant: str, ids: Sequence[str]) -> int:
        await self.ensure(tenant)
        out = await self._call(tenant, "delete_documents", {"collection": self.collection, "ids": list(ids)})
        return int(out.get("deleted_chunks", 0))

    async def search(self, tenant: str, query: str, k: int, tags_any: Sequence[str] | None, mode: str) -> list[dict[str, Any]]:
        """Best chunks; none when the tenant has no collection yet (nothing ingested)."""
        args: dict[str, Any] = {"collection": self.collection, "query": query, "k": k, "mode": mode}
        if tags_any is not None:
            args["filter"] = {"tags_any": list(tags_any)}
        try:
            return list((await self._call(tenant, "search", args)).get("results", []))
        except NotFound:
            return []

    async def chunk_count(self, tenant: str) -> int:
        await self.ensure(tenant)
        return int((await self._call(tenant, "collection_stats", {"collection": self.collection})).get("chunks", 0))
