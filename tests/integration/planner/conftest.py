"""Planner harness: a real router runtime in-process (local.py's, as `vsm-mcp stdio` runs it) with
the planner, a counting upstream mounted in-process and the same upstream as a stdio process,
and the durable spine on SQLite under the test's home. Tools are called through the dispatcher,
the way every client's call goes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.polling import eventually
from vsm_mcp import migrate
from vsm_mcp.bus import Event
from vsm_mcp.config import load_settings

COUNTER = Path(__file__).with_name("counter_server.py")
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def counter_entries(log: Path, stdio: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "planner", "kind": "builtin", "target": "servers.planner.server:build"},
        {"name": "counter", "kind": "builtin", "target": "tests.integration.planner.counter_server:build_builtin"},
    ]
    if stdio:
        out.append({"name": "cstdio", "kind": "stdio", "command": sys.executable, "args": [str(COUNTER)],
                    "env": {"COUNTER_LOG": str(log), "PYTHONPATH": str(ROOT)}})
    return out


def executions(log: Path, plan_id: str | None = None) -> list[dict[str, Any]]:
    """Executions the counter recorded (of one plan: by the idempotency key's plan id)."""
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [r for r in rows if plan_id is None or r["idem"].startswith(f"{plan_id}:")]


def hold(log: Path, on: bool) -> None:
    hold_file = Path(str(log) + ".hold")
    if on:
        hold_file.touch()
    else:
        hold_file.unlink(missing_ok=True)


@dataclass
class Planner:
    runtime: Any
    principal: Any
    log: Path
    events: list[Event] = field(default_factory=list)

    async def call(self, tool: str, **args: Any) -> dict[str, Any]:
        res = await self.runtime.dispatcher.call_tool(self.principal, tool, args)
        assert not res.is_error, res.content
        return dict(res.structured_content or {})

    async def error(self, tool: str, **args: Any) -> str:
        res = await self.runtime.dispatcher.call_tool(self.principal, tool, args)
        assert res.is_error, res.structured_content
        return " ".join(getattr(x, "text", "") for x in res.content)

    async def status(self, plan_id: str) -> dict[str, Any]:
        return await self.call("planner__plan_status", plan_id=plan_id)

    async def run(self, name: str, steps: list[dict[str, Any]], **run_args: Any) -> str:
        plan_id = (await self.call("planner__plan_create", name=name, steps=steps))["plan_id"]
        await self.call("planner__plan_approve", plan_id=plan_id)
        await self.call("planner__plan_run", plan_id=plan_id, **run_args)
        return str(plan_id)

    async def wait_state(self, plan_id: str, *states: str, timeout: float = 60) -> dict[str, Any]:
        last: dict[str, Any] = {}

        async def reached() -> bool:
            nonlocal last
            last = await self.status(plan_id)
            return last["state"] in states

        await eventually(reached, timeout, f"plan in {states} (last: {last.get('state')})")
        return last


@asynccontextmanager
async def planner_router(home: Path, entries: list[dict[str, Any]], log: Path, **overrides: Any) -> AsyncIterator[Planner]:
    from router.local import running_router
    from router.upstreams.manifest import parse_manifest

    settings = load_settings(home=home, rate_limit=0, embedder="hash", upstream_start_wait=30, **overrides)
    await asyncio.to_thread(migrate.upgrade, settings.migration_database_url)
    specs = parse_manifest({"upstreams": entries}, "test.yaml")
    async with running_router(settings, specs, durable_role="test") as (runtime, principal):
        planner = Planner(runtime, principal, log)
        sub = await runtime.ctx.bus.subscribe(["plan.#", "step.#"], maxsize=100_000)

        async def collect() -> None:
            async for ev in sub:
                planner.events.append(ev)

        task = asyncio.create_task(collect())
        try:
            yield planner
        finally:
            task.cancel()
            await sub.aclose()


@pytest.fixture(scope="module")
async def planner(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Planner]:
    """One router per test module (start-up is seconds); tests tell their plans apart by id."""
    home = tmp_path_factory.mktemp("planner")
    log = home / "counter.log"
    old = os.environ.get("COUNTER_LOG")
    os.environ["COUNTER_LOG"] = str(log)  # the in-process counter writes here too
    try:
        async with planner_router(home / ".vsm", counter_entries(log), log) as p:
            yield p
    finally:
        if old is None:
            os.environ.pop("COUNTER_LOG", None)
        else:
            os.environ["COUNTER_LOG"] = old
