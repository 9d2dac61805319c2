"""Topic bus: publish events, subscribe with AMQP topic patterns.

Pattern semantics (the same on every implementation): a topic is words split on ``.``;
``*`` matches exactly one word, ``#`` matches zero or more words.

Two kinds of subscription, one interface:

* ``subscribe(patterns)`` — transient fan-out: every subscriber gets its own copy of every
  matching event while it is subscribed (SSE connections, CRDT deltas …).
* ``subscribe(patterns, queue="workers.plan")`` — a named work queue: subscribers sharing the
  name compete (each event goes to one of them). On RabbitMQ the queue is durable and an event
  is acknowledged when the consumer asks for the next one, so a worker that dies mid-event
  gets it redelivered; in memory it lives as long as the process.

Delivery never blocks the publisher: a transient subscriber that falls ``maxsize`` events
behind gets ``Overflow`` raised from its iterator.

``add_tap(fn)`` registers a synchronous callback run for every event *published by this
process* (the durable event log uses it, so each event is logged once however many replicas
receive it).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from functools import lru_cache
from typing import Protocol

from vsm_mcp.bus.events import Event


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


Tap = Callable[[Event], None]


class Bus(Protocol):
    """The topic bus every component publishes to and subscribes on."""

    async def start(self) -> None: ...

    async def publish(self, event: Event) -> None: ...

    async def subscribe(
        self, patterns: Sequence[str], *, maxsize: int = 1000, queue: str | None = None
    ) -> Subscription: ...

    def add_tap(self, tap: Tap) -> None: ...

    async def health(self) -> tuple[bool, str]: ...

    async def aclose(self) -> None: ...


def check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    """Validate subscription patterns; a bad one raises InvalidArguments naming it."""
    from vsm_mcp.errors import InvalidArguments

    if isinstance(patterns, str):
        patterns = [patterns]
    out = tuple(patterns)
    if not out:
        raise InvalidArguments("at least one topic pattern is required, e.g. 'tool.*'")
    for p in out:
        if len(p.encode()) > 255:
            raise InvalidArguments(f"topic pattern {p[:40]!r}… is longer than 255 bytes")
        for word in p.split("."):
            if ("*" in word or "#" in word) and word not in ("*", "#"):
                raise InvalidArguments(
                    f"topic pattern {p!r}: '*' and '#' must be whole words (e.g. 'tool.*', 'plan.#')"
                )
    return out


def run_taps(taps: Sequence[Tap], event: Event) -> None:
    """Run publish taps; a failing tap is logged and never fails the publish."""
    for tap in taps:
        try:
            tap(event)
        except Exception:  # a tap bug must not break every publisher
            import logging

            logging.getLogger("vsm_mcp.bus").exception("bus tap %r failed", tap)


class Overflow(Exception):
    """Raised from a subscription whose consumer fell more than ``maxsize`` events behind."""


class _MemorySubscription:
    def __init__(self, bus: MemoryBus, patterns: tuple[str, ...], maxsize: int, queue: str | None) -> None:
        self.bus = bus
        self.patterns = patterns
        self.queue_name = queue
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False
        self.closed = False

    def matches(self, topic: str) -> bool:
        return any(topic_matches(p, topic) for p in self.patterns)

    def offer(self, event: Event) -> bool:
        """Queue ``event``; False when this subscriber cannot take it (closed or overflowed)."""
        if self.overflowed or self.closed:
            return False
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            # Never block the publisher: mark the slow consumer and wake it to see the overflow.
            self.overflowed = True
            self.bus._detach(self)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            item = await self.queue.get()
            if item is None:
                if self.overflowed:
                    raise Overflow(f"subscriber fell more than {self.queue.maxsize} events behind")
                return
            yield item

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.bus._detach(self)
        if not self.overflowed:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class MemoryBus:
    """In-process bus (the default): delivery is synchronous fan-out into bounded queues."""

    def __init__(self) -> None:
        self._subs: set[_MemorySubscription] = set()
        self._groups: dict[str, list[_MemorySubscription]] = {}
        self._rr = itertools.count()
        self._taps: list[Tap] = []

    async def start(self) -> None:
        return None

    def add_tap(self, tap: Tap) -> None:
        self._taps.append(tap)

    async def health(self) -> tuple[bool, str]:
        return True, "in-process"

    async def publish(self, event: Event) -> None:
        run_taps(self._taps, event)
        for sub in list(self._subs):
            if sub.matches(event.topic):
                sub.offer(event)
        for members in list(self._groups.values()):
            live = [m for m in members if m.matches(event.topic)]
            # Competing consumers: round-robin, skipping a member that cannot take it.
            start = next(self._rr)
            for k in range(len(live)):
                if live[(start + k) % len(live)].offer(event):
                    break

    async def subscribe(
        self, patterns: Sequence[str], *, maxsize: int = 1000, queue: str | None = None
    ) -> _MemorySubscription:
        # Work on a named queue is never dropped (as on RabbitMQ, where it waits in the queue):
        # only transient subscribers are bounded.
        sub = _MemorySubscription(self, check_patterns(patterns), 0 if queue else maxsize, queue)
        if queue:
            self._groups.setdefault(queue, []).append(sub)
        else:
            self._subs.add(sub)
        return sub

    def _detach(self, sub: _MemorySubscription) -> None:
        self._subs.discard(sub)
        if sub.queue_name and sub in self._groups.get(sub.queue_name, []):
            self._groups[sub.queue_name].remove(sub)
            if not self._groups[sub.queue_name]:
                del self._groups[sub.queue_name]

    @property
    def subscriber_count(self) -> int:
        """Live subscriptions (tests use it to prove a disconnect frees its subscription)."""
        return len(self._subs) + sum(len(m) for m in self._groups.values())

    async def aclose(self) -> None:
        for sub in [*self._subs, *(m for ms in self._groups.values() for m in ms)]:
            await sub.aclose()


def make_bus(url: str) -> Bus:
    """The bus for ``VSM_BUS_URL``."""
    if url.startswith("memory"):
        return MemoryBus()
    from vsm_mcp.bus.amqp import AmqpBus  # imported lazily: aio-pika only when used

    return AmqpBus(url)
