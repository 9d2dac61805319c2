"""The durable spine: DBOS Transact workflows and queues, one runtime per process.

Register work at import time, launch once per process, then start and await workflows::

    from dbos import DBOS
    from vsm_mcp import durable

    durable.declare_queue("mail", worker_concurrency=4)   # module level, before launch

    @DBOS.step()
    async def send(batch: list[str]) -> int: ...

    @DBOS.workflow()
    async def deliver(batch: list[str]) -> int:
        return await send(batch)

    # composition root (serve / worker / a test fixture), on the event loop's thread:
    async with durable.Spine(settings, role="serve").running():
        handle = await durable.queue("mail").enqueue_async(deliver, ["a"])

``Spine.launch`` must run on the thread of the running event loop: DBOS adopts that loop and
runs dequeued and recovered async workflows on it, so they share the process's sessions.
Workflows are decorated module-level functions; the modules that define them must be imported
before launch (DBOS recovers pending workflows at launch and can only resume ones it knows).
See docs/ARCHITECTURE.md, "Orchestration spine".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vsm_mcp.config import Settings
from vsm_mcp.durable.config import (
    APP_NAME,
    APP_VERSION,
    app_role,
    executor_id,
    owner_database_url,
    probe,
    psycopg_url,
    redact,
    system_database_url,
)
from vsm_mcp.durable.executors import ExecutorRegistry, sweep
from vsm_mcp.errors import ConfigError

__all__ = [
    "QueueSpec", "Spine", "current", "declare_queue", "declare_role", "declared_names", "declared_queues",
    "is_running", "migrate_schema",
    "migrate_system_database", "queue", "serve_queues", "system_database_url",
]

log = logging.getLogger("vsm_mcp.durable")


@dataclass(frozen=True)
class QueueSpec:
    """A DBOS queue declared by a package; created in the system database at launch."""

    name: str
    limits: dict[str, Any] = field(default_factory=dict)


# Kernel packages whose workflows every process running the spine must know (imported at
# launch when present); server packages are imported by the router runtime instead.
KERNEL_MODULES = ("vsm_mcp.workers",)

_declared: dict[str, QueueSpec] = {}
_roles: set[str] = set()
_current: Spine | None = None


def declare_queue(name: str, **limits: Any) -> QueueSpec:
    """Declare a queue at import time (DBOS queues live in the system database, so they can
    only be created once it is launched). ``limits`` are ``DBOS.register_queue`` keywords:
    worker_concurrency, global_concurrency, partition_concurrency, limiter, polling_interval_sec…"""
    spec = QueueSpec(name, dict(limits))
    _declared[name] = spec
    return spec


def declare_role(name: str) -> None:
    """Declare a name ``--queues`` / VSM_SERVE_QUEUES accept that is not a DBOS queue: work a
    package runs itself in the processes that ask for it (the policy evaluator, a bus consumer)."""
    _roles.add(name)


def declared_queues() -> list[str]:
    return sorted(_declared)


def declared_names() -> list[str]:
    """Every name a process may be asked to work: DBOS queues and roles."""
    return sorted({*_declared, *_roles})


def serve_queues(settings: Settings) -> list[str] | None:
    """The queues `vsm-mcp serve` works itself (VSM_SERVE_QUEUES): None = all."""
    raw = settings.serve_queues.strip()
    if raw == "*":
        return None
    if raw in ("", "none"):
        return []
    return [q.strip() for q in raw.split(",") if q.strip()]


def is_running() -> bool:
    return _current is not None


def current() -> Spine:
    """The launched spine of this process (raises when none is running)."""
    if _current is None:
        raise ConfigError("the durable spine is not running in this process (vsm-mcp serve or worker starts it)")
    return _current


def queue(name: str) -> Any:
    """The launched ``dbos.Queue`` called ``name`` (enqueue_async onto it)."""
    return current().queue(name)


def migrate_system_database(settings: Settings) -> None:
    """Create or upgrade the system database of these settings as the owner (see migrate_schema)."""
    migrate_schema(owner_database_url(settings), app_role(settings))


def migrate_schema(url: str, role: str | None) -> None:
    """Create or upgrade DBOS's system schema and our executor table at ``url`` (as the owner),
    granting ``role`` (the application's PostgreSQL role) access. ``vsm-mcp migrate`` runs it on
    PostgreSQL, where the app role may not create schemas; on SQLite launch does it."""
    from dbos import DBOS

    url = url if url.startswith("sqlite") else psycopg_url(url)
    probe(url)
    DBOS.migrate(url, application_role=role)
    registry = ExecutorRegistry(url, "migrate", "migrate")
    try:
        registry.ensure_table()
        if role:
            import sqlalchemy as sa

            with registry._engine.begin() as conn:
                conn.execute(sa.text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON dbos.vsm_executors TO "{role}"'))
    finally:
        registry.close()


def _import_kernel_modules() -> None:
    import importlib

    for name in KERNEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the package exists but something it imports does not
                raise


class Spine:
    """DBOS for this process: launch, executor heartbeat and sweep, destroy."""

    def __init__(self, settings: Settings, *, role: str = "serve", queues: Sequence[str] | None = None) -> None:
        """``queues``: the declared queues this process dequeues from; None = all of them."""
        self.settings = settings
        self.role = role
        self.listen = None if queues is None else list(queues)
        self.url = system_database_url(settings)
        self.redacted_url = redact(self.url)
        self.executor_id = executor_id(settings, role)
        self.lease_s = settings.dbos_executor_lease_s
        self._queues: dict[str, Any] = {}
        self._registry: ExecutorRegistry | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._launched = False

    def config(self) -> dict[str, Any]:
        """The DBOSConfig this spine launches with."""
        return {
            "name": APP_NAME.replace("-", "_"),
            "system_database_url": self.url,
            "application_version": APP_VERSION,
            "executor_id": self.executor_id,
            "log_level": "DEBUG" if self.settings.log_level == "debug" else "WARNING",
            "run_migrations": True,
        }

    def launch(self) -> None:
        """Launch DBOS (blocking; on the event loop's thread, after workflows are imported).
        ``start()`` calls it and then creates the declared queues."""
        global _current
        from dbos import DBOS

        if _current is not None:
            raise ConfigError("the durable spine is already running in this process")
        _import_kernel_modules()
        unknown = [q for q in self.listen or [] if q not in _declared and q not in _roles]
        if unknown:
            raise ConfigError(
                f"unknown queue {unknown[0]!r}; declared queues: {', '.join(declared_names()) or '(none)'}"
            )
        probe(self.url)
        registry = ExecutorRegistry(self.url, self.executor_id, self.role)
        try:
            registry.ensure_table()
            registry.beat()  # before any dequeue: a crash from here on leaves a row to sweep
        except Exception:
            registry.close()
            raise
        self._registry = registry
        DBOS(config=self.config())  # type: ignore[arg-type]
        try:
            if self.listen is not None:
                DBOS.listen_queues([q for q in self.listen if q in _declared])
            DBOS.launch()
        except BaseException:
            DBOS.destroy()
            registry.close()
            self._registry = None
            raise
        self._launched = True
        _current = self

    def queue(self, name: str) -> Any:
        try:
            return self._queues[name]
        except KeyError:
            raise ConfigError(
                f"unknown queue {name!r}; declared queues: {', '.join(declared_queues()) or '(none)'}"
            ) from None

    async def start(self) -> None:
        """Launch, create the declared queues, start the heartbeat/sweep task."""
        from dbos import DBOS

        self.launch()
        try:
            for spec in _declared.values():
                self._queues[spec.name] = await DBOS.register_queue_async(
                    spec.name, on_conflict="always_update", **spec.limits
                )
        except BaseException:
            await self.aclose()
            raise
        self._beat_task = asyncio.create_task(self._beat_loop(), name="vsm-durable-heartbeat")

    async def _beat_loop(self) -> None:
        assert self._registry is not None
        registry = self._registry
        interval = max(0.2, self.lease_s / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(registry.beat)
                await asyncio.to_thread(sweep, registry, self.lease_s)
            except Exception:  # a missed beat is retried; a sweep error is logged in sweep()
                log.warning("executor heartbeat failed", exc_info=True)

    def live_executors(self) -> list[dict[str, object]]:
        assert self._registry is not None
        return self._registry.live(self.lease_s)

    async def aclose(self) -> None:
        """Stop: workflows still running stay PENDING (this executor's, recovered on relaunch or
        by another process's sweep); nothing is marked failed by a shutdown."""
        global _current
        from dbos import DBOS
        from dbos._dbos import _get_dbos_instance

        if self._beat_task is not None:
            self._beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat_task
            self._beat_task = None
        if self._launched:
            # A cancelled workflow task is not recorded as failed (DBOS re-raises
            # CancelledError); destroy() alone would leave the tasks running on a closed database.
            tasks = [t for t in _get_dbos_instance()._workflow_tasks if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            DBOS.destroy()
            self._launched = False
            # DBOS made its (now shut down) pool this loop's default executor on first use of
            # asyncio.to_thread; later to_thread calls on the same loop (a second router
            # lifetime, a test) would fail "cannot schedule new futures after shutdown".
            asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor())
        if self._registry is not None:
            self._registry.close()
            self._registry = None
        _current = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Spine]:
        await self.start()
        try:
            yield self
        finally:
            await self.aclose()
