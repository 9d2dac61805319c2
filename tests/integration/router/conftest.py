"""Router integration harness: real uvicorn on 127.0.0.1, real stdio and HTTP upstream processes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from router.app import create_app
from router.fastlane.hot_protocol import HotLaneProtocol
from router.upstreams.manifest import parse_manifest
from tests.polling import eventually
from tests.ports import free_port
from tests.procs import stop, wait_listening
from vsm_mcp import migrate
from vsm_mcp.config import Settings, load_settings

UPSTREAM = Path(__file__).with_name("upstream_server.py")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"



def stdio_entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "stdio", "command": sys.executable, "args": [str(UPSTREAM), "--name", name], **extra}


@pytest.fixture
def http_upstream() -> Iterator[str]:
    """A test upstream over streamable HTTP in its own process; yields its /mcp URL."""
    yield from _upstream_process("http", "/mcp")


@pytest.fixture
def sse_upstream() -> Iterator[str]:
    """A test upstream speaking only the legacy HTTP+SSE transport; yields its /sse URL."""
    yield from _upstream_process("sse", "/sse")


def _upstream_process(transport: str, path: str) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(UPSTREAM), "--transport", transport, "--port", str(port), "--name", "h"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, proc)  # uvicorn listens once the app has started
        yield f"http://127.0.0.1:{port}{path}"
    finally:
        stop(proc)


def router_settings(**overrides: Any) -> Settings:
    s = load_settings(**{"rate_limit": 0, "upstream_start_wait": 30, **overrides})
    migrate.upgrade(s.migration_database_url)
    return s


@asynccontextmanager
async def serve_router(entries: list[dict[str, Any]], **overrides: Any) -> AsyncIterator[tuple[str, Any]]:
    """The router app on a free loopback port; yields (base URL, app)."""
    port = free_port()
    settings = await asyncio.to_thread(router_settings, port=port, **overrides)
    app = create_app(settings, specs=parse_manifest({"upstreams": entries}, "test.yaml"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    # The protocol `vsm-mcp serve` runs (router/fastlane/hot_protocol.py), so these tests cover its hot lane.
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3, http=HotLaneProtocol)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), 90, "uvicorn to start")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)
        sock.close()


def children_of(pid: int) -> set[int]:
    """All descendant pids of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - out
        out |= frontier
    return out
