"""The policy MCP server through the real SDK client (in-memory transport), tenants from _meta."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import wasmtime
from mcp import Client

from servers.policy.server import build
from tests.integration.policy.conftest import Env
from tests.mcp_calls import call, error_text

pytestmark = pytest.mark.anyio

HOURS = """
default allow
deny after_hours "deletes only 09-17 UTC" when tool.name == "storage_delete" and (context.hour < 9 or context.hour >= 17)
"""


@pytest.fixture
async def client(sqlite_env: Env) -> AsyncIterator[tuple[Client, Env]]:
    async with Client(build(sqlite_env.ctx)) as c:
        yield c, sqlite_env


async def test_put_versions_get_list_delete_per_tenant(client: tuple[Client, Env]) -> None:
    c, env = client
    v1 = await call(c, env.a, "policy_put", name="hours", source=HOURS)
    assert (v1["version"], v1["active"], v1["rules"], v1["kind"]) == (1, True, 1, "source")
    v2 = await call(c, env.a, "policy_put", name="hours", source=HOURS.replace("17", "18"))
    assert v2["version"] == 2 and v2["sha256"] != v1["sha256"]
    got = await call(c, env.a, "policy_get", name="hours")
    assert got["version"] == 2 and "18" in got["source"] and got["rule_list"][0]["id"] == "after_hours"
    old = await call(c, env.a, "policy_get", name="hours", version=1)
    assert old["active"] is False and "17" in old["source"]
    listed = await call(c, env.a, "policy_list")
    assert [(p["name"], p["version"]) for p in listed["policies"]] == [("hours", 2)]
    every = await call(c, env.a, "policy_list", all_versions=True)
    assert [p["version"] for p in every["policies"]] == [2, 1]
    # Tenant b sees none of it.
    assert (await call(c, env.b, "policy_list"))["policies"] == []
    assert "no policy 'hours'" in await error_text(c, env.b, "policy_get", name="hours")
    assert (await call(c, env.a, "policy_delete", name="hours"))["deleted_versions"] == 2
    assert "no policy 'hours'" in await error_text(c, env.a, "policy_delete", name="hours")


async def test_put_rejects_broken_policies_with_a_clear_error(client: tuple[Client, Env]) -> None:
    c, env = client
    text = await error_text(c, env.a, "policy_put", name="bad", source="default allow\ndeny x when tool.name >")
    assert "bad.policy:2:24: expected a value" in text
    text = await error_text(c, env.a, "policy_put", name="bad", source="default allow\ndeny x when input.size > 3")
    assert "bad.policy:2:13: input.size is not in the input schema" in text
    ok = await call(
        c, env.a, "policy_put", name="sized", source="default allow\ndeny x when input.size > 3",
        input_schema={"type": "object", "properties": {"size": {"type": "integer"}}},
    )
    assert ok["version"] == 1
    assert "policy name '../x' is invalid" in await error_text(c, env.a, "policy_put", name="../x", source=HOURS)
    both = await error_text(c, env.a, "policy_put", name="x", source=HOURS, wasm_base64="AA==")
    assert "exactly one of 'source'" in both
    assert (await call(c, env.a, "policy_list"))["policies"][0]["name"] == "sized"  # nothing broken stored


def _b64(wat: str) -> str:
    return base64.b64encode(wasmtime.wat2wasm(wat)).decode()


async def test_external_wasm_is_validated_against_the_abi_at_put(client: tuple[Client, Env]) -> None:
    c, env = client
    wrong = _b64('(module (memory (export "memory") 1) (func (export "evaluate") (result i32) (i32.const 0)))')
    assert "must export a function 'vsm_abi_version'" in await error_text(
        c, env.a, "policy_put", name="ext", wasm_base64=wrong
    )
    with_imports = _b64('(module (import "env" "open" (func)) (memory (export "memory") 1))')
    assert "imports env.open; a policy module may import nothing" in await error_text(
        c, env.a, "policy_put", name="ext", wasm_base64=with_imports
    )
    assert "not valid base64" in await error_text(c, env.a, "policy_put", name="ext", wasm_base64="%%%")
    # A module built by our own compiler, sent as bytes, is accepted like any external one.
    built = await call(c, env.a, "policy_put", name="src", source=HOURS)
    module = (await call(c, env.a, "policy_get", name="src", include_wasm=True))["wasm_base64"]
    ext = await call(c, env.a, "policy_put", name="ext", wasm_base64=module)
    assert (ext["kind"], ext["sha256"]) == ("wasm", built["sha256"])


async def test_policy_test_evaluates_source_stored_and_all_active(client: tuple[Client, Env]) -> None:
    c, env = client
    late = {"tool": {"name": "storage_delete"}, "context": {"time": "2026-11-26T20:00:00Z"}}
    out = await call(c, env.a, "policy_test", input=late, source=HOURS)
    assert out["decision"]["effect"] == "deny" and out["decision"]["rule"] == "after_hours"
    assert out["rules"] == [
        {"rule": "after_hours", "effect": "deny", "reason": "deletes only 09-17 UTC", "matched": True, "line": 3}
    ]
    assert (await call(c, env.a, "policy_test", input=late))["effect"] == "allow"  # nothing stored yet
    await call(c, env.a, "policy_put", name="hours", source=HOURS)
    stored = await call(c, env.a, "policy_test", input=late, name="hours")
    assert stored["effect"] == "deny" and stored["denied_by"]["rule"] == "after_hours"
    # Without a time in the input the server's clock (10:00 UTC here) is used.
    now = await call(c, env.a, "policy_test", input={"tool": {"name": "storage_delete"}})
    assert now["effect"] == "allow"
    assert "unknown key 'tol'" in await error_text(c, env.a, "policy_test", input={"tol": {}})
