"""Single-flight: N concurrent identical requests make one upstream call and share its answer.

``SingleFlight`` does it inside one process (the first caller's work runs as a task the others
await; a waiter that gives up does not cancel it). Across processes and replicas the engine adds
an in-flight marker in the shared cache backend (``CacheBackend.claim``), see engine.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Coalesce concurrent calls by key."""

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Task[T]] = {}

    def __len__(self) -> int:
        return len(self._inflight)

    async def do(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run ``fn`` unless a call for ``key`` is already in flight; return (result, shared).

        ``shared`` is True for the callers that joined someone else's call. An exception of the
        call reaches every caller.
        """
        task, leader = self.start(key, fn)
        return await asyncio.shield(task), not leader

    def start(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[asyncio.Task[T], bool]:
        """The task computing ``key`` (started now from ``fn`` if none is in flight) and whether
        this caller started it. Await it through ``asyncio.shield`` so giving up never cancels it."""
        task = self._inflight.get(key)
        if task is not None:
            return task, False
        task = asyncio.ensure_future(fn())
        self._inflight[key] = task
        task.add_done_callback(lambda t: self._done(key, t))
        return task, True

    def busy(self, key: str) -> bool:
        return key in self._inflight

    def _done(self, key: str, task: asyncio.Task[T]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have gone away
