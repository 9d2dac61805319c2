"""aiosqlite connections whose close cannot hang the event loop.

aiosqlite 0.22's worker thread exits at the first stop request and never answers a later one.
SQLAlchemy's ``terminate()`` (a connection invalidated by a cancelled operation) force-stops the
connection while its graceful ``close()`` is still running; that ``close()`` then stops again in its
``finally`` and awaits a future nobody will resolve. The task hangs, and so does the event loop's
shutdown, which waits for every task: in CI, tests timed out in ``Runner.close()`` with such a
task pending (``_terminate_graceful_close``). Here a second stop queues nothing and returns a
future that follows the first, so ``close()`` waits for the stop the worker does answer.

``_thread`` is private: SQLAlchemy sets it daemon on the connections it creates itself (a worker of a
connection nobody closed must not keep the process alive); with our own creator we must do the
same. Guarded per vsm_mcp/internals.py: aiosqlite pinned to the tested range, checked once, and
without it the connections are plain aiosqlite ones (one log line).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import aiosqlite

from vsm_mcp.internals import version_in

log = logging.getLogger(__name__)

AIOSQLITE_TESTED = ("0.22.1", "0.23")


class StopOnceConnection(aiosqlite.Connection):
    """An aiosqlite connection whose worker is asked to stop once. A later request gets a future
    that completes with the first one (the worker answers that one before it exits), so a
    ``close()`` still waits for the worker instead of forever, and no worker outlives its loop."""

    _first_stop: asyncio.Future[Any] | None = None
    _stop_requested = False

    def stop(self) -> Any:
        if not self._stop_requested:
            self._stop_requested = True
            self._first_stop = super().stop()
            return self._first_stop
        first = self._first_stop
        if first is None or first.done() or first.get_loop() is not asyncio._get_running_loop():
            return None
        follower = first.get_loop().create_future()

        def follow(_: asyncio.Future[Any]) -> None:
            if not follower.done():
                follower.set_result(None)

        first.add_done_callback(follow)
        return follower


def self_check() -> str | None:
    """None when the installed aiosqlite is the one StopOnceConnection was written against."""
    reason = version_in("aiosqlite", *AIOSQLITE_TESTED)
    if reason is None and not isinstance(_worker(StopOnceConnection(_never_connects, 64)), threading.Thread):
        reason = "aiosqlite.Connection no longer keeps its worker in _thread"
    return reason


def _never_connects() -> sqlite3.Connection:
    raise AssertionError("the self-check never starts its connection")


def _worker(conn: aiosqlite.Connection) -> object:
    return getattr(conn, "_thread", None)


@functools.cache
def _problem() -> str | None:
    """The self-check's answer, computed (and logged) once per process."""
    reason = self_check()
    if reason is not None:
        log.warning("SQLite connections are plain aiosqlite ones (a close may hang on shutdown): %s", reason)
    return reason


def sqlite_creator(path: str, timeout: float) -> Callable[[], aiosqlite.Connection]:
    """``create_async_engine(async_creator=…)`` for the SQLite file ``path``: the arguments
    SQLAlchemy's aiosqlite dialect would pass (timeout, any thread), on a StopOnceConnection."""
    connector = partial(sqlite3.connect, path, timeout=timeout, check_same_thread=False)

    def create() -> aiosqlite.Connection:
        conn = aiosqlite.Connection(connector, 64) if _problem() else StopOnceConnection(connector, 64)
        worker = _worker(conn)
        if isinstance(worker, threading.Thread):  # as SQLAlchemy does for the connections it makes
            worker.daemon = True
        return conn

    return create
