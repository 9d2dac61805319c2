"""Storage fixtures: a real moto S3 server on 127.0.0.1, and one backend URL per backend kind."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.integration.databases import copy_migrated
from tests.ports import free_port
from tests.procs import stop, wait_ready_sync
from vsm_mcp.config import load_settings
from vsm_mcp.db import Database
from vsm_mcp.storage import StorageService
from vsm_mcp.tenants import create_tenant

BACKENDS = ["memory", "file", "s3"]



@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """``python -m moto.server`` as a subprocess speaking the real S3 HTTP API."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready_sync(url, proc, path="/moto-api/", timeout=60)
        yield url
    finally:
        stop(proc, timeout=10)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty backend of each kind (S3: a new bucket on the shared moto server)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "file":
        return f"file://{tmp_path / 'objects'}"
    endpoint = request.getfixturevalue("moto_endpoint")
    request.getfixturevalue("aws_env")
    return f"s3://vsm-{uuid.uuid4().hex[:12]}/root?endpoint_url={endpoint}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"




@pytest.fixture
async def storage_env(
    backend_url: str, tmp_path: Path, migrated_sqlite: Path
) -> AsyncIterator[tuple[StorageService, str, str]]:
    """(service, tenant a, tenant b) on a migrated SQLite database and the backend under test."""
    settings = load_settings(home=copy_migrated(migrated_sqlite, tmp_path / ".vsm"), storage_url=backend_url)
    db = Database(settings)
    svc = StorageService(settings, db)
    a = (await create_tenant(db, "alpha")).id
    b = (await create_tenant(db, "beta")).id
    try:
        yield svc, a, b
    finally:
        await svc.aclose()
        await db.aclose()
