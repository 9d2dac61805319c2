"""``vsm-mcp serve | stdio | call | server``: the router and the servers, run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vsm_mcp.cli.common import (
    DbUrl,
    ManifestOpt,
    check_reachable,
    err,
    handle_errors,
    out,
    quiet_migrate,
    redact,
    router_settings,
    run_async,
    settings_from,
)
from vsm_mcp.errors import VsmError


@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (VSM_HOST, default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (VSM_PORT, default 8765).")] = None,
    database_url: DbUrl = None,
    manifest: ManifestOpt = None,
    ssl_certfile: Annotated[
        str | None, typer.Option("--ssl-certfile", help="PEM certificate: serve HTTPS (VSM_SSL_CERTFILE).")
    ] = None,
    ssl_keyfile: Annotated[
        str | None, typer.Option("--ssl-keyfile", help="PEM private key of the certificate (VSM_SSL_KEYFILE).")
    ] = None,
) -> None:
    """Run the router: MCP at /mcp, edge routes, /healthz and /readyz.

    With nothing configured it uses the embedded defaults: SQLite under ./.vsm, a local
    vector index, a disk cache and the in-process bus. The schema is migrated at start.
    """
    from router.app import create_app
    from router.edge.sse_direct import engaged as sse_direct_engaged
    from router.fastlane.hot_protocol import http_protocol
    from vsm_mcp import migrate as m
    from vsm_mcp import serving_note
    from vsm_mcp.cli.common import DEBUG
    from vsm_mcp.cli.startup import bind_socket, check_bus, run_server

    settings = settings_from(database_url, host=host, port=port, manifests=manifest or None,
                             ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    sock = bind_socket(settings.host, settings.port)  # first: a port in use is one line, before anything runs
    try:
        check_reachable(settings, settings.migration_database_url)
        check_bus(settings)
        quiet_migrate(m.upgrade, settings.migration_database_url)
        asgi = create_app(settings)
    except BaseException:
        sock.close()
        raise
    import logging

    logging.getLogger().setLevel(settings.log_level.upper())  # a server's operator reads its INFO lines
    if settings.log_level != "debug":
        # The SDK logs every session and every failed tool call at INFO; those belong in
        # episodes and /metrics, not on the console of a server that may handle thousands.
        for name in ("mcp", "httpx", "LiteLLM"):
            logging.getLogger(name).setLevel(logging.WARNING)
    sse_direct_engaged()  # logs one line now, at start-up, if SSE direct writes are off
    url = f"{'https' if settings.ssl_certfile else 'http'}://{settings.host}:{settings.port}"
    banner = (
        f"vsm-mcp serving on {url}  "
        f"(MCP: /mcp · health: /healthz · readiness: /readyz · database: {redact(settings.database_url)})"
    )
    notes: list[Path] = []

    def ready() -> None:
        # Where this gateway keeps its data, for `vsm-mcp connect` run in another folder.
        try:
            notes.append(serving_note.leave(settings, url))
        except OSError as exc:
            logging.getLogger(__name__).warning("no serving note for vsm-mcp connect (%s); connect needs VSM_HOME", exc)

    # HotLaneProtocol: uvicorn's httptools protocol with a shorter road for POST /mcp (router/fastlane/hot_protocol.py).
    # The banner is printed once uvicorn listens and the lifespan has run (vsm_mcp/cli/startup.py).
    def stopped() -> None:
        for path in notes:
            serving_note.remove(path)

    run_server(
        asgi, sock, settings, banner, lambda text: err.print(text, markup=False, soft_wrap=True, highlight=False),
        http=http_protocol(settings.hot_lane), debug=DEBUG.on, on_ready=ready, on_stop=stopped,
    )


@handle_errors
def stdio(manifest: ManifestOpt = None, database_url: DbUrl = None) -> None:
    """Serve the aggregate MCP endpoint over stdin/stdout (for clients that launch a local command).

    Tools are named <server>__<tool>. The caller is the local user: the default tenant when
    VSM_ALLOW_ANONYMOUS is on, or the key in VSM_API_KEY.
    """
    import logging

    from router.local import serve_stdio

    logging.getLogger().setLevel(logging.WARNING)  # stdout is the protocol; stderr only for trouble
    settings = router_settings(manifest, database_url)
    run_async(serve_stdio(settings))


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
    settings = router_settings(manifest, database_url)
    result = run_async(call_once(settings, tool, arguments))
    out.print(result_json(result), soft_wrap=True, markup=False, highlight=False)
    if result.is_error:
        raise typer.Exit(1)


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

    from router.upstreams.manifest import load_manifests
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
