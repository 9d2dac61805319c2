"""The router's own in-process MCP server ``admin``: manage upstreams while the router runs.

It lives in the router, not in servers/, because it drives the router's runtime (servers never
import the router). ``RouterRuntime`` mounts it like any builtin — ``kind: builtin, target:
router.admin:build`` — so its tools are ``admin__upstream_add`` …, pass through the dispatch
pipeline (grants, policy, rate limits, audit) and need the ``admin`` scope (every tool is tagged
``admin``). ``VSM_ADMIN_TOOLS=false`` leaves it out.

Each tool acts on the caller's tenant registry, or with ``scope: "global"`` on the operator's
(which needs the ``*`` scope). Arguments are never recorded in clear (episodes keep a digest), so
``secret_set``'s value is not audited; no tool returns a secret's value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from router.upstreams.admin_ops import UpstreamAdmin
from router.upstreams.definitions import GLOBAL
from router.upstreams.registry_state import Row
from vsm_mcp.context import ServerContext
from vsm_mcp.errors import Forbidden, VsmError

RUNTIME_KEY = "router.runtime"
SPEC = {"name": "admin", "kind": "builtin", "target": "router.admin:build", "tags": ["admin"]}
Scope = Literal["tenant", "global"]
T = TypeVar("T")

_WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
_DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
_READ = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def row_json(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {"name": row.name, "kind": row.kind, "revision": row.revision, "removed": row.deleted}
    if row.kind != "secret":
        out["definition"] = dict(row.body)
    return out


async def _run(fn: Callable[[], Awaitable[T]]) -> T:
    try:
        return await fn()
    except VsmError as exc:
        raise ToolError(exc.message) from exc


def build(ctx: ServerContext) -> MCPServer:
    runtime = ctx.extras[RUNTIME_KEY]
    admin: UpstreamAdmin = runtime.live.admin
    server = MCPServer(
        "admin",
        instructions="Manage this router's upstream MCP servers, tool overrides and stored secrets "
        "while it runs. Changes apply at once on every replica.",
    )

    async def owner_of(mcp_ctx: Context, scope: Scope) -> tuple[str, str]:
        principal = await ctx.principal_of(mcp_ctx)
        who = f"{principal.tenant_name or principal.tenant_id}/{principal.id}"
        if scope == "global":
            if "*" not in principal.scopes:
                raise Forbidden("scope 'global' (the operator's registry) needs the '*' scope")
            return GLOBAL, who
        return principal.tenant_id, who

    @server.tool(title="List the upstream MCP servers registered with the gateway and whether they run", annotations=_READ)
    async def upstream_list(mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """The registered upstreams, tool overrides and secret names (never values) of this tenant
        or, with scope 'global', the operator's; with each upstream's running state."""

        async def go() -> dict[str, Any]:
            owner, _ = await owner_of(mcp_ctx, scope)
            listing = await admin.list(owner)
            for up in listing["upstreams"]:
                running = runtime.upstreams.get(runtime.live.runtime_id(owner, up["name"]))
                up["state"] = running.status() if running is not None else {"state": "not mounted"}
            return listing

        return await _run(go)

    @server.tool(title="Add an upstream MCP server to the gateway (stdio command or HTTP URL)", annotations=_WRITE)
    async def upstream_add(
        name: str,
        kind: str,
        mcp_ctx: Context,
        command: str = "",
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        url: str = "",
        headers: dict[str, str] | None = None,
        auth: dict[str, str] | None = None,
        timeout: float | None = None,
        pool_size: int | None = None,
        enabled: bool = True,
        tags: list[str] | None = None,
        tool_tags: dict[str, list[str]] | None = None,
        cacheable: dict[str, bool] | None = None,
        rate_limit: float | None = None,
        scope: Scope = "tenant",
    ) -> dict[str, Any]:
        """Register an MCP server and start it: kind stdio (command, args, env, cwd; operator only)
        or http (url, headers, auth). Credentials only as ${VAR} or ${secret:NAME} references.
        Its tools are callable and searchable within seconds, on every replica."""
        given = {
            "name": name, "kind": kind, "command": command, "args": args, "env": env, "cwd": cwd, "url": url,
            "headers": headers, "auth": auth, "timeout": timeout, "pool_size": pool_size, "enabled": enabled,
            "tags": tags, "tool_tags": tool_tags, "cacheable": cacheable, "rate_limit": rate_limit,
        }
        definition = {k: v for k, v in given.items() if v not in (None, "", [], {})}

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.add(owner, definition, by=who))

        return await _run(go)

    @server.tool(title="Change an upstream MCP server's definition (command, URL, headers) and restart it", annotations=_WRITE)
    async def upstream_update(name: str, changes: dict[str, Any], mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Change fields of a registered upstream (a null value resets a field); it restarts with
        the new definition. Fields another admin changes concurrently are kept."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.update(owner, name, changes, by=who))

        return await _run(go)

    @server.tool(title="Remove an upstream MCP server from the gateway", annotations=_DESTRUCTIVE)
    async def upstream_remove(name: str, mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Remove a registered upstream: calls in flight finish, then its processes stop."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.remove(owner, name, by=who))

        return await _run(go)

    @server.tool(title="Enable a disabled upstream MCP server (start it again)", annotations=_WRITE)
    async def upstream_enable(name: str, mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Start a disabled upstream again."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.set_enabled(owner, name, True, by=who))

        return await _run(go)

    @server.tool(title="Disable an upstream MCP server without removing it", annotations=_WRITE)
    async def upstream_disable(name: str, mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Stop an upstream but keep its definition; its tools disappear until it is enabled."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.set_enabled(owner, name, False, by=who))

        return await _run(go)

    @server.tool(title="Override how a tool is presented: rename it, rewrite its description, hide it or pin arguments", annotations=_WRITE)
    async def tool_override_set(
        server: str,
        tool: str,
        mcp_ctx: Context,
        name: str | None = None,
        description: str | None = None,
        hidden: bool | None = None,
        cacheable: bool | None = None,
        tags: list[str] | None = None,
        pin: dict[str, Any] | None = None,
        scope: Scope = "tenant",
    ) -> dict[str, Any]:
        """Change how an upstream tool is presented: a new public name, a new description, hidden,
        cacheable, extra capability tags, or argument values pinned so callers cannot set them."""
        given = {"name": name, "description": description, "hidden": hidden, "cacheable": cacheable, "tags": tags, "pin": pin}
        patch = {k: v for k, v in given.items() if v is not None}

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.set_override(owner, server, tool, patch, by=who))

        return await _run(go)

    @server.tool(title="Remove a tool's override (present it as its upstream does again)", annotations=_DESTRUCTIVE)
    async def tool_override_remove(server: str, tool: str, mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Drop a tool's override: it is presented as its upstream describes it again."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.remove_override(owner, server, tool, by=who))

        return await _run(go)

    @server.tool(title="Store a secret (token, password) for upstream definitions to reference", annotations=_WRITE)
    async def secret_set(name: str, value: str, mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Store a write-only secret for upstream definitions to refer to as ${secret:NAME}. The
        value is never shown back, logged or audited."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.set_secret(owner, name, value, by=who))

        return await _run(go)

    @server.tool(title="Delete a stored secret", annotations=_DESTRUCTIVE)
    async def secret_remove(name: str, mcp_ctx: Context, scope: Scope = "tenant") -> dict[str, Any]:
        """Delete a stored secret."""

        async def go() -> dict[str, Any]:
            owner, who = await owner_of(mcp_ctx, scope)
            return row_json(await admin.remove_secret(owner, name, by=who))

        return await _run(go)

    return server
