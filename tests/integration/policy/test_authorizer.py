"""The router's authorize step against stored policies, on PostgreSQL (RLS, as vsm_app) and
SQLite: decisions, tenant isolation, hot reload on ``policy.changed`` and failing closed."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.policy.conftest import Env
from vsm_mcp.auth import Principal
from vsm_mcp.errors import PolicyDenied
from vsm_mcp.hooks import CallInfo
from vsm_mcp.models import Policy
from vsm_mcp.policy import compile_policy
from vsm_mcp.policy.service import authorizer_of, prepare, runtime_of
from vsm_mcp.policy.store import PolicyStore

pytestmark = pytest.mark.anyio

HOURS = """
default allow
deny after_hours "deletes only 09-17 UTC" when tool.name == "storage_delete" and (context.hour < 9 or context.hour >= 17)
"""


def call(tenant: str, tool: str) -> CallInfo:
    return CallInfo(Principal(tenant, frozenset({"*"}), "k1"), f"storage__{tool}", "storage", tool, {"key": "x"})


async def denied(auth: object, info: CallInfo) -> str | None:
    try:
        await auth.authorize(info)  # type: ignore[attr-defined]
    except PolicyDenied as exc:
        return exc.message
    return None


async def eventually_denied(auth: object, info: CallInfo, want: bool) -> str | None:
    """Poll until the decision flips (the reload runs on the bus subscriber task)."""
    for _ in range(3000):  # up to 30 s on a loaded machine
        msg = await denied(auth, info)
        if (msg is not None) == want:
            return msg
        await asyncio.sleep(0.01)
    raise AssertionError(f"decision did not become {'deny' if want else 'allow'}")


async def _scenario(env: Env) -> None:
    auth = authorizer_of(env.ctx)
    await auth.start()
    store = PolicyStore(env.ctx.db, env.ctx.bus)
    try:
        assert await denied(auth, call(env.a, "storage_delete")) is None  # no policies: allowed
        p = prepare(runtime_of(env.ctx), "hours", source=HOURS)
        await store.put(env.a, "hours", source=p.source, wasm=p.wasm, meta=p.meta())
        env.clock.now = 1_764_190_800.0  # 2025-11-26T21:00:00Z
        msg = await eventually_denied(auth, call(env.a, "storage_delete"), True)
        assert msg == "denied by policy 'hours' rule 'after_hours': deletes only 09-17 UTC"
        assert await denied(auth, call(env.a, "storage_get")) is None
        assert await denied(auth, call(env.b, "storage_delete")) is None  # another tenant
        env.clock.now = 1_764_151_200.0  # 10:00 again
        assert await denied(auth, call(env.a, "storage_delete")) is None
        # Update: a new version with another window applies without a restart.
        env.clock.now = 1_764_190_800.0
        p2 = prepare(runtime_of(env.ctx), "hours", source=HOURS.replace("17", "22"))
        await store.put(env.a, "hours", source=p2.source, wasm=p2.wasm, meta=p2.meta())
        await eventually_denied(auth, call(env.a, "storage_delete"), False)
        await store.delete(env.a, "hours")
        env.clock.now = 1_764_219_600.0  # 05:00
        await eventually_denied(auth, call(env.a, "storage_delete"), False)
    finally:
        await auth.aclose()


async def test_authorizer_on_sqlite(sqlite_env: Env) -> None:
    await _scenario(sqlite_env)


@pytest.mark.postgres
async def test_authorizer_on_postgres(pg_env: Env) -> None:
    await _scenario(pg_env)


async def test_a_stored_module_that_no_longer_loads_fails_closed(sqlite_env: Env) -> None:
    env = sqlite_env
    async with env.ctx.db.tenant(env.a) as s:
        s.add(Policy(tenant_id=env.a, name="corrupt", source="", wasm=b"\0asm\x01\0\0\0garbage", meta={}))
    auth = authorizer_of(env.ctx)
    msg = await denied(auth, call(env.a, "storage_get"))
    assert msg is not None and "policy 'corrupt' rule 'sandbox'" in msg and "failing closed" in msg
    assert await denied(auth, call(env.b, "storage_get")) is None


async def test_every_active_policy_must_allow(sqlite_env: Env) -> None:
    env = sqlite_env
    store = PolicyStore(env.ctx.db)
    for name, src in [("a-open", "default allow"), ("b-closed", 'default deny "closed by default"')]:
        c = compile_policy(src, name=name)
        await store.put(env.a, name, source=src, wasm=c.wasm, meta={})
    auth = authorizer_of(env.ctx)
    assert await denied(auth, call(env.a, "x")) == "denied by policy 'b-closed' rule 'default': closed by default"


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_a_change_on_one_replica_reloads_another_over_rabbitmq(pg_env: Env) -> None:
    """Two router replicas sharing PostgreSQL and a RabbitMQ exchange: a put on replica A
    reaches replica B's cached (empty) view of the tenant without a restart."""
    import uuid

    from tests.conftest import RABBITMQ_URL
    from vsm_mcp.bus.amqp import AmqpBus
    from vsm_mcp.db import Database
    from vsm_mcp.policy.authorizer import PolicyAuthorizer
    from vsm_mcp.policy.runtime import PolicyRuntime

    env = pg_env
    exchange = f"vsm.test.policy.{uuid.uuid4().hex[:8]}"
    bus_a, bus_b = AmqpBus(RABBITMQ_URL, exchange=exchange), AmqpBus(RABBITMQ_URL, exchange=exchange)
    db_b = Database(env.ctx.settings)
    await bus_a.start()
    await bus_b.start()
    auth_b = PolicyAuthorizer(db_b, PolicyRuntime(), bus_b, clock=env.clock, ttl=0)
    await auth_b.start()
    try:
        env.clock.now = 1_764_190_800.0  # 21:00 UTC
        assert await denied(auth_b, call(env.a, "storage_delete")) is None  # caches "no policies"
        p = prepare(runtime_of(env.ctx), "hours", source=HOURS)
        await PolicyStore(env.ctx.db, bus_a).put(env.a, "hours", source=p.source, wasm=p.wasm, meta=p.meta())
        msg = await eventually_denied(auth_b, call(env.a, "storage_delete"), True)
        assert msg is not None and "rule 'after_hours'" in msg
    finally:
        await auth_b.aclose()
        await bus_a.aclose()
        await bus_b.aclose()
        await db_b.aclose()


async def test_policy_admin_tools_cannot_be_locked_out_and_loads_are_single_flight(sqlite_env: Env) -> None:
    env = sqlite_env
    src = 'default deny "closed"'
    await PolicyStore(env.ctx.db).put(env.a, "closed", source=src, wasm=compile_policy(src).wasm, meta={})
    auth = authorizer_of(env.ctx)
    calls = [call(env.a, "storage_get") for _ in range(20)]
    results = await asyncio.gather(*(denied(auth, c) for c in calls))
    assert all(r == "denied by policy 'closed' rule 'default': closed" for r in results)
    admin = CallInfo(Principal(env.a, frozenset({"policy"}), "k1"), "policy__policy_put", "policy", "policy_put", {},
                     ("policy",))
    assert await denied(auth, admin) is None
