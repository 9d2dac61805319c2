"""Through the whole router: the llm entry of manifests/default.yaml mounted in-process; the MCP
tool (/mcp) and the OpenAI edge (/v1) share one engine, so one's miss is the other's hit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp import Client

from router.app import create_app
from router.upstreams.manifest import DEFAULT_MANIFEST, parse_manifest
from tests.asgi_server import serve_asgi as serve
from tests.integration.llm_cdn.conftest import make_settings
from tests.integration.llm_cdn.fake_openai import FakeState
from vsm_mcp import migrate

pytestmark = pytest.mark.anyio
Fakes = tuple[str, FakeState, str, FakeState]


def llm_entries(tmp_path: Path) -> tuple[list[dict[str, Any]], Path]:
    """The llm entry of the packaged default.yaml, alone in a manifest file."""
    entries = [u for u in yaml.safe_load(Path(DEFAULT_MANIFEST).read_text())["upstreams"] if u["name"] == "llm"]
    assert len(entries) == 1, "manifests/default.yaml must mount llm"
    manifest = tmp_path / "llm.yaml"
    manifest.write_text(yaml.safe_dump({"upstreams": entries}))
    return entries, manifest


async def test_mcp_tool_and_openai_edge_share_the_cache(fakes: Fakes, tmp_path: Path) -> None:
    entries, manifest = llm_entries(tmp_path)
    settings = make_settings(fakes, home=tmp_path / ".vsm", manifests=[str(manifest)])
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    specs = parse_manifest({"upstreams": entries}, "llm.yaml")
    messages = [{"role": "user", "content": "through the router"}]
    async with serve(create_app(settings, specs=specs)) as url:
        async with Client(f"{url}/mcp", mode="legacy") as client:
            res = await client.call_tool("llm__llm_complete", {"messages": messages, "model": "main",
                                                               "params": {"temperature": 0}})
            assert not res.is_error, res.content
            assert res.structured_content is not None and res.structured_content["cache"] == "miss"
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            r = await http.post("/v1/chat/completions", json={"model": "main", "messages": messages, "temperature": 0})
            models = await http.get("/v1/models")
            metrics = (await http.get("/metrics")).text
    assert r.status_code == 200 and r.headers["x-vsm-cache"] == "hit"
    assert r.json()["choices"][0]["message"]["content"] == "main says: through the router [call 1]"
    assert "main" in {m["id"] for m in models.json()["data"]}
    assert fakes[1].calls["main"] == 1
    assert 'vsm_llm_cache_lookups_total{result="hit"} 1.0' in metrics
    assert 'vsm_llm_upstream_calls_total{model="main"} 1.0' in metrics
