"""Run the Alembic history (migrations/) against a database URL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config

from vsm_mcp.config import sqlite_file
from vsm_mcp.errors import ConfigError

APP_ROLE = "vsm_app"  # the non-owner role migration 0001 creates; the application connects as it
MIGRATION_LOCK = 0x76736D2D6D6967  # "vsm-mig": the advisory lock key migrating processes share
MIGRATION_WAIT_S = 600.0
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    if not MIGRATIONS_DIR.is_dir():
        raise ConfigError(f"migrations folder not found at {MIGRATIONS_DIR}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Upgrade to ``revision`` (all branch heads by default). Synchronous: runs its own loop."""
    path = sqlite_file(url)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    with one_migrator(url):
        command.upgrade(alembic_config(url), revision)
        if url.startswith("postgresql"):
            # DBOS's system schema lives in the same database by default (vsm_mcp/durable); the app
            # role cannot create schemas, so the owner creates it here and grants it to vsm_app.
            from vsm_mcp.durable import migrate_schema

            migrate_schema(url, APP_ROLE)


@contextmanager
def one_migrator(url: str) -> Iterator[None]:
    """On PostgreSQL, one migrating process at a time: replicas started together each migrate at
    start-up, and concurrent DDL and GRANTs fail ("tuple concurrently updated", seen when two
    routers started at once). The second waits on an advisory lock, then finds nothing to do."""
    if not url.startswith("postgresql"):
        yield
        return
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from vsm_mcp.durable.config import psycopg_url

    # Autocommit, and polled with try-lock rather than a blocking pg_advisory_lock: DBOS's
    # migrations run CREATE INDEX CONCURRENTLY, which waits for every transaction with an older
    # snapshot — an idle-in-transaction holder or a waiter blocked inside a statement is one,
    # and the migrations then wait for the lock's waiters while they wait for the lock.
    engine = sa.create_engine(psycopg_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            deadline = time.monotonic() + MIGRATION_WAIT_S
            while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK}).scalar():
                if time.monotonic() > deadline:
                    raise ConfigError(f"another process has been migrating this database for over "
                                      f"{MIGRATION_WAIT_S:.0f} s; wait for it (see pg_stat_activity) and retry")
                time.sleep(0.2)
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    finally:
        engine.dispose()


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
