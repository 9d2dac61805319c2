"""Supervision: a killed upstream does not hurt the others and comes back; stdio process count
stays constant over many calls and drops to zero at shutdown; `vsm-mcp stdio` serves the aggregate."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from tests.integration.router.conftest import UPSTREAM, children_of, serve_router, stdio_entry
from tests.polling import eventually

pytestmark = pytest.mark.anyio


async def test_killed_upstream_is_isolated_and_restarted() -> None:
    async with serve_router([stdio_entry("a"), stdio_entry("b")]) as (base, app):
        up_a = app.state.upstreams["a"]
        async with Client(f"{base}/mcp", mode="legacy") as c:
            first_pid = (await c.call_tool("a__pid", {})).structured_content["result"]  # type: ignore[index]
            os.killpg(first_pid, signal.SIGKILL)
            await eventually(lambda: up_a.state != "ready", 30, "the router to notice the dead upstream")
            for i in range(20):  # the other upstream keeps serving
                assert (await c.call_tool("b__add", {"a": i, "b": 1})).structured_content == {"result": i + 1}
            if up_a.state != "ready":
                with pytest.raises(MCPError) as down:
                    await c.call_tool("a__add", {"a": 1, "b": 1})
                assert down.value.code == -32010  # UpstreamUnavailable
            await eventually(lambda: up_a.state == "ready", 60, "the upstream to be restarted")
            second_pid = (await c.call_tool("a__pid", {})).structured_content["result"]  # type: ignore[index]
            assert second_pid != first_pid and up_a.restarts >= 1


async def test_process_count_constant_over_1000_calls_and_zero_after_shutdown() -> None:
    me = os.getpid()
    before = children_of(me)
    async with serve_router([stdio_entry("s", pool_size=2)]) as (base, app):
        async with Client(f"{base}/mcp", mode="legacy") as c:
            await c.call_tool("s__add", {"a": 1, "b": 1})
            started = children_of(me) - before
            assert len(started) >= 2  # the pool: two children (and nothing else of ours)
            # 1,000 calls straight into the dispatcher, 20 at a time (the HTTP hop is tested elsewhere).
            dispatcher, principal = app.state.dispatcher, await app.state.authenticator.authenticate(None)
            results: list[int] = []

            async def worker(k: int) -> None:
                for i in range(k, 1000, 20):
                    r = await dispatcher.call_tool(principal, "s__add", {"a": i, "b": 1})
                    results.append(r.structured_content["result"] - 1)

            async with anyio.create_task_group() as tg:
                for k in range(20):
                    tg.start_soon(worker, k)
            assert sorted(results) == list(range(1000))
            assert children_of(me) - before == started
    await eventually(lambda: not (children_of(me) - before), 30, "stdio children to be gone")


async def test_vsm_mcp_stdio_serves_the_aggregate(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"upstreams:\n  - name: s\n    kind: stdio\n    command: {sys.executable}\n"
        f"    args: [{str(UPSTREAM)!r}, --name, s]\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "VSM_HOME", "HF_HUB_OFFLINE")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "vsm_mcp.cli", "stdio", "--manifest", str(manifest)],
        env=env, cwd=str(tmp_path),
    )
    async with Client(params, mode="legacy") as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert {"s__add", "s__whoami"} <= names
        assert (await c.call_tool("s__add", {"a": 20, "b": 22})).structured_content == {"result": 42}
        assert (await c.call_tool("s__whoami", {})).content[0].text  # type: ignore[union-attr]


async def test_per_server_sessions_do_not_leak_stdio_children() -> None:
    """With ``session_mode: per_client``, /mcp/<server> gives each client session its own upstream
    session (a child process for stdio); it is closed once the client session is gone."""
    import gc

    me = os.getpid()
    async with serve_router([stdio_entry("s", session_mode="per_client")]) as (base, _app):
        baseline = children_of(me)
        for _ in range(3):
            async with Client(f"{base}/mcp/s", mode="legacy") as c:
                assert (await c.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}
                assert len(children_of(me)) > len(baseline)  # its own upstream process
        gc.collect()
        await eventually(lambda: children_of(me) == baseline, 60, "per-session upstream children to be closed")
