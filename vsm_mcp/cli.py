"""`vsm-mcp` — the command line, and the composition root.

This is the one kernel module allowed to import ``router`` and ``servers``: it wires the
pieces together. Every command turns a ``VsmError`` into one red line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from vsm_mcp.config import Settings, load_settings
from vsm_mcp.errors import ConfigError, VsmError

T = TypeVar("T")

app = typer.Typer(
    name="vsm-mcp",
    help="vsm-mcp: one MCP endpoint in front of many MCP servers, with tool search, policy, "
    "rate limits, caching and audit. Start with `vsm-mcp serve`; settings come from VSM_* "
    "environment variables or .env (see .env.example).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tenants_app = typer.Typer(help="Create and list tenants (isolated spaces of data and keys).", no_args_is_help=True)
keys_app = typer.Typer(help="Create API keys for a tenant (shown once, stored hashed).", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")

from vsm_mcp.policy.cli import policy_app  # noqa: E402  (issue 10: vsm-mcp policy compile|test|explain)

app.add_typer(policy_app, name="policy")

from router.cli_tools import bench_app, tools_app  # noqa: E402  (issue 5: vsm-mcp tools list|search, bench retrieval)

app.add_typer(tools_app, name="tools")
app.add_typer(bench_app, name="bench")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: VsmError (and Ctrl-C) → one line and an exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(exc.message, 2)
        except VsmError as exc:
            fail(exc.message, 1)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        raise AssertionError("unreachable")

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings_from(database_url: str | None = None, **extra: Any) -> Settings:
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if database_url:
        overrides["database_url"] = database_url
        overrides.setdefault("migration_database_url", database_url)
    return load_settings(**overrides)


DbUrl = Annotated[
    str | None,
    typer.Option("--database-url", help="Override VSM_DATABASE_URL (sqlite+aiosqlite:///… or postgresql+asyncpg://…)."),
]


def _check_reachable(settings: Settings, url: str) -> None:
    from vsm_mcp.db import Database

    async def probe() -> tuple[bool, str]:
        db = Database(settings, url)
        try:
            return await db.health(timeout=5)
        finally:
            await db.aclose()

    ok, detail = run_async(probe())
    if not ok:
        raise VsmError(f"cannot reach the database at {_redact(url)}: {detail.removeprefix('database unavailable: ')}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
@handle_errors
def migrate(
    database_url: DbUrl = None,
    downgrade: Annotated[
        str | None, typer.Option("--downgrade", help="Downgrade to this revision instead ('base' = empty).")
    ] = None,
) -> None:
    """Create or upgrade the database schema (Alembic). Safe to run repeatedly.

    On PostgreSQL run it as the table owner (VSM_MIGRATION_DATABASE_URL); it creates the
    non-owner role vsm_app the application should connect as, with row-level security on.
    """
    from vsm_mcp import migrate as m

    settings = settings_from(database_url)
    url = settings.migration_database_url
    _check_reachable(settings, url)
    if downgrade:
        m.downgrade(url, downgrade)
        out.print(f"downgraded {_redact(url)} to {downgrade}")
    else:
        m.upgrade(url)
        out.print(f"database {_redact(url)} is at the latest schema")


@tenants_app.command("create")
@handle_errors
def tenants_create(
    name: Annotated[str, typer.Argument(help="Tenant name: lowercase letters, digits, '.', '_', '-'.")],
    database_url: DbUrl = None,
) -> None:
    """Create a tenant."""
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import create_tenant

    settings = settings_from(database_url)

    async def go() -> str:
        db = Database(settings, settings.migration_database_url)
        try:
            return (await create_tenant(db, name)).id
        finally:
            await db.aclose()

    _check_reachable(settings, settings.migration_database_url)
    tenant_id = run_async(go())
    out.print(f"created tenant {name} ({tenant_id})")


@tenants_app.command("list")
@handle_errors
def tenants_list(database_url: DbUrl = None) -> None:
    """List tenants."""
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import list_tenants

    settings = settings_from(database_url)
    _check_reachable(settings, settings.migration_database_url)

    async def go() -> list[tuple[str, str]]:
        db = Database(settings, settings.migration_database_url)
        try:
            return [(t.name, t.id) for t in await list_tenants(db)]
        finally:
            await db.aclose()

    table = Table("name", "id")
    for row in run_async(go()):
        table.add_row(*row)
    out.print(table)


@keys_app.command("create")
@handle_errors
def keys_create(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant the key belongs to.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            help="Comma-separated scopes, e.g. 'tools:call,storage:*'. Known: *, admin, <family>, "
            "<family>:read|write|call|admin|* (families: tools, events, storage, llm, search, policy, beliefs …).",
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="A label for listings.")] = "",
    database_url: DbUrl = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from vsm_mcp.auth import validate_scopes
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import create_api_key

    scope_list = validate_scopes(scopes.split(","))
    settings = settings_from(database_url)
    _check_reachable(settings, settings.migration_database_url)

    async def go() -> str:
        db = Database(settings, settings.migration_database_url)
        try:
            key, _row = await create_api_key(db, tenant, scope_list, name)
            return key
        finally:
            await db.aclose()

    key = run_async(go())
    err.print(f"API key for tenant {tenant} with scopes {','.join(scope_list)} (shown once, store it now):")
    out.print(key, soft_wrap=True)


@app.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (VSM_HOST, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (VSM_PORT, default 8765).")] = None,
    database_url: DbUrl = None,
    manifest: ManifestOpt = None,
) -> None:
    """Run the router: MCP at /mcp, edge routes, /healthz and /readyz.

    With nothing configured it uses the embedded defaults: SQLite under ./.vsm, a local
    vector index, a disk cache and the in-process bus. The schema is migrated at start.
    """
    import uvicorn

    from router.app import create_app
    from router.hot_protocol import HotLaneProtocol
    from vsm_mcp import migrate as m

    settings = settings_from(database_url, host=host, port=port, manifests=manifest or None)
    _check_reachable(settings, settings.migration_database_url)
    m.upgrade(settings.migration_database_url)
    asgi = create_app(settings)
    if settings.log_level != "debug":
        import logging

        # The SDK logs every session and every failed tool call at INFO; those belong in
        # episodes and /metrics, not on the console of a server that may handle thousands.
        for name in ("mcp", "httpx", "LiteLLM"):
            logging.getLogger(name).setLevel(logging.WARNING)
    err.print(
        f"vsm-mcp serving on http://{settings.host}:{settings.port}  "
        f"(MCP: /mcp · health: /healthz · readiness: /readyz · database: {_redact(settings.database_url)})"
    )
    # HotLaneProtocol: uvicorn's httptools protocol with a shorter road for POST /mcp (router/hot_protocol.py).
    uvicorn.run(
        asgi, host=settings.host, port=settings.port, log_level=settings.log_level, lifespan="on",
        http=HotLaneProtocol if settings.hot_lane else "auto",
    )


ManifestOpt = Annotated[
    list[str] | None,
    typer.Option("--manifest", "-m", help="Manifest file or directory (repeatable); overrides VSM_MANIFESTS."),
]


def _router_settings(manifest: list[str] | None, database_url: str | None = None) -> Settings:
    from vsm_mcp import migrate as m

    settings = settings_from(database_url, manifests=manifest or None)
    _check_reachable(settings, settings.migration_database_url)
    _quiet_migrate(m.upgrade, settings.migration_database_url)
    return settings


def _quiet_migrate(fn: Callable[[str], None], url: str) -> None:
    """Run a migration with stdout redirected to stderr (stdout may be an MCP stdio channel)."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        fn(url)


