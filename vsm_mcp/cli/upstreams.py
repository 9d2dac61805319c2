"""`vsm-mcp upstreams list|add|update|remove|enable|disable|override|secret-set|secret-remove`.

The operator's side of the upstream registry (router/upstreams/admin_ops.py): the command writes
the database directly — no router needs to be running — and running routers apply the change
within a second or two (bus notification, else their registry poll). Without ``--tenant`` it acts
on the global registry; with it, on that tenant's (http upstreams only).

Every bad definition is refused with one line, before anything is written.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from vsm_mcp.cli.common import DbUrl, fail, handle_errors, out, run_async, settings_from
from vsm_mcp.errors import InvalidArguments

upstreams_app = typer.Typer(
    help="Add, change and remove upstream MCP servers of running routers (no restart), "
    "override how their tools are presented, store write-only secrets.",
    no_args_is_help=True,
)

Tenant = Annotated[str | None, typer.Option("--tenant", help="A tenant's registry (by name) instead of the global one.")]
NoCheck = Annotated[
    bool, typer.Option("--no-check", help="Skip the live checks (stdio command on PATH, http URL answers).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _pairs(items: list[str] | None, what: str) -> dict[str, str] | None:
    if not items:
        return None
    outd: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArguments(f"--{what}: expected KEY=VALUE, got {item!r}")
        outd[key] = value
    return outd


def _args(items: list[str] | None) -> list[str] | None:
    if items is None:
        return None
    return [part for item in items for part in shlex.split(item)]


def _definition(
    name: str | None, kind: str | None, command: str | None, args: list[str] | None, env: list[str] | None,
    cwd: str | None, url: str | None, header: list[str] | None, bearer: str | None, tag: list[str] | None,
    pool_size: int | None, timeout: float | None, rate_limit: float | None,
) -> dict[str, Any]:
    given: dict[str, Any] = {
        "name": name, "kind": kind, "command": command, "args": _args(args), "env": _pairs(env, "env"), "cwd": cwd,
        "url": url, "headers": _pairs(header, "header"), "auth": {"bearer": bearer} if bearer else None,
        "tags": tag or None, "pool_size": pool_size, "timeout": timeout, "rate_limit": rate_limit,
    }
    return {k: v for k, v in given.items() if v is not None}


async def _admin_for(database_url: str | None, tenant: str | None, probe: bool) -> tuple[Any, str, Any]:
    """(UpstreamAdmin, owner, cleanup) for the configured database and bus."""
    from router.upstreams.admin_ops import UpstreamAdmin
    from router.upstreams.definitions import GLOBAL
    from router.upstreams.manifest import load_manifests
    from router.upstreams.store import RegistryStore
    from vsm_mcp.bus import make_bus
    from vsm_mcp.db import Database
    from vsm_mcp.ssrf import AddressGuard, AllowList
    from vsm_mcp.tenants import get_tenant

    settings = settings_from(database_url)
    db = Database(settings)
    bus: Any = make_bus(settings.bus_url)
    try:
        await bus.start()
    except Exception:  # no bus: routers still see the change at their next registry poll
        bus = None
    owner = GLOBAL if tenant is None else (await get_tenant(db, tenant)).id
    manifest_names = {s.name for s in load_manifests(settings.manifests or None, home=settings.home)} | {"admin"}
    # The same guard as the routers' (router/upstreams/url_guard.py): a tenant's http URL must be
    # public or on VSM_FETCH_ALLOW, or the routers would refuse to mount what this wrote.
    guard = AddressGuard(AllowList.parse(settings.fetch_allow))
    admin = UpstreamAdmin(RegistryStore(db), reserved=lambda: manifest_names, bus=bus, probe=probe, guard=guard)

    async def cleanup() -> None:
        if bus is not None:
            await bus.aclose()
        await db.aclose()

    return admin, owner, cleanup


def _run(database_url: str | None, tenant: str | None, probe: bool, op: Any) -> Any:
    async def go() -> Any:
        admin, owner, cleanup = await _admin_for(database_url, tenant, probe)
        try:
            return await op(admin, owner)
        finally:
            await cleanup()

    return run_async(go())


def _done(verb: str, row: Any) -> None:
    out.print(f"{verb} {row.kind} {row.name} (revision {row.revision})")


@upstreams_app.command("list")
@handle_errors
def list_(tenant: Tenant = None, as_json: AsJson = False, database_url: DbUrl = None) -> None:
    """The registered upstreams, tool overrides and secret names (never values)."""
    listing = _run(database_url, tenant, False, lambda a, o: a.list(o))
    if as_json:
        out.print_json(json.dumps(listing))
        return
    table = Table("name", "kind", "target", "enabled", "tags", "revision")
    for up in listing["upstreams"]:
        target = up.get("url") or " ".join([up.get("command", ""), *up.get("args", [])]).strip()
        table.add_row(up["name"], up["kind"], target, "yes" if up["enabled"] else "no", ",".join(up.get("tags", [])), str(up["revision"]))
    out.print(table)
    for ov in listing["overrides"]:
        fields = {k: v for k, v in ov.items() if k not in ("server", "tool", "revision")}
        out.print(f"override {ov['server']}/{ov['tool']}: {json.dumps(fields)}")
    if listing["secrets"]:
        out.print("secrets: " + ", ".join(listing["secrets"]))


@upstreams_app.command()
@handle_errors
def add(
    name: Annotated[str, typer.Option("--name", help="Upstream name: letters, digits, _ and -, no '__'.")],
    kind: Annotated[str, typer.Option("--kind", help="stdio or http.")],
    command: Annotated[str | None, typer.Option("--command", help="stdio: the program.")] = None,
    args: Annotated[list[str] | None, typer.Option("--args", help="stdio: arguments (shell-split; repeatable).")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="stdio: KEY=VALUE (credentials as ${VAR}); repeatable.")] = None,
    cwd: Annotated[str | None, typer.Option("--cwd", help="stdio: working directory.")] = None,
    url: Annotated[str | None, typer.Option("--url", help="http: the MCP endpoint.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help="http: KEY=VALUE; repeatable.")] = None,
    bearer: Annotated[str | None, typer.Option("--bearer", help="http: ${VAR} or ${secret:NAME} for a bearer token.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Capability tag of every tool; repeatable.")] = None,
    pool_size: Annotated[int | None, typer.Option("--pool-size", help="stdio: processes sharing the load.")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per call.")] = None,
    rate_limit: Annotated[float | None, typer.Option("--rate-limit", help="Calls/s per tool (0 = unlimited).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Register without starting it.")] = False,
    tenant: Tenant = None,
    no_check: NoCheck = False,
    database_url: DbUrl = None,
) -> None:
    """Register an upstream; running routers start it within seconds."""
    definition = _definition(name, kind, command, args, env, cwd, url, header, bearer, tag, pool_size, timeout, rate_limit)
    if disabled:
        definition["enabled"] = False
    _done("added", _run(database_url, tenant, not no_check, lambda a, o: a.add(o, definition, by="cli")))


@upstreams_app.command()
@handle_errors
def update(
    name: Annotated[str, typer.Argument(help="The upstream to change.")],
    command: Annotated[str | None, typer.Option("--command")] = None,
    args: Annotated[list[str] | None, typer.Option("--args")] = None,
    env: Annotated[list[str] | None, typer.Option("--env")] = None,
    cwd: Annotated[str | None, typer.Option("--cwd")] = None,
    url: Annotated[str | None, typer.Option("--url")] = None,
    header: Annotated[list[str] | None, typer.Option("--header")] = None,
    bearer: Annotated[str | None, typer.Option("--bearer")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    pool_size: Annotated[int | None, typer.Option("--pool-size")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout")] = None,
    rate_limit: Annotated[float | None, typer.Option("--rate-limit")] = None,
    tenant: Tenant = None,
    no_check: NoCheck = False,
    database_url: DbUrl = None,
) -> None:
    """Change the given fields of an upstream (others are kept); routers restart it."""
    patch = _definition(None, None, command, args, env, cwd, url, header, bearer, tag, pool_size, timeout, rate_limit)
    if not patch:
        fail("nothing to change: give at least one option")
    _done("updated", _run(database_url, tenant, not no_check, lambda a, o: a.update(o, name, patch, by="cli")))


@upstreams_app.command()
@handle_errors
def remove(name: Annotated[str, typer.Argument()], tenant: Tenant = None, database_url: DbUrl = None) -> None:
    """Remove an upstream: routers let calls in flight finish, then stop its processes."""
    _done("removed", _run(database_url, tenant, False, lambda a, o: a.remove(o, name, by="cli")))


@upstreams_app.command()
@handle_errors
def enable(name: Annotated[str, typer.Argument()], tenant: Tenant = None, database_url: DbUrl = None) -> None:
    """Start a disabled upstream again."""
    _done("enabled", _run(database_url, tenant, True, lambda a, o: a.set_enabled(o, name, True, by="cli")))


@upstreams_app.command()
@handle_errors
def disable(name: Annotated[str, typer.Argument()], tenant: Tenant = None, database_url: DbUrl = None) -> None:
    """Stop an upstream and hide its tools, keeping its definition."""
    _done("disabled", _run(database_url, tenant, False, lambda a, o: a.set_enabled(o, name, False, by="cli")))


@upstreams_app.command()
@handle_errors
def override(
    server: Annotated[str, typer.Argument(help="The upstream's name.")],
    tool: Annotated[str, typer.Argument(help="The tool's name on that upstream.")],
    name: Annotated[str | None, typer.Option("--name", help="New public name.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="New description.")] = None,
    hidden: Annotated[bool | None, typer.Option("--hide/--show", help="Hide the tool (not listed, searched or callable).")] = None,
    cacheable: Annotated[bool | None, typer.Option("--cacheable/--not-cacheable")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Extra capability tag; repeatable.")] = None,
    pin: Annotated[list[str] | None, typer.Option("--pin", help="ARG=JSON value callers cannot change; repeatable.")] = None,
    remove_it: Annotated[bool, typer.Option("--remove", help="Drop the override.")] = False,
    tenant: Tenant = None,
    database_url: DbUrl = None,
) -> None:
    """Rename, re-describe, hide, tag or pin arguments of one upstream tool."""
    if remove_it:
        _done("removed", _run(database_url, tenant, False, lambda a, o: a.remove_override(o, server, tool, by="cli")))
        return
    patch: dict[str, Any] = {"name": name, "description": description, "hidden": hidden, "cacheable": cacheable, "tags": tag}
    if pin:
        pins: dict[str, Any] = {}
        for k, v in (_pairs(pin, "pin") or {}).items():
            try:
                pins[k] = json.loads(v)
            except ValueError:
                pins[k] = v  # a bare word is a string
        patch["pin"] = pins
    patch = {k: v for k, v in patch.items() if v is not None}
    if not patch:
        fail("nothing to change: give at least one option (or --remove)")
    _done("set", _run(database_url, tenant, False, lambda a, o: a.set_override(o, server, tool, patch, by="cli")))


@upstreams_app.command("secret-set")
@handle_errors
def secret_set(
    name: Annotated[str, typer.Argument(help="Referred to as ${secret:NAME} in definitions.")],
    tenant: Tenant = None,
    database_url: DbUrl = None,
) -> None:
    """Store a write-only secret, read from stdin (never from the command line, which others can see)."""
    value = sys.stdin.readline().rstrip("\r\n") if not sys.stdin.isatty() else typer.prompt("value", hide_input=True)
    _done("stored", _run(database_url, tenant, False, lambda a, o: a.set_secret(o, name, value, by="cli")))


@upstreams_app.command("secret-remove")
@handle_errors
def secret_remove(name: Annotated[str, typer.Argument()], tenant: Tenant = None, database_url: DbUrl = None) -> None:
    """Delete a stored secret."""
    _done("removed", _run(database_url, tenant, False, lambda a, o: a.remove_secret(o, name, by="cli")))
