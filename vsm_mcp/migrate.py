"""Run the Alembic history (migrations/) against a database URL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from vsm_mcp.errors import ConfigError

APP_ROLE = "vsm_app"  # the non-owner role migration 0001 creates; the application connects as it
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
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), revision)
    if url.startswith("postgresql"):
        # DBOS's system schema lives in the same database by default (vsm_mcp/durable); the app
        # role cannot create schemas, so the owner creates it here and grants it to vsm_app.
        from vsm_mcp.durable import migrate_schema

        migrate_schema(url, APP_ROLE)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
