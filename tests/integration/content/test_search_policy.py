"""Property: container_search returns only the caller's tenant's containers, only those whose policy
lets the caller read them, and (with k above their number) every one that does."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers.content.policy import ContainerPolicy
from tests.integration.content.conftest import Stack
from vsm_mcp.auth import grants

pytestmark = pytest.mark.anyio
_run = itertools.count()

# Every caller holds content:read (the grant the router checks before the tool runs); the
# container policies then choose among callers by their other scopes and their key.
SELECTORS = ["*", "scope:content:write", "scope:cms", "scope:storage:read", "key:k1", "key:k2"]
SCOPES = ["content:write", "content", "cms", "cms:read", "storage:read", "search"]
policies = st.fixed_dictionaries({
    "read": st.lists(st.sampled_from(SELECTORS), min_size=1, max_size=3),
    "deny": st.lists(st.sampled_from(SELECTORS[1:]), max_size=2),
})
containers = st.lists(st.tuples(st.sampled_from(["a", "b"]), policies), min_size=1, max_size=6)
callers = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.lists(st.sampled_from(SCOPES), max_size=3), st.sampled_from(["", "k1", "k2"])),
    min_size=1, max_size=4,
)


def may_read(policy: dict[str, list[str]], scopes: list[str], key: str) -> bool:
    """The reference rule, written independently of ContainerPolicy.allows."""

    def match(sel: str) -> bool:
        if sel == "*":
            return True
        kind, _, value = sel.partition(":")
        return (key != "" and value == key) if kind == "key" else grants(frozenset(scopes), [value])

    return any(match(s) for s in policy["read"]) and not any(match(s) for s in policy["deny"])


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(made=containers, who=callers, mode=st.sampled_from(["hybrid", "bm25", "vector"]))
async def test_search_respects_tenant_and_policy(stack: Stack, made: list[Any], who: list[Any], mode: str) -> None:
    run = next(_run)
    tenants = {t: f"prop-{run}-{t}" for t in ("a", "b")}
    owned: dict[str, dict[str, Any]] = {}
    for n, (t, policy) in enumerate(made):
        out = await stack.call(
            "ingest_item", tenants[t], source=f"item:{run}:{n}", text=f"zebra crossing report number {n} of run {run}",
            policy=policy,
        )
        owned[out["container_id"]] = {"tenant": tenants[t], "policy": ContainerPolicy.parse(policy).as_dict()}
    for t, scopes, key in who:
        tenant = tenants[t]
        res = await stack.call("container_search", tenant, scopes=["content:read", *scopes], key=key,
                               query="zebra crossing report", k=50, mode=mode)
        got = {r["container_id"] for r in res["results"]}
        expected = {
            cid for cid, o in owned.items() if o["tenant"] == tenant and may_read(o["policy"], ["content:read", *scopes], key)
        }
        assert got <= set(owned), "a result from outside this run"
        assert all(owned[c]["tenant"] == tenant for c in got), "another tenant's container"
        assert got == expected
