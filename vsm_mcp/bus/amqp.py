"""RabbitMQ bus (``VSM_BUS_URL=amqp://…``): one topic exchange shared by every replica.

* Transient subscriptions (SSE fan-out, CRDT deltas) get a server-named, exclusive,
  auto-delete queue bound with their patterns, consumed without acks: RabbitMQ deletes it when
  the subscription or the connection goes away, so nothing piles up for a departed replica.
* Named subscriptions (``queue="workers.plan"``) get a durable queue shared by every consumer
  of that name, with manual acks and a prefetch of ``maxsize``: an event is acknowledged when
  the consumer asks for the next one (or closes), so a worker that dies mid-event gets it
  redelivered.

Topic semantics are RabbitMQ's own, which ``vsm_mcp.bus.topic_matches`` mirrors.
aio-pika / aiormq exceptions are mapped to ``UpstreamUnavailable`` here, at the boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import ValidationError

from vsm_mcp.bus import Overflow, Tap, check_patterns, run_taps
from vsm_mcp.bus.events import Event
from vsm_mcp.errors import UpstreamUnavailable

EXCHANGE = "vsm.events"
_STOP = object()


def _unavailable(exc: BaseException, what: str) -> UpstreamUnavailable:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UpstreamUnavailable(f"event bus (RabbitMQ) unavailable while {what}: {detail}")


class AmqpSubscription:
    """One consumer on its own channel; ``aclose()`` cancels it and closes the channel."""

    def __init__(
        self, channel: AbstractChannel, maxsize: int, durable: bool, registry: set[AmqpSubscription]
    ) -> None:
        self.channel = channel
        self._registry = registry
        self.durable = durable
        self.maxsize = maxsize
        # Durable queues are bounded by the prefetch count; transient ones by our check below.
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.overflowed = False
        self.closed = False
        self._tag: str | None = None
        self._amqp_queue: Any = None
        self._pending: AbstractIncomingMessage | None = None

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self.closed or self.overflowed:
            return
        if not self.durable and self.queue.qsize() >= self.maxsize:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_STOP)
            asyncio.get_running_loop().create_task(self._cancel())
            return
        self.queue.put_nowait(message)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            await self._ack_pending()
            item = await self.queue.get()
            if item is _STOP:
                if self.overflowed:
                    raise Overflow(f"subscriber fell more than {self.maxsize} events behind")
                return
            message: AbstractIncomingMessage = item
            try:
                event = Event.model_validate_json(message.body)
            except ValidationError:
                # A foreign or corrupt message: drop it (and ack it) rather than kill the consumer.
                if self.durable:
                    await message.reject(requeue=False)
                continue
            if self.durable:
                self._pending = message
            yield event

    async def _ack_pending(self) -> None:
        if self._pending is not None:
            message, self._pending = self._pending, None
            try:
                await message.ack()
            except Exception as exc:  # channel gone: RabbitMQ redelivers it, which is the point
                raise _unavailable(exc, "acknowledging an event") from exc

    async def _cancel(self) -> None:
        self._registry.discard(self)
        try:
            if self._amqp_queue is not None and self._tag is not None:
                await self._amqp_queue.cancel(self._tag)
        except Exception:  # noqa: S110 - the channel is closed next anyway
            pass
        try:
            await self.channel.close()
        except Exception:  # noqa: S110
            pass

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._ack_pending()
        except UpstreamUnavailable:
            pass
        self.queue.put_nowait(_STOP)
        await self._cancel()


class AmqpBus:
    """A bus on a RabbitMQ topic exchange (aio-pika, robust connection that reconnects)."""

    def __init__(self, url: str, *, exchange: str = EXCHANGE) -> None:
        self.url = url
        self.exchange_name = exchange
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._taps: list[Tap] = []
        self._subs: set[AmqpSubscription] = set()
        self._lock = asyncio.Lock()

    def add_tap(self, tap: Tap) -> None:
        self._taps.append(tap)

    async def start(self) -> None:
        async with self._lock:
            if self._exchange is not None:
                return
            try:
                self._conn = await aio_pika.connect_robust(self.url, timeout=10)
                self._channel = await self._conn.channel()
                self._exchange = await self._channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except Exception as exc:
                raise _unavailable(exc, "connecting") from exc

    async def _ensure(self) -> tuple[AbstractRobustConnection, AbstractExchange]:
        if self._exchange is None:
            await self.start()
        assert self._conn is not None and self._exchange is not None
        return self._conn, self._exchange

    async def publish(self, event: Event) -> None:
        _conn, exchange = await self._ensure()
        run_taps(self._taps, event)
        message = aio_pika.Message(
            event.model_dump_json().encode(),
            content_type="application/json",
            message_id=event.id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await exchange.publish(message, routing_key=event.topic)
        except Exception as exc:
            raise _unavailable(exc, f"publishing {event.topic!r}") from exc

    async def subscribe(
        self, patterns: Sequence[str], *, maxsize: int = 1000, queue: str | None = None
    ) -> AmqpSubscription:
        pats = check_patterns(patterns)
        conn, _exchange = await self._ensure()
        try:
            channel = await conn.channel()
            durable = bool(queue)
            sub = AmqpSubscription(channel, maxsize, durable, self._subs)
            if durable:
                await channel.set_qos(prefetch_count=maxsize)
                amqp_queue = await channel.declare_queue(queue, durable=True)
            else:
                amqp_queue = await channel.declare_queue(None, exclusive=True, auto_delete=True)
            for pattern in pats:
                await amqp_queue.bind(self.exchange_name, routing_key=pattern)
            sub._amqp_queue = amqp_queue
            sub._tag = await amqp_queue.consume(sub._on_message, no_ack=not durable)
        except Exception as exc:
            raise _unavailable(exc, f"subscribing to {', '.join(pats)}") from exc
        self._subs.add(sub)
        return sub

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions (tests use it to prove a disconnect frees its subscription)."""
        return len(self._subs)

    async def health(self) -> tuple[bool, str]:
        if self._conn is None:
            return False, "not connected"
        if self._conn.is_closed:
            return False, "connection to RabbitMQ is closed (reconnecting)"
        return True, "connected"

    async def aclose(self) -> None:
        for sub in list(self._subs):
            await sub.aclose()
        self._subs.clear()
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = self._channel = self._exchange = None