@app.command()
@handle_errors
def stdio(manifest: ManifestOpt = None, database_url: DbUrl = None) -> None:
    """Serve the aggregate MCP endpoint over stdin/stdout (for clients that launch a local command).

    Tools are named <server>__<tool>. The caller is the local user: the default tenant when
    VSM_ALLOW_ANONYMOUS is on, or the key in VSM_API_KEY.
    """
    import logging

    from router.local import serve_stdio

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    settings = _router_settings(manifest, database_url)
    run_async(serve_stdio(settings))


@app.command()
@handle_errors
def call(
    tool: Annotated[str, typer.Argument(help="Public tool name, <server>__<tool>.")],
    json_args: Annotated[str, typer.Option("--json", help="Arguments as a JSON object.")] = "{}",
    manifest: ManifestOpt = None,
    database_url: DbUrl = None,
) -> None:
    """Run one tool call in-process through the full pipeline and print the result as JSON."""
    import json

    from router.local import call_once, result_json

    try:
        arguments = json.loads(json_args)
    except json.JSONDecodeError as exc:
        raise VsmError(f"--json is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(arguments, dict):
        raise VsmError("--json must be a JSON object, e.g. '{\"key\": \"value\"}'")
    settings = _router_settings(manifest, database_url)
    result = run_async(call_once(settings, tool, arguments))
    out.print(result_json(result), soft_wrap=True, markup=False, highlight=False)
    if result.is_error:
        raise typer.Exit(1)


@app.command()
@handle_errors
def server(
    name: Annotated[str, typer.Argument(help="A builtin server from the manifests, e.g. storage.")],
    transport: Annotated[str, typer.Option("--transport", help="stdio or http.")] = "stdio",
    host: Annotated[str, typer.Option(help="Bind address for --transport http.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port for --transport http.")] = 8000,
    manifest: ManifestOpt = None,
) -> None:
    """Run one built-in capability server alone (no router), over stdio or streamable HTTP."""
    import importlib

    from router.manifest import load_manifests
    from vsm_mcp.standalone import serve_standalone

    if transport not in ("stdio", "http"):
        raise VsmError(f"--transport must be stdio or http (got {transport!r})")
    settings = settings_from(manifests=manifest or None)
    specs = {s.name: s for s in load_manifests(settings.manifests or None)}
    spec = specs.get(name)
    if spec is None:
        raise VsmError(f"no server named {name!r} in the manifests; known: {', '.join(sorted(specs)) or '(none)'}")
    if spec.kind != "builtin":
        raise VsmError(f"server {name!r} is a {spec.kind} upstream, not a builtin; run its own command instead")
    module_name, _, attr = spec.target.partition(":")
    try:
        build = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise VsmError(f"cannot load {spec.target}: {exc}") from None
    run_async(serve_standalone(build, "stdio" if transport == "stdio" else "http", host, port))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ConfigError as exc:  # raised while building settings inside a command
        err.print(f"[bold red]error:[/] {exc.message}")
        sys.exit(2)


if __name__ == "__main__":
    main()
