"""What every CLI command shares: consoles, one-line errors, settings, database checks.

Command modules (``vsm_mcp/cli/*.py``) import from here; ``vsm_mcp/cli/__init__.py`` assembles
them into one typer app. Nothing here imports a command module, so there is no cycle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from vsm_mcp.config import Settings, load_settings
from vsm_mcp.errors import ConfigError, VsmError

T = TypeVar("T")

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


class _Debug:
    """``vsm-mcp --debug …``: tracebacks are shown instead of one-line errors."""

    on = False


DEBUG = _Debug()


class OneLineLogs(logging.Formatter):
    """Console log lines: a record's exception becomes one line after its message; the traceback
    is printed only under ``--debug``. Libraries log tracebacks of their own (SQLAlchemy's pool
    on a cancelled rollback at shutdown, the MCP SDK on a failed call); a user reads what went
    wrong, not where in somebody's code."""

    def format(self, record: logging.LogRecord) -> str:
        if DEBUG.on or not record.exc_info or record.exc_info[1] is None:
            return super().format(record)
        exc = record.exc_info[1]
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        return f"{line} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"


def console_logging(level: int = logging.WARNING) -> None:
    """The CLI's one log handler, on stderr (stdout may carry JSON-RPC), installed before any
    library's ``basicConfig`` (the MCP SDK's installs a traceback-printing one) can be."""
    root = logging.getLogger()
    if not any(isinstance(h.formatter, OneLineLogs) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(OneLineLogs("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)


def handle_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: VsmError (and Ctrl-C) → one line and an exit code, no traceback; anything
    unexpected → one line too, with its traceback only under ``--debug``."""

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
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if DEBUG.on:
                raise
            text = " ".join(str(exc).split())[:300]
            fail(f"{type(exc).__name__}: {text} (run with --debug for the traceback)", 1)
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


def check_reachable(settings: Settings, url: str) -> None:
    from vsm_mcp.db import Database

    async def probe() -> tuple[bool, str]:
        db = Database(settings, url)
        try:
            return await db.health(timeout=5)
        finally:
            await db.aclose()

    ok, detail = run_async(probe())
    if not ok:
        setting = "VSM_DATABASE_URL" if url == settings.database_url else "VSM_MIGRATION_DATABASE_URL"
        raise VsmError(
            f"cannot reach the database at {setting}={redact(url)}: {detail.removeprefix('database unavailable: ')}"
        )


def ensure_schema(settings: Settings, url: str | None = None) -> None:
    """The schema must exist before a command uses it: SQLite (the zero-set-up default) is
    migrated here; an empty PostgreSQL database is one line saying to run ``vsm-mcp migrate``
    (as the table owner) — ``tenants create`` on a fresh home used to say ``no such table``."""
    url = url or settings.migration_database_url
    check_reachable(settings, url)
    if url.startswith("sqlite"):
        from vsm_mcp import migrate as m

        quiet_migrate(m.upgrade, url)
        return
    from sqlalchemy import text

    from vsm_mcp.db import Database

    async def has_schema() -> bool:
        db = Database(settings, url)
        try:
            async with db.engine.connect() as conn:
                return (await conn.execute(text("select to_regclass('public.tenants')"))).scalar() is not None
        finally:
            await db.aclose()

    if not run_async(has_schema()):
        raise ConfigError(
            f"the database at {redact(url)} has no schema yet: run `vsm-mcp migrate` first "
            "(as the table owner, VSM_MIGRATION_DATABASE_URL)"
        )


def redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


ManifestOpt = Annotated[
    list[str] | None,
    typer.Option("--manifest", "-m", help="Manifest file or directory (repeatable); overrides VSM_MANIFESTS."),
]


def router_settings(manifest: list[str] | None, database_url: str | None = None) -> Settings:
    from vsm_mcp import migrate as m

    settings = settings_from(database_url, manifests=manifest or None)
    check_reachable(settings, settings.migration_database_url)
    quiet_migrate(m.upgrade, settings.migration_database_url)
    return settings


def quiet_migrate(fn: Callable[[str], None], url: str) -> None:
    """Run a migration with stdout redirected to stderr (stdout may be an MCP stdio channel)."""
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):
        fn(url)
