"""Real processes for the planner's crash tests: `vsm-mcp serve` / `vsm-mcp worker` with a
manifest of the planner and the counting upstream, and plan tools called over REST (stopping and
waiting: tests/procs.py; a process's stderr goes to ``<cwd>/<name>.err``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.integration.planner.conftest import COUNTER, ROOT
from tests.procs import VSM


def write_manifest(path: Path, log: Path) -> Path:
    entries = [
        {"name": "planner", "kind": "builtin", "target": "servers.planner.server:build"},
        {"name": "counter", "kind": "builtin", "target": "tests.integration.planner.counter_server:build_builtin"},
        {"name": "cstdio", "kind": "stdio", "command": sys.executable, "args": [str(COUNTER)],
         "env": {"COUNTER_LOG": str(log), "PYTHONPATH": str(ROOT)}},
    ]
    path.write_text(yaml.safe_dump({"upstreams": entries}))
    return path


def spawn(args: list[str], env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "VSM_EMBEDDER": "hash", "VSM_RATE_LIMIT": "0", **env}
    return subprocess.Popen(
        [str(VSM), *args], cwd=cwd, env=full, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=(cwd / f"{name}.err").open("ab"),
    )


async def call(base: str, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool call over REST (POST /v1/tools/{name}/call); the structured result of a success."""
    async with httpx.AsyncClient(timeout=60) as client:
        resp = await client.post(f"{base}/v1/tools/{tool}/call", json={"arguments": arguments})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert not body.get("isError"), body
    return dict(body["structuredContent"])


async def wait_state(base: str, plan_id: str, *states: str, timeout: float = 90) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for _ in range(int(timeout * 10)):
        status = await call(base, "planner__plan_status", plan_id=plan_id)
        if status["state"] in states:
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"plan never reached {states}: {status}")
