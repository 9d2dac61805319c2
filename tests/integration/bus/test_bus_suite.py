"""One suite, two buses (memory and RabbitMQ on 127.0.0.1:5672)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.unit.bus.test_topics import TABLE
from vsm_mcp.bus import Bus, Overflow
from vsm_mcp.bus.events import Event
from vsm_mcp.errors import InvalidArguments

pytestmark = pytest.mark.anyio
SENTINEL = "zz.sentinel"


async def _collect_until_sentinel(sub: object, timeout: float = 20) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in sub:  # type: ignore[attr-defined]
            if event.topic == SENTINEL:
                return got
            got.append(event)
    return got


async def test_topic_table(bus: Bus) -> None:
    """Every (pattern, topic) of the table, delivered or not exactly as topic_matches says.

    Each subscription also binds the sentinel topic; per-queue order is preserved, so whatever
    arrived before the sentinel is exactly the set the bus routed to that pattern."""
    patterns = sorted({p for p, _t, _m in TABLE})
    topics = sorted({t for _p, t, _m in TABLE})
    subs = {p: await bus.subscribe([p, SENTINEL]) for p in patterns}
    for topic in topics:
        await bus.publish(Event(topic=topic, data={"t": topic}))
    await bus.publish(Event(topic=SENTINEL))
    for pattern, sub in subs.items():
        received = {e.topic for e in await _collect_until_sentinel(sub)}
        for p, topic, expected in TABLE:
            if p == pattern:
                assert (topic in received) is expected, (pattern, topic, received)
        await sub.aclose()


async def test_envelope_round_trips(bus: Bus) -> None:
    sub = await bus.subscribe(["tool.*"])
    sent = Event(topic="tool.called", tenant="t1", type="x", data={"n": 1, "s": "é"}, trace_id="ab" * 16)
    await bus.publish(sent)
    async with asyncio.timeout(20):
        got = await anext(aiter(sub))
    assert got == sent
    await sub.aclose()


async def test_fan_out_to_every_transient_subscriber_in_order(bus: Bus) -> None:
    subs = [await bus.subscribe(["plan.#", SENTINEL]) for _ in range(3)]
    for i in range(50):
        await bus.publish(Event(topic=f"plan.step.{i}", data={"i": i}))
    await bus.publish(Event(topic=SENTINEL))
    for sub in subs:
        got = await _collect_until_sentinel(sub)
        assert [e.data["i"] for e in got] == list(range(50))
        await sub.aclose()


async def test_named_queue_shares_work(bus: Bus) -> None:
    name = f"test.workers.{uuid.uuid4().hex[:8]}"
    a = await bus.subscribe(["job.#"], queue=name, maxsize=10)
    b = await bus.subscribe(["job.#"], queue=name, maxsize=10)
    seen: list[int] = []
    all_seen = asyncio.Event()

    async def work(sub: object) -> None:
        async for event in sub:  # type: ignore[attr-defined]
            seen.append(event.data["i"])
            if len(seen) == 40:
                all_seen.set()

    tasks = [asyncio.create_task(work(a)), asyncio.create_task(work(b))]
    for i in range(40):
        await bus.publish(Event(topic="job.run", data={"i": i}))
    async with asyncio.timeout(20):
        await all_seen.wait()
    await a.aclose()
    await b.aclose()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert sorted(seen) == list(range(40))  # each job exactly once across the two workers
    if hasattr(bus, "_conn"):  # RabbitMQ: the durable queue outlives us; remove it
        channel = await bus._conn.channel()  # type: ignore[attr-defined]
        await channel.queue_delete(name)


async def test_slow_subscriber_overflows_without_blocking_publisher(bus: Bus) -> None:
    slow = await bus.subscribe(["load.*"], maxsize=5)
    fast = await bus.subscribe(["load.*", SENTINEL], maxsize=1000)
    for i in range(100):
        await bus.publish(Event(topic="load.x", data={"i": i}))
    await bus.publish(Event(topic=SENTINEL))
    got = await _collect_until_sentinel(fast)
    assert len(got) == 100
    with pytest.raises(Overflow):
        async with asyncio.timeout(20):
            async for _ in slow:
                pass
    await slow.aclose()
    await fast.aclose()


async def test_close_frees_the_subscription(bus: Bus) -> None:
    before = bus.subscriber_count  # type: ignore[attr-defined]
    sub = await bus.subscribe(["x.*"])
    assert bus.subscriber_count == before + 1  # type: ignore[attr-defined]
    await sub.aclose()
    assert bus.subscriber_count == before  # type: ignore[attr-defined]


async def test_publish_tap_sees_local_publishes(bus: Bus) -> None:
    tapped: list[str] = []
    bus.add_tap(lambda e: tapped.append(e.id))
    e = Event(topic="t.x")
    await bus.publish(e)
    assert tapped == [e.id]


async def test_bad_pattern_is_rejected(bus: Bus) -> None:
    with pytest.raises(InvalidArguments, match="whole words"):
        await bus.subscribe(["tool.*x"])


async def test_health(bus: Bus) -> None:
    ok, detail = await bus.health()
    assert ok, detail


@pytest.mark.rabbitmq
async def test_amqp_worker_that_dies_mid_event_gets_it_redelivered() -> None:
    """Durable named queue: an event is acked only when the worker asks for the next one, so a
    worker whose channel dies while holding it does not lose it."""
    from tests.conftest import RABBITMQ_URL
    from tests.integration.bus.conftest import _drop_exchange
    from vsm_mcp.bus.amqp import AmqpBus

    exchange, queue = f"vsm.test.{uuid.uuid4().hex[:10]}", f"test.redeliver.{uuid.uuid4().hex[:8]}"
    bus = AmqpBus(RABBITMQ_URL, exchange=exchange)
    await bus.start()
    try:
        dying = await bus.subscribe(["job.*"], queue=queue, maxsize=1)
        sent = Event(topic="job.run", data={"n": 1})
        await bus.publish(sent)
        it = aiter(dying)
        async with asyncio.timeout(20):
            assert (await anext(it)).id == sent.id
        await dying.channel.close()  # the worker "crashes" holding the unacked event
        survivor = await bus.subscribe(["job.*"], queue=queue, maxsize=1)
        async with asyncio.timeout(20):
            assert (await anext(aiter(survivor))).id == sent.id
        await survivor.aclose()
        channel = await bus._conn.channel()  # type: ignore[union-attr]
        await channel.queue_delete(queue)
    finally:
        await bus.aclose()
        await _drop_exchange(exchange)
