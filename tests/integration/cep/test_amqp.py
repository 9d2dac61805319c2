"""The CEP runtime on RabbitMQ: it consumes a durable work queue, so events published while the
matcher is down are matched when it is back."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from servers.cep.engine import rule_version
from servers.cep.runtime import CepRuntime
from servers.cep.store import RuleDef
from tests.conftest import RABBITMQ_URL
from vsm_mcp.bus.events import Event

pytestmark = [pytest.mark.anyio, pytest.mark.rabbitmq]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_events_published_while_the_matcher_is_down_are_matched_after() -> None:
    import aio_pika

    from vsm_mcp.bus.amqp import AmqpBus

    exchange, queue = f"vsm.test.{uuid.uuid4().hex[:10]}", f"test.cep.{uuid.uuid4().hex[:8]}"
    bus = AmqpBus(RABBITMQ_URL, exchange=exchange)
    await bus.start()
    source = "count(job.failed) >= 2 within 1m by data.job"
    rule = RuleDef("t1", "twice", source, rule_version(source))
    try:
        first = CepRuntime(bus, None, queue=queue)
        first.install(rule)
        async with first.running():  # declares the durable queue
            await bus.publish(Event(topic="job.failed", tenant="t1", data={"job": "a"}))
            for _ in range(400):
                if first.engine.matcher("t1", "twice").state:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.02)
        # Down: in-memory window state is gone (by design), but what is published now waits in the queue.
        await bus.publish(Event(topic="job.failed", tenant="t1", data={"job": "b"}))
        await bus.publish(Event(topic="job.failed", tenant="t1", data={"job": "b"}))
        matches = await bus.subscribe(["cep.match.#"])
        second = CepRuntime(bus, None, queue=queue)
        second.install(rule)
        async with second.running():
            m = await asyncio.wait_for(anext(aiter(matches)), 20)
        assert m.topic == "cep.match.twice" and m.data["key"] == ["b"] and m.data["value"] == 2.0
        await matches.aclose()
    finally:
        await bus.aclose()
        conn = await aio_pika.connect(RABBITMQ_URL)
        try:
            channel = await conn.channel()
            await channel.queue_delete(queue)
            await channel.exchange_delete(exchange)
        finally:
            await conn.close()
