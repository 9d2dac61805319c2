"""Topic bus: publish events, subscribe with AMQP topic patterns.

Pattern semantics (the same on every implementation): a topic is words split on ``.``;
``*`` matches exactly one word, ``#`` matches zero or more words.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from functools import lru_cache
from typing import Protocol

from vsm_mcp.events import Event


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def topic_matches(pattern: str, topic: str) -> bool:
    """AMQP topic matching: ``*`` = one word, ``#`` = zero or more words."""
    return _match(_compile(pattern), 0, tuple(topic.split(".")), 0)


def _match(pat: tuple[str, ...], i: int, words: tuple[str, ...], j: int) -> bool:
    while i < len(pat):
        p = pat[i]
        if p == "#":
            if i == len(pat) - 1:
                return True
            return any(_match(pat, i + 1, words, k) for k in range(j, len(words) + 1))
        if j >= len(words) or (p != "*" and p != words[j]):
            return False
        i += 1
        j += 1
    return j == len(words)


class Subscription(Protocol):
    """An async iterator of events; ``aclose()`` frees everything it holds."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def aclose(self) -> None: ...


class Bus(Protocol):
    async def start(self) -> None: ...

    async def publish(self, event: Event) -> None: ...

    async def subscribe(self, patterns: Sequence[str], *, maxsize: int = 1000) -> Subscription: ...

    async def aclose(self) -> None: ...


class Overflow(Exception):
    """Raised from a subscription whose consumer fell more than ``maxsize`` events behind."""


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, patterns: Sequence[str], maxsize: int) -> None:
        self.bus = bus
        self.patterns = tuple(patterns)
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        if self.overflowed or not any(topic_matches(p, event.topic) for p in self.patterns):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # Never block the publisher: mark the slow consumer and wake it to see the overflow.
            self.overflowed = True
            self.bus._subs.discard(self)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            item = await self.queue.get()
            if item is None:
                if self.overflowed:
                    raise Overflow(f"subscriber fell more than {self.queue.maxsize} events behind")
                return
            yield item

    async def aclose(self) -> None:
        self.bus._subs.discard(self)
        if not self.overflowed:
            try:
                self.queue.put_nowait(None)
            except asyncio.QueueFull:
                pass


class MemoryBus:
    """In-process bus (the default): delivery is synchronous fan-out into bounded queues."""

    def __init__(self) -> None:
        self._subs: set[_MemorySubscription] = set()

    async def start(self) -> None:
        return None

    async def publish(self, event: Event) -> None:
        for sub in list(self._subs):
            sub.offer(event)

    async def subscribe(self, patterns: Sequence[str], *, maxsize: int = 1000) -> _MemorySubscription:
        sub = _MemorySubscription(self, patterns, maxsize)
        self._subs.add(sub)
        return sub

    async def aclose(self) -> None:
        for sub in list(self._subs):
            await sub.aclose()


def make_bus(url: str) -> Bus:
    """The bus for ``VSM_BUS_URL``."""
    if url.startswith("memory"):
        return MemoryBus()
    from vsm_mcp.bus_amqp import AmqpBus  # imported lazily: aio-pika only when used

    return AmqpBus(url)
