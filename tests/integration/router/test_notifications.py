"""Progress and log notifications reach the client exactly once (issue 19: on ``/mcp/<stdio
server>`` every progress notification arrived twice; on the ``/mcp`` aggregate an upstream's
log messages were dropped). The session's log level is honoured. Counted over a stdio and an
HTTP upstream, on the aggregate and on the per-server endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from tests.integration.router.conftest import serve_router, stdio_entry

# Logging is deprecated in the 2026-07-28 revision; these clients speak the handshake era, where it is not.
pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")]


async def chatty(url: str, tool: str, level: str | None = None) -> tuple[list[float], list[str]]:
    progress: list[float] = []
    logs: list[str] = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append(p)

    async def on_log(params: Any) -> None:
        logs.append(str(params.data))

    async with Client(url, mode="legacy", logging_callback=on_log) as c:
        if level is not None:
            await c.set_logging_level(level)  # type: ignore[arg-type]
        result = await c.call_tool(tool, {}, progress_callback=on_progress)
        assert result.content[0].text == "said it"  # type: ignore[union-attr]
        await c.list_tools()  # a round trip: notifications sent before the answer have arrived
    return progress, logs


@pytest.mark.parametrize("kind", ["stdio", "http"])
async def test_exactly_once_on_both_endpoints(kind: str, http_upstream: str) -> None:
    entry = stdio_entry("u") if kind == "stdio" else {"name": "u", "kind": "http", "url": http_upstream}
    async with serve_router([entry]) as (base, _app):
        for url, tool in ((f"{base}/mcp/u", "chatty"), (f"{base}/mcp", "u__chatty")):
            progress, logs = await chatty(url, tool)
            assert progress == [1, 2], (url, progress)
            assert logs == ["chatty: info", "chatty: debug"], (url, logs)
            progress, logs = await chatty(url, tool, level="info")
            assert progress == [1, 2] and logs == ["chatty: info"], (url, progress, logs)
