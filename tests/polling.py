"""Waiting for a condition in a test without a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any


async def eventually(check: Callable[[], Any], timeout: float = 60, what: str = "condition",
                     interval: float = 0.02) -> Any:
    """Poll ``check`` (sync or async; a truthy value means done) until it holds and return that
    value; AssertionError after ``timeout`` seconds (generous: the machine is shared and slow)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
