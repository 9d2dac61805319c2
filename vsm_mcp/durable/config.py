"""How the durable spine reaches its system database, derived from Settings.

DBOS keeps workflow state in a *system database*: an SQLite file under ``VSM_HOME`` on the
embedded default, the application's PostgreSQL database (schema ``dbos``) in production, or
``VSM_DBOS_DATABASE_URL`` when set. DBOS talks to PostgreSQL through psycopg (sync), so the
asyncpg URLs of the rest of vsm-mcp are rewritten here, once.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from vsm_mcp.config import Settings, sqlite_file
from vsm_mcp.errors import DatabaseUnavailable

APP_NAME = "vsm-mcp"
# One version for every process of a deployment: DBOS recovers and dequeues only workflows of
# its own application version, and its default (a hash of the workflow functions a process
# happened to import) would differ between `serve` and a `worker` that imports fewer modules.
APP_VERSION = "vsm-mcp-1"


def psycopg_url(url: str) -> str:
    """An asyncpg/plain PostgreSQL URL as the psycopg URL DBOS's sync engine uses."""
    return make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def system_database_url(settings: Settings) -> str:
    """The URL this process's DBOS uses (the application's role on PostgreSQL)."""
    if settings.dbos_database_url:
        url = settings.dbos_database_url
        return url if url.startswith("sqlite") else psycopg_url(url)
    if settings.is_postgres:
        return psycopg_url(settings.database_url)
    return f"sqlite:///{(settings.home / 'dbos.sqlite').as_posix()}"


def owner_database_url(settings: Settings) -> str:
    """The URL the system schema is created with: VSM_DBOS_DATABASE_URL as given, else the
    migration (owner) URL of the application database."""
    if settings.dbos_database_url or not settings.is_postgres:
        return system_database_url(settings)
    return psycopg_url(settings.migration_database_url)


def app_role(settings: Settings) -> str | None:
    """The PostgreSQL role the application connects as, when it differs from the owner's."""
    if settings.dbos_database_url or not settings.is_postgres:
        return None
    app_user = make_url(settings.database_url).username
    owner = make_url(settings.migration_database_url).username
    return app_user if app_user and app_user != owner else None


def executor_id(settings: Settings, role: str) -> str:
    """This process's executor id. DBOS recovers, at launch, the workflows left pending by its
    own id: on SQLite (the embedded default, one process per role) the role itself, so a
    restarted `serve` resumes its plans at once; on PostgreSQL each process gets a fresh id and
    the executor sweep (executors.py) recovers the work of dead ones."""
    if settings.dbos_executor_id:
        return settings.dbos_executor_id
    if system_database_url(settings).startswith("sqlite"):
        return role
    return f"{socket.gethostname()}-{role}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def probe(url: str, timeout: float = 5.0) -> None:
    """One round trip to the system database, so an unreachable one is one clear line at start
    instead of DBOS's connection retries (which go on for minutes)."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        connect_args: dict[str, Any] = {"timeout": timeout}
    else:
        connect_args = {"connect_timeout": max(1, int(timeout))}
    engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except (sa.exc.DBAPIError, OSError) as exc:
        orig = getattr(exc, "orig", None) or exc
        lines = str(orig).strip().splitlines()
        detail = lines[0] if lines else type(orig).__name__
        raise DatabaseUnavailable(f"cannot reach the workflow database at {redact(url)}: {detail}") from None
    finally:
        engine.dispose()
