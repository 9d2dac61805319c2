"""Every built-in tool the tool-result cache would serve by default (readOnlyHint + idempotentHint)
has an explicit ``cacheable`` decision in manifests/default.yaml: a read whose answer changes with
writes (``*_get``, ``*_list``, status) must say ``false``, or clients get stale answers for a TTL.
Regression guard for server authors; the cache itself is router/tool_cache.py."""

from __future__ import annotations

import importlib

import pytest

from router.upstreams.manifest import load_manifests
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_cacheable_by_default_builtin_tool_is_decided_in_default_yaml() -> None:
    ctx = ServerContext.create(load_settings())
    undecided: list[str] = []
    try:
        for spec in load_manifests():
            if spec.kind != "builtin":
                continue
            module, _, attr = spec.target.partition(":")
            server = getattr(importlib.import_module(module), attr)(ctx)
            for tool in await server.list_tools():
                ann = tool.annotations
                if ann and ann.read_only_hint and ann.idempotent_hint and tool.name not in spec.cacheable:
                    undecided.append(f"{spec.name}.{tool.name}")
    finally:
        await ctx.aclose()
    assert not undecided, (
        "readOnly+idempotent built-in tools without a cacheable decision in manifests/default.yaml "
        f"(add cacheable: {{tool: false}} if the answer changes with writes, true if it never does): {undecided}"
    )
