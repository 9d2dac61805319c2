"""A rule's action runs through the router's dispatcher as the rule's owner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from router.runtime import RouterRuntime
from tests.router_runtime import started_runtime
from tests.unit.router import cache_upstream
from vsm_mcp.auth import Principal
from vsm_mcp.bus.events import Event
from vsm_mcp.config import load_settings
from vsm_mcp.tenants import ensure_tenant

pytestmark = pytest.mark.anyio
ENTRIES: list[dict[str, Any]] = [
    {"name": "cep", "kind": "builtin", "target": "servers.cep.server:build",
     "tool_tags": {"cep_rule_put": ["events:write"]}},
    {"name": "c", "kind": "builtin", "target": "tests.unit.router.cache_upstream:build",
     "tool_tags": {"lookup": ["search:read"]}},
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def running() -> AsyncIterator[tuple[RouterRuntime, Principal]]:
    async with started_runtime(load_settings(rate_limit=0, tool_cache=False), ENTRIES) as rt:
        tenant = (await ensure_tenant(rt.ctx.db, "acme")).id
        yield rt, Principal(tenant_id=tenant, scopes=frozenset({"events:write", "search:read"}), key_id="k-owner")


async def test_a_match_calls_a_tool_as_the_rule_owner_with_values_from_the_match() -> None:
    cache_upstream.CALLS.clear()
    async with running() as (rt, owner):
        put = await rt.dispatcher.call_tool(owner, "cep__cep_rule_put", {
            "name": "lookup-failed", "rule": "job.failed[data.code >= 500] by data.job",
            "action": {"tool": "c__lookup", "arguments": {"q": "job ${first.data.job} (${key[0]})"}},
        })
        assert not put.is_error, put.content
        failures = await rt.ctx.bus.subscribe(["cep.action.failed.#"])
        await rt.ctx.bus.publish(Event(topic="job.failed", tenant=owner.tenant_id, data={"job": "j9", "code": 404}))
        await rt.ctx.bus.publish(Event(topic="job.failed", tenant=owner.tenant_id, data={"job": "j7", "code": 503}))
        for _ in range(400):
            if "job j7 (j7)" in cache_upstream.CALLS:
                break
            await anyio.sleep(0.05)
        assert set(cache_upstream.CALLS) == {"job j7 (j7)"}  # the 404 did not match
        # The owner's scopes travel with the rule: without search:read the action is refused.
        weak = Principal(tenant_id=owner.tenant_id, scopes=frozenset({"events:write"}), key_id="k-weak")
        await rt.dispatcher.call_tool(weak, "cep__cep_rule_put", {
            "name": "weak", "rule": "job.late", "action": {"tool": "c__lookup", "arguments": {"q": "late"}},
        })
        await rt.ctx.bus.publish(Event(topic="job.late", tenant=owner.tenant_id, data={}))
        with anyio.fail_after(20):
            failed = await anext(aiter(failures))
        assert failed.topic == "cep.action.failed.weak" and "search:read" in failed.data["error"]
        assert "late" not in cache_upstream.CALLS
        await failures.aclose()
