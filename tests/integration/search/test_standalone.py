"""``python -m servers.search`` runs alone over stdio (default tenant, SQLite under VSM_HOME)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio
ROOT = str(Path(__file__).resolve().parents[3])


async def test_runs_alone_over_stdio(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "servers.search", "--transport", "stdio"], cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": ROOT, "VSM_HOME": str(tmp_path / "alone"), "VSM_EMBEDDER": "hash:32"},
    )
    async with Client(params) as c:
        assert not (await c.call_tool("collection_create", {"name": "solo"})).is_error
        docs = [{"id": "a", "text": "alpha beta"}, {"id": "b", "text": "gamma delta"}]
        assert not (await c.call_tool("index_documents", {"collection": "solo", "documents": docs})).is_error
        res = await c.call_tool("search", {"collection": "solo", "query": "gamma", "k": 1})
        assert res.structured_content is not None
        assert [r["id"] for r in res.structured_content["results"]] == ["b"]
