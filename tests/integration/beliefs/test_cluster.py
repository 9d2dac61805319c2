"""Router processes (`vsm-mcp serve`) replicating beliefs over RabbitMQ, sharing one PostgreSQL.

Each test gets a fresh database (so its own tenant ids, hence its own bus topics: parallel runs
do not interfere). Nodes have separate homes, hence separate replica ids.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from servers.beliefs.store import BeliefStore
from tests import procs
from tests.conftest import RABBITMQ_URL
from tests.ports import free_port
from vsm_mcp import migrate
from vsm_mcp.config import load_settings
from vsm_mcp.crdt import BeliefSet
from vsm_mcp.db import Database
from vsm_mcp.tenants import ensure_tenant

pytestmark = [pytest.mark.postgres, pytest.mark.rabbitmq, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[3]



class Router:
    """One `vsm-mcp serve` subprocess."""

    def __init__(self, name: str, tmp: Path, owner_url: str, app_url: str) -> None:
        self.name = name
        self.home = tmp / name
        self.port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VSM_HOME": str(self.home),
            "VSM_PORT": str(self.port),
            "VSM_DATABASE_URL": app_url,
            "VSM_MIGRATION_DATABASE_URL": owner_url,
            "VSM_BUS_URL": RABBITMQ_URL,
            "VSM_EMBEDDER": "hash",
            "VSM_BELIEFS_ANTI_ENTROPY_S": "0.5",
            "VSM_LOG_LEVEL": "warning",
            # The test's local clients are anonymous; since the gate, anonymous may not write unless allowed.
            "VSM_ANONYMOUS_SCOPES": "tools:call,beliefs:read,beliefs:write",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "serve.log", "ab")  # noqa: SIM115  (closed with the process)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vsm_mcp.cli", "serve"], env=self.env, cwd=self.home,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    async def ready(self, timeout: float = 90) -> None:
        async with httpx.AsyncClient() as http:
            with_deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < with_deadline:
                assert self.proc is not None and self.proc.poll() is None, self.log_tail()
                try:
                    r = await http.get(f"{self.url}/readyz", timeout=2)
                    if r.status_code == 200 and r.json()["checks"]["upstreams"]["beliefs"]["ok"]:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready: {self.log_tail()}")

    async def durable_state(self) -> BeliefSet:
        """This router's replica of the default tenant as stored in the database."""
        node = (self.home / "beliefs-node-id").read_text().strip()
        db = Database(load_settings(database_url=self.env["VSM_MIGRATION_DATABASE_URL"]))
        try:
            tenant = (await ensure_tenant(db, "default")).id
            return (await BeliefStore(db, node).load(tenant)).state
        finally:
            await db.aclose()

    def log_tail(self) -> str:
        return procs.tail(self.home / "serve.log")

    def kill(self) -> None:
        """SIGKILL, as a crash: the router and whatever it started."""
        if self.proc is not None:
            procs.kill(self.proc)


async def call(router: Router, tool: str, **args: Any) -> dict[str, Any]:
    async with Client(f"{router.url}/mcp", mode="legacy") as c:
        res = await c.call_tool(f"beliefs__{tool}", args)
    assert not res.is_error, res.content
    assert isinstance(res.structured_content, dict)
    return res.structured_content


async def snapshot(router: Router) -> dict[str, Any]:
    out = await call(router, "belief_query", limit=1000)
    stats = await call(router, "belief_stats")
    return {"beliefs": out["beliefs"], "digest": stats["digest"]}


async def converged(routers: list[Router], timeout: float = 60) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        snaps = [await snapshot(r) for r in routers]
        if all(s == snaps[0] for s in snaps[1:]):
            return snaps[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no convergence: {[s['digest'] for s in snaps]}")
        await asyncio.sleep(0.3)


@pytest.fixture
def cluster(pg_owner_url: str, pg_app_url: str, tmp_path: Path) -> Any:
    migrate.upgrade(pg_owner_url)

    async def default_tenant() -> None:
        db = Database(load_settings(database_url=pg_owner_url), pg_owner_url)
        try:
            await ensure_tenant(db, "default")
        finally:
            await db.aclose()

    asyncio.run(default_tenant())
    routers: list[Router] = []

    def make(name: str) -> Router:
        r = Router(name, tmp_path, pg_owner_url, pg_app_url)
        routers.append(r)
        return r

    yield make
    for r in routers:
        r.kill()


@pytest.mark.timeout(300)
def test_routers_converge_sigkill_loses_nothing_late_joiner_catches_up(cluster: Any) -> None:
    asyncio.run(_scenario(cluster))


async def _scenario(cluster: Any) -> None:
    a, b = cluster("a"), cluster("b")
    a.start()
    b.start()
    await asyncio.gather(a.ready(), b.ready())

    # 1. Concurrent writes on both routers, same keys, then one retract each.
    async def writes(r: Router) -> None:
        for i in range(12):
            await call(r, "belief_assert", key=f"k{i % 4}", value=f"{r.name}{i}", source=r.name)
        await call(r, "belief_retract", key=f"k{0 if r.name == 'a' else 1}")

    await asyncio.gather(writes(a), writes(b))
    state = await converged([a, b])
    keys = {x["key"] for x in state["beliefs"]}
    assert keys <= {"k0", "k1", "k2", "k3"} and {"k2", "k3"} <= keys

    # 2. SIGKILL a router in the middle of a stream of writes: every write it acknowledged is in
    #    its own durable state (read straight from its rows, so nothing can come from a peer).
    acked: dict[str, int] = {}
    enough = asyncio.Event()

    async def writer() -> None:
        i = 0
        while True:
            await call(a, "belief_assert", key=f"durable/{i}", value=i)
            acked[f"durable/{i}"] = i
            i += 1
            if i == 25:
                enough.set()

    task = asyncio.create_task(writer())
    await asyncio.wait_for(enough.wait(), timeout=120)
    a.kill()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    loaded = await a.durable_state()
    missing = {k: v for k, v in acked.items() if (e := loaded.get(k)) is None or e.belief.value != v}
    assert not missing, f"acknowledged writes lost after SIGKILL: {sorted(missing)[:10]}"

    # 3. Restart it, and start a third router that saw none of the deltas: anti-entropy brings
    #    everyone to the same state, which holds every acknowledged write.
    c = cluster("c")
    a.start()
    c.start()
    await asyncio.gather(a.ready(), c.ready())
    final = await converged([a, b, c])
    values = {x["key"]: x["value"] for x in final["beliefs"]}
    assert all(values.get(k) == v for k, v in acked.items())
    assert {x["key"] for x in state["beliefs"]} <= set(values)
    peers = (await call(b, "belief_stats"))["peers"]
    assert sorted(peers) == sorted([(await call(a, "belief_stats"))["node"], (await call(c, "belief_stats"))["node"]])
