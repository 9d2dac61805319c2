"""The policy server: ``policy_put``, ``policy_get``, ``policy_list``, ``policy_test``, ``policy_delete``.

Policies are per tenant and versioned; a put compiles (or validates an externally built
module against the ABI) before anything is stored, so a broken policy never reaches the
router. Each change publishes ``policy.changed``; the router's authorizer reloads on it.
"""

from __future__ import annotations

import base64
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

from servers.tool_errors import tool_errors
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import InvalidArguments
from vsm_mcp.models import Policy
from vsm_mcp.policy.facts import normalize
from vsm_mcp.policy.service import AUTHORIZER_KEY, check_name, clock_of, prepare, runtime_of
from vsm_mcp.policy.store import PolicyStore


def _summary(row: Policy) -> dict[str, Any]:
    meta = row.meta or {}
    return {
        "name": row.name,
        "version": row.version,
        "active": row.active,
        "kind": meta.get("kind", "source"),
        "sha256": meta.get("sha256", ""),
        "default": meta.get("default", ""),
        "rules": len(meta.get("rules", [])),
        "created_at": row.created_at.isoformat(),
    }


def build(ctx: ServerContext) -> MCPServer:
    store = PolicyStore(ctx.db, ctx.bus)
    runtime = runtime_of(ctx)

    def changed(tenant: str) -> None:
        # The bus event reaches every replica; the router in this process reloads at once.
        auth = ctx.extras.get(AUTHORIZER_KEY)
        if auth is not None:
            auth.invalidate(tenant)
    server = MCPServer(
        "policy",
        instructions="Tenant policies: rules that allow or block tool calls by tool, caller, arguments, "
        "time of day or call rate. A small rule language compiled to WebAssembly and enforced by the "
        "router on every call. See docs/policies.md.",
    )

    @server.tool(title="Write a policy: rules that allow, deny or block tool calls", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False))
    @tool_errors
    async def policy_put(
        name: str,
        mcp_ctx: Context,
        source: str | None = None,
        wasm_base64: str | None = None,
        input_schema: dict[str, Any] | None = None,
        active: bool = True,
    ) -> dict[str, Any]:
        """Compile and store a new version of policy ``name`` for the calling tenant: rules that
        allow or deny (block) tool calls by tool, caller and scopes, arguments, hour of the day,
        weekday or call rate, enforced by the router on every call. Give either
        ``source`` (the policy language) or ``wasm_base64`` (a module built elsewhere that follows
        the policy ABI). ``input_schema``: JSON Schema of the tool arguments ``input.*`` may read.
        An active version takes effect on the router's next call. Returns the stored summary."""
        check_name(name)
        prepared = prepare(runtime, name, source, wasm_base64, input_schema)
        tenant = await ctx.tenant_of(mcp_ctx)
        row = await store.put(
            tenant, name, source=prepared.source, wasm=prepared.wasm, meta=prepared.meta(), active=active
        )
        changed(tenant)
        return _summary(row)

    @server.tool(title="Read a policy", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def policy_get(
        name: str, mcp_ctx: Context, version: int | None = None, include_wasm: bool = False
    ) -> dict[str, Any]:
        """One policy: the active version (or ``version``) with its source, rules and hash."""
        row = await store.get(await ctx.tenant_of(mcp_ctx), name, version)
        out = {**_summary(row), "source": row.source, "rule_list": (row.meta or {}).get("rules", [])}
        if include_wasm and row.wasm:
            out["wasm_base64"] = base64.b64encode(row.wasm).decode()
        return out

    @server.tool(title="List policies", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def policy_list(mcp_ctx: Context, all_versions: bool = False) -> dict[str, Any]:
        """The tenant's policies: the active (else latest) version of each name, or every version."""
        rows = await store.versions(await ctx.tenant_of(mcp_ctx))
        if not all_versions:
            best: dict[str, Policy] = {}
            for r in rows:
                cur = best.get(r.name)
                if cur is None or (r.active and not cur.active):
                    best[r.name] = r
            rows = list(best.values())
        return {"policies": [_summary(r) for r in rows]}

    @server.tool(title="Test a policy against an input", annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))
    @tool_errors
    async def policy_test(
        input: dict[str, Any],
        mcp_ctx: Context,
        name: str | None = None,
        source: str | None = None,
        input_schema: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Evaluate against ``input`` = {principal, tool, input, context} (context.time: unix
        seconds or ISO 8601; default now). With ``source``: that text (plus which rules fired);
        with ``name``: the stored policy; with neither: all active policies, as the router would."""
        facts = dict(input)
        facts.setdefault("context", {})
        if not isinstance(facts["context"], dict):
            raise InvalidArguments("input.context must be an object")
        facts["context"] = {"time": clock_of(ctx)(), **facts["context"]}
        doc = normalize(facts)
        if source and name:
            raise InvalidArguments("give 'source' or 'name', not both")
        if source:
            prepared = prepare(runtime, "test", source=source, input_schema=input_schema)
            assert prepared.compiled is not None
            decision = prepared.loaded.evaluate(doc)
            _, trace = prepared.compiled.interpreter().explain(doc)
            return {"decision": decision.to_dict(), "rules": [t.__dict__ for t in trace]}
        tenant = await ctx.tenant_of(mcp_ctx)
        rows = [await store.get(tenant, name)] if name else await store.active(tenant)
        decisions = [runtime.load(r.wasm or b"").evaluate(doc).to_dict() for r in rows]
        denied = next((d for d in decisions if d["effect"] == "deny"), None)
        verdict = "deny" if denied else "allow"
        return {"effect": verdict, "decisions": decisions, "denied_by": denied}

    @server.tool(title="Delete a policy", annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True))
    @tool_errors
    async def policy_delete(name: str, mcp_ctx: Context) -> dict[str, Any]:
        """Delete every version of policy ``name``; the router stops enforcing it at once."""
        tenant = await ctx.tenant_of(mcp_ctx)
        count = await store.delete(tenant, name)
        changed(tenant)
        return {"name": name, "deleted_versions": count}

    return server
