"""The policy evaluator: tenant policies judged against tool-call events on a real bus."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.workers.conftest import Env
from tests.polling import eventually
from vsm_mcp.bus.events import Event
from vsm_mcp.policy import PolicyRuntime, compile_policy
from vsm_mcp.policy.store import PolicyStore
from vsm_mcp.workers.policy_audit import VIOLATION_TOPIC, PolicyAuditor, follow_changes

pytestmark = pytest.mark.anyio

NO_DELETE = """
default allow
deny no_delete "deletes are off" when tool.name == "storage_delete"
"""
NEEDS_SCOPES = """
default allow
deny not_admin "admins only" when tool.server == "storage" and not ("admin" in principal.scopes)
"""
BIG = """
input { size: number }
default allow
deny too_big "too big" when input.size > 100
"""


async def put(env: Env, tenant: str, name: str, source: str) -> None:
    compiled = compile_policy(source, name=name)
    await PolicyStore(env.db, env.bus).put(tenant, name, source=source, wasm=compiled.wasm, meta={})


def call(tenant: str, tool: str, outcome: str = "ok", **extra: object) -> Event:
    return Event(
        topic="tool.called" if outcome == "ok" else "tool.failed", tenant=tenant, type="tool_call",
        trace_id="ab" * 16,
        data={"server": "storage", "tool": tool, "public_name": f"storage__{tool}", "outcome": outcome,
              "duration_ms": 1.0, "source": "mcp", "principal": "key-1", "error": "", **extra},
    )


async def test_violations_judged_only_on_stated_facts(sqlite_env: Env) -> None:
    env = sqlite_env
    for name, src in (("nodelete", NO_DELETE), ("scopes", NEEDS_SCOPES), ("big", BIG)):
        await put(env, env.a, name, src)
    auditor = PolicyAuditor(env.db, PolicyRuntime(), env.bus)
    ran = await auditor.judge(call(env.a, "storage_delete"))
    assert [(v.data["policy"], v.data["rule"], v.data["enforced"]) for v in ran] == [("nodelete", "no_delete", False)]
    v = ran[0]
    assert (v.topic, v.tenant, v.trace_id) == (VIOLATION_TOPIC, env.a, "ab" * 16)
    assert v.data["idempotency_key"].startswith("policy.violation:")
    # 'scopes' reads principal.scopes and 'big' reads input.*, which the event does not state: skipped.
    assert auditor.stats.skipped_policies == 2
    assert await auditor.judge(call(env.a, "storage_get")) == []
    with_args = await auditor.judge(call(env.a, "storage_put", arguments={"size": 500}))
    assert [x.data["rule"] for x in with_args] == ["too_big"]
    assert await auditor.judge(call(env.a, "storage_put", arguments={"size": 5})) == []
    assert await auditor.judge(call(env.b, "storage_delete")) == []  # beta has no policies
    assert await auditor.judge(call(env.a, "storage_delete", tags=["policy"])) == []  # admin tools exempt


async def test_denied_calls_are_enforced_violations(sqlite_env: Env) -> None:
    env = sqlite_env
    auditor = PolicyAuditor(env.db, PolicyRuntime(), env.bus)
    denied = call(env.a, "storage_delete", "policy_denied",
                  error="denied by policy 'hours' rule 'after_hours': only 09:00-17:00 UTC")
    [v] = await auditor.judge(denied)
    assert (v.data["policy"], v.data["rule"], v.data["reason"], v.data["enforced"]) == (
        "hours", "after_hours", "only 09:00-17:00 UTC", True)
    assert await auditor.judge(call(env.a, "x", "tool_error")) == []




async def test_worker_on_a_named_queue_publishes_and_reloads_on_change(env: Env) -> None:
    auditor = PolicyAuditor(env.db, PolicyRuntime(), env.bus)
    work = await env.bus.subscribe(["tool.*"], queue="workers.policy")
    seen = await env.bus.subscribe([VIOLATION_TOPIC])
    tasks = [asyncio.create_task(auditor.run(work)), asyncio.create_task(follow_changes(auditor, env.bus))]
    try:
        await env.bus.publish(call(env.a, "storage_delete"))  # no policy yet: nothing
        await eventually(lambda: auditor.stats.events == 1 and env.a in auditor._cache, 10)
        await put(env, env.a, "nodelete", NO_DELETE)  # policy.changed drops the cached (empty) set
        await eventually(lambda: env.a not in auditor._cache, 10)
        await env.bus.publish(call(env.a, "storage_delete"))
        got = await asyncio.wait_for(anext(aiter(seen)), 5)
        assert (got.topic, got.data["rule"], got.tenant) == (VIOLATION_TOPIC, "no_delete", env.a)
    finally:
        for t in tasks:
            t.cancel()
        await work.aclose()
        await seen.aclose()
    assert auditor.stats.violations == 1 and auditor.stats.events == 2


@pytest.mark.rabbitmq
async def test_two_evaluators_share_a_rabbitmq_queue_each_event_judged_once(sqlite_env: Env) -> None:
    """Competing workers on one durable RabbitMQ queue: every event is judged by one of them."""
    import uuid

    import aio_pika

    from tests.conftest import RABBITMQ_URL
    from vsm_mcp.bus.amqp import AmqpBus

    env = sqlite_env
    await put(env, env.a, "nodelete", NO_DELETE)
    tag = uuid.uuid4().hex[:10]
    bus = AmqpBus(RABBITMQ_URL, exchange=f"vsm.test.{tag}")
    await bus.start()
    queue = f"workers.policy.test.{tag}"
    auditors = [PolicyAuditor(env.db, PolicyRuntime(), bus) for _ in range(2)]
    subs = [await bus.subscribe(["tool.*"], queue=queue) for _ in auditors]
    seen = await bus.subscribe([VIOLATION_TOPIC])
    tasks = [asyncio.create_task(a.run(s)) for a, s in zip(auditors, subs, strict=True)]
    try:
        for i in range(20):
            await bus.publish(call(env.a, "storage_delete" if i % 2 else "storage_get"))
        got = []
        async with asyncio.timeout(20):
            async for v in seen:
                got.append(v)
                if len(got) == 10:
                    break
        await asyncio.sleep(0.3)  # nothing more arrives
        assert len({v.data["event_id"] for v in got}) == 10
        assert sum(a.stats.events for a in auditors) == 20 and all(a.stats.events for a in auditors)
        assert sum(a.stats.violations for a in auditors) == 10
    finally:
        for t in tasks:
            t.cancel()
        for s in [*subs, seen]:
            await s.aclose()
        await bus.aclose()
        conn = await aio_pika.connect(RABBITMQ_URL)
        channel = await conn.channel()
        await channel.queue_delete(queue)
        await channel.exchange_delete(f"vsm.test.{tag}")
        await conn.close()
