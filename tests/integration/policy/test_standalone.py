"""`python -m servers.policy` runs alone over stdio (own SQLite, default tenant)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[3]


async def test_policy_server_alone_over_stdio(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VSM_")}
    env |= {"VSM_HOME": str(tmp_path / ".vsm"), "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(command=sys.executable, args=["-m", "servers.policy"], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"policy_put", "policy_get", "policy_list", "policy_test", "policy_delete"}
        put = await client.call_tool("policy_put", {"name": "p", "source": 'default deny "no"\nallow a when tool.name == "x"'})
        assert not put.is_error and put.structured_content is not None
        assert put.structured_content["version"] == 1
        res = await client.call_tool("policy_test", {"input": {"tool": {"name": "y"}}, "name": "p"})
        assert res.structured_content is not None and res.structured_content["effect"] == "deny"
