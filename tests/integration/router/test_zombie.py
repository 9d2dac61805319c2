"""Zombie stdio upstreams: a child that is alive but stuck (SIGSTOP: it reads nothing and answers
nothing) is detected within VSM_UPSTREAM_ZOMBIE_S, drained and replaced; its in-flight call fails
cleanly; the rest of its pool and the other upstreams serve throughout."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest
from typer.testing import CliRunner

from tests.integration.router.conftest import serve_router, stdio_entry
from tests.polling import eventually
from vsm_mcp.cli import app as cli_app
from vsm_mcp.errors import UpstreamUnavailable

pytestmark = pytest.mark.anyio
BOUND_S = 3.0


async def test_a_stuck_stdio_upstream_is_drained_and_replaced_while_others_serve() -> None:
    # z's bound comes from its manifest entry (zombie_s); the others keep VSM_UPSTREAM_ZOMBIE_S.
    entries = [stdio_entry("z", pool_size=2, zombie_s=BOUND_S), stdio_entry("other")]
    async with serve_router(entries, upstream_drain_grace_s=3.0) as (base, app):
        up = app.state.upstreams["z"]
        dispatcher, principal = app.state.dispatcher, await app.state.authenticator.authenticate(None)
        alerts = await app.state.runtime.ctx.bus.subscribe(["alert.#"])
        await eventually(lambda: len(up.pids) == 2, 60, "both children of the pool")
        victim, healthy = up._conns[0].pid, up._conns[1].pid

        # One slow call in flight on each child (the pool sends each to the least busy session).
        in_flight = [asyncio.create_task(dispatcher.call_tool(principal, "z__slow", {"seconds": 4})) for _ in range(2)]
        await eventually(lambda: all(c.busy for c in up._conns), 30, "a call in flight on each child")
        os.kill(victim, signal.SIGSTOP)
        stopped_at = time.monotonic()

        served = {"other": 0, "z": 0, "other_failed": 0}

        async def keep_calling() -> None:
            i = 0
            while True:
                i += 1
                try:
                    await dispatcher.call_tool(principal, "other__add", {"a": i, "b": 1})
                    served["other"] += 1
                except Exception:
                    served["other_failed"] += 1
                await asyncio.sleep(0.02)

        caller = asyncio.create_task(keep_calling())
        alert = await asyncio.wait_for(anext(aiter(alerts)), BOUND_S + 30)
        detected_after = time.monotonic() - stopped_at
        assert alert.topic.endswith(".zombie") and alert.data["upstream"] == "z" and alert.data["pid"] == victim
        assert detected_after <= BOUND_S + 2.0, detected_after  # within the bound (slack: a loaded machine)
        # Its in-flight call holds the drain for the grace period: /readyz and `vsm-mcp status` show it.
        async with httpx.AsyncClient(base_url=base) as h:
            ready = (await h.get("/readyz")).json()
        assert ready["checks"]["upstreams"]["z"]["draining"] == 1 and ready["draining"] == {"z": 1}
        shown = await asyncio.to_thread(CliRunner().invoke, cli_app, ["status", "--url", base])
        assert "upstream z: ready" in shown.output and "DRAINING 1" in shown.output, shown.output
        # While it drains, new calls to z go to the healthy child only.
        z_pid = (await dispatcher.call_tool(principal, "z__pid", {})).structured_content["result"]
        assert z_pid == healthy

        results = await asyncio.gather(*in_flight, return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], UpstreamUnavailable), results  # cleanly, no hang
        assert sum(1 for r in results if not isinstance(r, BaseException) and not r.is_error) == 1

        await eventually(lambda: len(up.pids) == 2 and victim not in up.pids, 60, "a replacement child")
        caller.cancel()
        assert served["other"] > 0 and served["other_failed"] == 0
        assert up.zombies == 1 and up.status()["draining"] == 0
        assert (await dispatcher.call_tool(principal, "z__add", {"a": 2, "b": 2})).structured_content == {"result": 4}
        with pytest.raises(ProcessLookupError):
            os.kill(victim, 0)  # the stuck child's group was killed, not left behind
        async with httpx.AsyncClient(base_url=base) as h:
            metrics = (await h.get("/metrics")).text
        assert 'vsm_zombies_total{kind="stdio",where="z"} 1.0' in metrics
        await alerts.aclose()
