"""``vsm-mcp connect opencode | mcp-json``: connect a client to this gateway in one step.

Each command creates a fresh API key for the tenant in the database ``vsm-mcp serve`` uses. It
finds that database as the server left word of it (vsm_mcp/serving_note.py: the note of the
gateway serving ``--url``) when neither ``VSM_HOME``, ``VSM_DATABASE_URL``, ``--database-url`` nor
a ``./.vsm`` with a database here says where it is — so it runs from the project's folder. It
then checks that the gateway answers at ``--url`` with that key, and writes the client's configuration
into the current folder, merging with a file that exists (entries of ours are replaced, the rest
is kept). The key is written to a file beside the configuration with mode 0600 and referenced
from it (``{file:…}`` for OpenCode), so the JSON itself can be shared or committed.

* ``opencode`` → ``opencode.json``: MCP ``vsm`` (remote, ``/mcp``) and ``vsm-local`` (the
  ``vsm-mcp stdio`` command), and, when the gateway has LLM models, the provider ``vsm`` (the
  OpenAI-compatible ``/v1`` of the LLM-CDN) with those models.
* ``mcp-json`` → ``.mcp.json`` (Claude-style ``mcpServers``, as oh-my-opencode reads it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from vsm_mcp.cli.common import (
    DbUrl,
    check_reachable,
    err,
    handle_errors,
    out,
    redact,
    run_async,
    settings_from,
)
from vsm_mcp.config import default_database_url, sqlite_file
from vsm_mcp.errors import VsmError

connect_app = typer.Typer(help="Connect a client (OpenCode, Claude-style .mcp.json) to this gateway in one step.",
                          no_args_is_help=True)

UrlOpt = Annotated[str, typer.Option("--url", help="Where clients reach the gateway.")]
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant of the new key.")]
ScopesOpt = Annotated[str, typer.Option("--scopes", help="Scopes of the new key (comma-separated).")]
DEFAULT_SCOPES = "tools:call,events:read,llm:call,search:read,storage:read"
KEY_FILE = ".vsm-api-key"
_NO_DATABASE = (
    "no vsm-mcp database at {url} and no running gateway at --url left word of its data: start it "
    "with `vsm-mcp serve` (or pass the --url it serves on), or set VSM_HOME to its data folder (or pass --database-url)"
)


def _find_gateway_data(url: str, database_url: str | None) -> None:
    """Point this process at the data of the gateway serving ``url`` (its serving note) when
    nothing here says where the data is."""
    from vsm_mcp import serving_note

    if database_url:
        return
    here = settings_from()  # the environment and a .env here may say it
    if here.home != Path(".vsm") or here.database_url != default_database_url(here.home):
        return
    # The gateway at --url says where its data is: a key minted in any other database (a ./.vsm
    # another command left here) would be refused by it.
    note = serving_note.find(here, url)
    if note is None:
        return  # _new_key says what to do when the default home holds no database
    os.environ["VSM_HOME"] = str(note.home)
    if note.database_url:
        os.environ["VSM_DATABASE_URL"] = note.database_url
    if note.migration_database_url:
        os.environ["VSM_MIGRATION_DATABASE_URL"] = note.migration_database_url
    err.print(f"the gateway at {url} keeps its data in {note.home} (from {note.path})", soft_wrap=True)


def _new_key(database_url: str | None, tenant: str, scopes: str) -> str:
    from vsm_mcp.auth import validate_scopes
    from vsm_mcp.db import Database
    from vsm_mcp.tenants import create_api_key, ensure_tenant

    scope_list = validate_scopes(scopes.split(","))
    settings = settings_from(database_url)
    path = sqlite_file(settings.migration_database_url)
    if path and not Path(path).exists():
        raise VsmError(_NO_DATABASE.format(url=redact(settings.migration_database_url)))  # and do not create one here
    check_reachable(settings, settings.migration_database_url)

    async def go() -> str:
        db = Database(settings, settings.migration_database_url)
        try:
            try:
                await ensure_tenant(db, tenant)
            except Exception as exc:  # no tables: not the database a server has run on
                text = str(getattr(exc, "message", exc))
                if isinstance(exc, VsmError) and "no such table" not in text and "does not exist" not in text:
                    raise
                raise VsmError(_NO_DATABASE.format(url=redact(settings.migration_database_url))) from None
            key, _row = await create_api_key(db, tenant, scope_list, "connect")
            return key
        finally:
            await db.aclose()

    return run_async(go())


def _probe(url: str, key: str) -> list[str]:
    """The gateway's LLM model names; VsmError when it does not answer or refuses the key."""
    import httpx

    headers = {"authorization": f"Bearer {key}"}
    try:
        r = httpx.get(f"{url}/v1/tools", params={"limit": 1}, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise VsmError(f"nothing answers at {url} ({type(exc).__name__}); start it with `vsm-mcp serve` first") from None
    if r.status_code != 200:
        raise VsmError(f"{url} refused the new key: HTTP {r.status_code} {r.text[:200]}")
    try:
        models = httpx.get(f"{url}/v1/models", headers=headers, timeout=10)
        return [m["id"] for m in models.json().get("data", [])] if models.status_code == 200 else []
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return []


def _vsm_command() -> list[str]:
    exe = shutil.which("vsm-mcp") or str(Path(sys.executable).with_name("vsm-mcp"))
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "vsm_mcp.cli"]


