"""``llm.cache.*`` events, published off the request path.

A hit must stay far below a millisecond, so the request path only appends a small tuple to a
bounded queue; one background task builds the ``Event`` envelopes and publishes them (a remote
bus may take milliseconds). When the queue is full, events are dropped and counted — metrics
never slow the answers down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event

log = logging.getLogger("servers.llm_cdn")


class EventPublisher:
    def __init__(self, bus: Bus, maxsize: int = 10_000) -> None:
        self.bus = bus
        self.maxsize = maxsize
        self.dropped = 0
        self._queue: asyncio.Queue[tuple[str, str, dict[str, Any]] | None] | None = None
        self._task: asyncio.Task[None] | None = None

    def emit(self, what: str, tenant: str, data: dict[str, Any]) -> None:
        """Queue ``llm.cache.<what>``; never blocks, never raises."""
        if self._queue is None:
            self._queue = asyncio.Queue(self.maxsize)
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))
        try:
            self._queue.put_nowait((what, tenant, data))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _run(self, queue: asyncio.Queue[tuple[str, str, dict[str, Any]] | None]) -> None:
        while (item := await queue.get()) is not None:
            what, tenant, data = item
            topic = f"llm.cache.{what}"
            try:
                await self.bus.publish(Event(topic=topic, tenant=tenant, type=topic, data=data))
            except Exception:  # noqa: BLE001 - events are best effort; the answer was already served
                self.dropped += 1
                log.warning("publishing %s failed", topic, exc_info=True)

    async def aclose(self) -> None:
        """Publish what is queued, then stop."""
        if self._queue is None or self._task is None:
            return
        await self._queue.put(None)
        await self._task
        self._queue = self._task = None
