from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from tests.conftest import RABBITMQ_URL
from vsm_mcp.bus import Bus, MemoryBus


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _drop_exchange(name: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(RABBITMQ_URL)
    try:
        channel = await conn.channel()
        await channel.exchange_delete(name)
    finally:
        await conn.close()


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    """The same suite on both implementations; each AMQP test gets its own exchange."""
    if request.param == "memory":
        b: Bus = MemoryBus()
        await b.start()
        yield b
        await b.aclose()
        return
    from vsm_mcp.bus.amqp import AmqpBus

    exchange = f"vsm.test.{uuid.uuid4().hex[:10]}"
    b = AmqpBus(RABBITMQ_URL, exchange=exchange)
    await b.start()
    try:
        yield b
    finally:
        await b.aclose()
        await _drop_exchange(exchange)
