"""The README's stdio example (the npm memory server) writes on its first call (issue 19: it
failed with ENOENT because its file lived in a folder nobody created). Needs npx and the npm
registry, like the conformance suite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import anyio
import pytest

from router.runtime import RouterRuntime
from router.upstreams.manifest import load_manifests
from vsm_mcp import migrate
from vsm_mcp.auth import Principal
from vsm_mcp.config import load_settings
from vsm_mcp.context import ServerContext

pytestmark = [
    pytest.mark.anyio, pytest.mark.slow,
    pytest.mark.skipif(shutil.which("npx") is None, reason="needs npx (Node.js)"),
]
EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "stdio-memory.yaml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.timeout(600)
async def test_memory_example_writes_its_file(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home", rate_limit=0)
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    specs = [s for s in load_manifests([EXAMPLE], home=settings.home) if s.name == "memory"]
    rt = RouterRuntime(ctx, specs)
    try:
        async with anyio.create_task_group() as tg:
            await rt.start(tg, wait=300)
            assert rt.upstreams["memory"].state == "ready", rt.upstreams["memory"].last_error
            who = Principal(tenant_id="t", scopes=frozenset({"*"}))
            result = await rt.dispatcher.call_tool(who, "memory__create_entities", {
                "entities": [{"name": "vsm", "entityType": "project", "observations": ["routes MCP calls"]}]
            })
            assert not result.is_error, result.content
            await rt.aclose()
            tg.cancel_scope.cancel()
    finally:
        await ctx.aclose()
    stored = (settings.home / "memory.json").read_text()
    assert json.loads(stored.splitlines()[0])["name"] == "vsm"
