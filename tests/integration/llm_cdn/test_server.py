"""The MCP face: tools called through an in-memory MCP client, tenant taken from request _meta."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp
import pytest

from servers.llm_cdn.server import build
from tests.integration.llm_cdn.conftest import make_settings
from tests.integration.llm_cdn.fake_openai import FakeState
from vsm_mcp.context import SCOPES_META_KEY, TENANT_META_KEY, ServerContext

pytestmark = pytest.mark.anyio
Fakes = tuple[str, FakeState, str, FakeState]


def _meta(tenant: str, scopes: list[str]) -> dict[str, Any]:
    return {TENANT_META_KEY: tenant, SCOPES_META_KEY: scopes}


async def test_tools_cache_per_tenant_and_purge(fakes: Fakes, tmp_path: Path) -> None:
    settings = make_settings(fakes, home=tmp_path / ".vsm")
    ctx = ServerContext.create(settings)
    server = build(ctx)
    args = {"messages": [{"role": "user", "content": "hi"}], "model": "main", "params": {"temperature": 0}}
    async with mcp.Client(server) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"llm_complete", "llm_embed", "llm_cache_stats", "llm_cache_purge"}
        a1 = await client.call_tool("llm_complete", args, meta=_meta("ta", ["llm"]))
        a2 = await client.call_tool("llm_complete", args, meta=_meta("ta", ["llm"]))
        b1 = await client.call_tool("llm_complete", args, meta=_meta("tb", ["llm"]))
        assert [r.structured_content["cache"] for r in (a1, a2, b1)] == ["miss", "hit", "miss"]  # type: ignore[index]
        emb = await client.call_tool("llm_embed", {"input": "x", "model": "emb"}, meta=_meta("ta", ["llm"]))
        assert not emb.is_error and emb.structured_content["response"]["data"]  # type: ignore[index]
        denied = await client.call_tool("llm_cache_purge", {"tenant": "tb"}, meta=_meta("ta", ["llm:call"]))
        assert denied.is_error and "llm:admin" in denied.content[0].text  # type: ignore[union-attr]
        purged = await client.call_tool("llm_cache_purge", {"model": "main"}, meta=_meta("ta", ["llm"]))
        assert purged.structured_content["removed"] == 1  # type: ignore[index]
        again = await client.call_tool("llm_complete", args, meta=_meta("ta", ["llm"]))
        assert again.structured_content["cache"] == "miss"  # type: ignore[index]
        still = await client.call_tool("llm_complete", args, meta=_meta("tb", ["llm"]))
        assert still.structured_content["cache"] == "hit"  # type: ignore[index]
        bad = await client.call_tool("llm_complete", {**args, "model": "down"}, meta=_meta("ta", ["llm"]))
        assert bad.is_error and "no LLM provider reachable" in bad.content[0].text  # type: ignore[union-attr]
        stats = (await client.call_tool("llm_cache_stats", {})).structured_content
        assert stats is not None and stats["hits"]["exact"] == 2 and stats["upstream_calls"]["main"] == 3
    await ctx.extras["llm_cdn"].aclose()
    await ctx.aclose()
