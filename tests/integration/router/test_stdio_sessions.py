"""``/mcp/<stdio server>`` sessions share the upstream's supervised pool (issue 19: each client
session started its own child process, kept 1-2 minutes after the client's DELETE), and a
server->client request raised during a client's call goes back to that client. ``session_mode:
per_client`` keeps one process per client session, stopped within 5 s of the session's end."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
import mcp.types as mt
import pytest
from mcp import Client

from tests.integration.router.conftest import children_of, serve_router, stdio_entry

pytestmark = pytest.mark.anyio


def upstream_children(name: str) -> set[int]:
    out = set()
    for pid in children_of(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"upstream_server.py" in b" ".join(argv) and name.encode() in argv:
            out.add(pid)
    return out


def sampler(who: str) -> Any:
    async def sample(_ctx: Any, params: mt.CreateMessageRequestParams) -> mt.CreateMessageResult:
        await anyio.sleep(0.2)  # keep both calls in flight at once
        return mt.CreateMessageResult(role="assistant", content=mt.TextContent(type="text", text=f"I am {who}"),
                                      model="test")
    return sample


async def test_sessions_share_the_pool_and_sampling_goes_to_the_caller() -> None:
    async with serve_router([stdio_entry("s", pool_size=1)]) as (base, _app):
        before = upstream_children("s")
        assert len(before) == 1
        async with Client(f"{base}/mcp/s", mode="legacy") as c:  # first call: the default tenant exists after it
            await c.call_tool("add", {"a": 1, "b": 1})
        answers: dict[str, str] = {}

        async def session(who: str) -> None:
            async with Client(f"{base}/mcp/s", mode="legacy", sampling_callback=sampler(who)) as c:
                result = await c.call_tool("ask", {})
                answers[who] = result.content[0].text  # type: ignore[union-attr]

        async with anyio.create_task_group() as tg:
            for who in ("alice", "bob", "carol"):
                tg.start_soon(session, who)
        assert answers == {"alice": "I am alice", "bob": "I am bob", "carol": "I am carol"}
        assert upstream_children("s") == before  # no process per session


async def test_per_client_mode_gives_each_session_a_process_stopped_after_it() -> None:
    async with serve_router([stdio_entry("p", session_mode="per_client")]) as (base, _app):
        pooled = upstream_children("p")
        async with Client(f"{base}/mcp/p", mode="legacy", sampling_callback=sampler("dana")) as c:
            assert (await c.call_tool("ask", {})).content[0].text == "I am dana"  # type: ignore[union-attr]
            own = upstream_children("p") - pooled
            assert len(own) == 1
        deadline = time.monotonic() + 5
        for _ in range(100):
            if not upstream_children("p") & own or time.monotonic() > deadline:
                break
            await anyio.sleep(0.05)
        assert not upstream_children("p") & own, "the session's process outlived it by more than 5 s"
