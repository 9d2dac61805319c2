"""The CLI: set-up commands work; bad input is one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VSM = [sys.executable, "-m", "vsm_mcp.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VSM, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), proc.stderr
    assert needle in " ".join(lines), proc.stderr


def test_migrate_tenant_and_key_on_sqlite(tmp_path: Path) -> None:
    assert run("migrate").returncode == 0
    assert run("migrate").returncode == 0  # idempotent
    created = run("tenants", "create", "acme")
    assert created.returncode == 0, created.stderr
    key = run("keys", "create", "--tenant", "acme", "--scopes", "tools:call,storage:*")
    assert key.returncode == 0, key.stderr
    assert key.stdout.strip().startswith("vsm_")
    assert_one_line_error(run("tenants", "create", "acme"), "already exists")


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (("migrate", "--database-url", "mysql://x/y"), {}, "VSM_DATABASE_URL"),
        (("migrate",), {"VSM_DATABASE_URL": "postgresql+asyncpg://nobody@127.0.0.1:1/x"}, "cannot reach the database"),
        (("migrate",), {"VSM_PORT": "nope"}, "VSM_PORT"),
        (("keys", "create", "--tenant", "missing", "--scopes", "tools:call"), {}, "no tenant named 'missing'"),
        (("keys", "create", "--tenant", "x", "--scopes", "tools:call,launch:missiles"), {}, "unknown scope"),
        (("tenants", "create", "Bad Name!"), {}, "invalid tenant name"),
    ],
)
def test_bad_input_is_one_clear_line(args: tuple[str, ...], env: dict[str, str], needle: str) -> None:
    run("migrate")
    assert_one_line_error(run(*args, env=env), needle)


def test_help_explains_every_command() -> None:
    top = run("--help")
    assert top.returncode == 0
    for command in ("serve", "migrate", "tenants", "keys"):
        assert command in top.stdout
        sub = run(command, "--help")
        assert sub.returncode == 0 and len(sub.stdout) > 100, command


@pytest.mark.postgres
def test_migrate_creates_the_default_tenant_the_app_role_may_not(pg_owner_url: str, pg_app_url: str) -> None:
    """A fresh PostgreSQL is usable after `vsm-mcp migrate` alone: vsm_app cannot insert tenants."""
    env = {"VSM_DATABASE_URL": pg_app_url, "VSM_MIGRATION_DATABASE_URL": pg_owner_url}
    assert run("migrate", env=env).returncode == 0
    assert run("migrate", env=env).returncode == 0  # idempotent: the tenant is not created twice
    listed = run("tenants", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split().count("default") == 1, listed.stdout
    custom = run("migrate", env={**env, "VSM_DEFAULT_TENANT": "ops"})
    assert custom.returncode == 0, custom.stderr
    assert "ops" in run("tenants", "list", env=env).stdout.split()