def _merge_write(path: Path, update: dict[str, Any]) -> None:
    """Merge ``update`` into the JSON file at ``path`` (one level deep per top key) and write it."""
    current: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text() or "{}")
        except json.JSONDecodeError as exc:
            raise VsmError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}): fix or move it first") from None
        if not isinstance(loaded, dict):
            raise VsmError(f"{path} does not hold a JSON object: fix or move it first")
        current = loaded
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            current[key] = {**current[key], **value}
        else:
            current[key] = value
    path.write_text(json.dumps(current, indent=2) + "\n")


def _write_key(folder: Path, key: str) -> Path:
    path = folder / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    os.chmod(path, 0o600)
    return path


@connect_app.command("opencode")
@handle_errors
def opencode(
    url: UrlOpt = "http://127.0.0.1:8765",
    tenant: TenantOpt = "default",
    scopes: ScopesOpt = DEFAULT_SCOPES,
    database_url: DbUrl = None,
) -> None:
    """Write opencode.json here: vsm-mcp as MCP server (remote and local) and as LLM provider."""
    url = url.rstrip("/")
    _find_gateway_data(url, database_url)
    key = _new_key(database_url, tenant, scopes)
    models = _probe(url, key)
    folder = Path.cwd()
    _write_key(folder, key)
    secret = f"{{file:./{KEY_FILE}}}"
    update: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "mcp": {
            "vsm": {"type": "remote", "url": f"{url}/mcp", "enabled": True, "timeout": 60000,
                    "headers": {"Authorization": f"Bearer {secret}"}},
            # The local entry starts a whole router in-process: give it time (OpenCode's default is 5 s).
            "vsm-local": {"type": "local", "command": [*_vsm_command(), "stdio"], "enabled": True, "timeout": 120000,
                          "environment": {"VSM_API_KEY": secret, **_local_env()}},
        },
    }
    if models:
        update["provider"] = {"vsm": {
            "npm": "@ai-sdk/openai-compatible", "name": "vsm-mcp LLM-CDN",
            "options": {"baseURL": f"{url}/v1", "apiKey": secret},
            "models": {m: {"name": m, "tool_call": True} for m in models},
        }}
    config = folder / "opencode.json"
    if models and not (config.exists() and '"model"' in config.read_text()):
        update["model"] = f"vsm/{models[0]}"
    _merge_write(config, update)
    out.print(f"wrote {folder / 'opencode.json'} (MCP: vsm, vsm-local"
              + (f"; provider vsm with {', '.join(models)}" if models else "") + ")", soft_wrap=True)
    err.print(f"the key for tenant {tenant} ({scopes}) is in {folder / KEY_FILE} (mode 600; keep it out of git)",
              soft_wrap=True)


@connect_app.command("mcp-json")
@handle_errors
def mcp_json(
    url: UrlOpt = "http://127.0.0.1:8765",
    tenant: TenantOpt = "default",
    scopes: ScopesOpt = DEFAULT_SCOPES,
    database_url: DbUrl = None,
) -> None:
    """Write .mcp.json here (Claude-style mcpServers, as oh-my-opencode reads it)."""
    url = url.rstrip("/")
    _find_gateway_data(url, database_url)
    key = _new_key(database_url, tenant, scopes)
    _probe(url, key)
    folder = Path.cwd()
    # .mcp.json has no file indirection: the key goes in, and the file gets mode 0600.
    update = {"mcpServers": {
        "vsm": {"type": "http", "url": f"{url}/mcp", "headers": {"Authorization": f"Bearer {key}"}},
        "vsm-local": {"type": "stdio", "command": _vsm_command()[0], "args": [*_vsm_command()[1:], "stdio"],
                      "env": {"VSM_API_KEY": key, **_local_env()}},
    }}
    path = folder / ".mcp.json"
    _merge_write(path, update)
    os.chmod(path, 0o600)
    out.print(f"wrote {path} (MCP: vsm, vsm-local; mode 600: it holds the key)", soft_wrap=True)


def _local_env() -> dict[str, str]:
    """What the local stdio entry needs to open the same data as the server: its home, absolute."""
    env = {"VSM_HOME": str(Path(os.environ.get("VSM_HOME", ".vsm")).resolve())}
    if os.environ.get("VSM_DATABASE_URL"):
        env["VSM_DATABASE_URL"] = os.environ["VSM_DATABASE_URL"]
    return env
