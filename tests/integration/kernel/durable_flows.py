"""Workflows for the durable spine's tests, importable by the test and by its child processes.

``python -m tests.integration.kernel.durable_flows HOME_OR_PG_URL EXECUTOR_ID LOG`` launches a
spine, starts ``fan`` and blocks inside its steps until killed; each step execution appends a
line (name, pid) to LOG, so the parent can count executions across the crash. A manifest entry
``tests.integration.kernel.durable_flows:build_builtin`` makes `vsm-mcp worker` import them.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dbos import DBOS

from vsm_mcp import durable

durable.declare_queue("test_flows", worker_concurrency=4, polling_interval_sec=0.1)


def record(log: str, name: str) -> bool:
    """Append one execution (name and pid) to LOG; True while the parent wants steps held."""
    with open(log, "a") as f:
        f.write(f"{name} {os.getpid()}\n")
    return Path(log + ".hold").exists()


def hold(log: str, on: bool) -> None:
    Path(log + ".hold").touch() if on else Path(log + ".hold").unlink()


def executions(log: str) -> list[str]:
    return [line.split()[0] for line in Path(log).read_text().splitlines()] if Path(log).exists() else []


def runners(log: str) -> set[int]:
    """Pids of the processes that ran steps."""
    return {int(line.split()[1]) for line in Path(log).read_text().splitlines()} if Path(log).exists() else set()


def build_builtin(ctx: object) -> object:
    """A manifest entry importing this module, so a `vsm-mcp worker` knows these workflows."""
    from mcp.server.mcpserver import MCPServer

    return MCPServer("flows")


@DBOS.step()
async def mark(log: str, name: str, held: bool) -> str:
    if record(log, name) and held:
        await asyncio.sleep(3600)  # the parent kills us here
    return name


@DBOS.workflow()
async def fan(log: str, width: int) -> list[str]:
    first = await mark(log, "first", False)
    # Steps of the fan-out hold while the .hold file exists: the crash lands mid-fan-out.
    middle = await asyncio.gather(*(mark(log, f"m{i}", True) for i in range(width)))
    return [first, *middle, await mark(log, "last", False)]


async def _child(target: str, executor: str, log: str) -> None:
    from vsm_mcp.config import load_settings

    if target.startswith("postgresql"):
        settings = load_settings(database_url=target, dbos_executor_id=executor)
    else:
        settings = load_settings(home=Path(target), dbos_executor_id=executor)
    async with durable.Spine(settings, role="test-child").running():
        await durable.queue("test_flows").enqueue_async(fan, log, 3)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(_child(*sys.argv[1:4]))
