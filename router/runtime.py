"""The router's moving parts, wired once: manifests → upstreams → catalog → dispatcher → aggregate.

``RouterRuntime`` is shared by every front door: the HTTP app (router/app.py), ``vsm-mcp stdio``
and ``vsm-mcp call``. ``start(tg)`` launches the upstream supervisors and the recorder, then
waits at most ``VSM_UPSTREAM_START_WAIT`` seconds for upstreams to connect — a dead or slow one
is left connecting in the background (its tools unavailable) rather than blocking start-up.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import TaskGroup

from router.dispatch import Dispatcher
from router.meta_tools import attach_tool_search
from router.recorder import Recorder
from router.registry.catalog import Catalog
from router.server_tools import ServerTools
from router.upstreams.manifest import UpstreamSpec, load_manifests
from router.upstreams.upstream import Upstream
from vsm_mcp import durable
from vsm_mcp.context import ServerContext
from vsm_mcp.journal import journal_dir
from vsm_mcp.tracing import call_spans
from vsm_mcp.workers.runtime import Workers

log = logging.getLogger(__name__)


class RouterRuntime:
    def __init__(
        self, ctx: ServerContext, specs: list[UpstreamSpec] | None = None, *,
        durable_role: str | None = None, durable_queues: list[str] | None = None,
    ) -> None:
        """``durable_role``: start the durable spine (vsm_mcp/durable) once the upstreams are up —
        their modules register the workflows — listening to ``durable_queues`` (None = all)."""
        settings = ctx.settings
        self.ctx = ctx
        self.specs = specs if specs is not None else load_manifests(settings.manifests or None, home=settings.home)
        self.catalog = Catalog()
        self.tool_search = attach_tool_search(settings, self.catalog)  # registry + find_tools (issue 5)
        # Episodes are journalled before each answer (vsm_mcp/journal.py), so a crash loses none.
        self.recorder = Recorder(ctx.db, [], journal_dir=journal_dir(settings.home) if settings.audit_journal else None)
        self.upstreams: dict[str, Upstream] = {}
        self._listeners: list[Any] = []
        for spec in self.specs:
            self.upstreams[spec.name] = Upstream(spec, ctx, self.catalog, on_notification=self._on_notification)
        self.dispatcher = Dispatcher(
            self.catalog,
            self.upstreams,
            recorder=self.recorder,
            rate_per_principal=settings.rate_limit,
            burst_per_principal=settings.rate_burst,
        )
        # servers call each other's tools through the pipeline; find_tools/describe_tools are answered here
        ctx.tool_caller = ServerTools(self.dispatcher, self.catalog, self.tool_search)
        self.durable_role = durable_role
        self.durable_queues = durable_queues
        self.spine: durable.Spine | None = None
        self.workers: Workers | None = None
        self.spans = call_spans(settings.otel_endpoint)  # OTLP export of a span per call, when configured
        if self.spans is not None:
            self.dispatcher.add_observer(self.spans)
            self.dispatcher.propagate_new_traces = True
        self._tg: TaskGroup | None = None
        self.started = False

    def add_notification_listener(self, fn: Any) -> None:
        """``async fn(server, notification)`` for every upstream notification (tool list changes …)."""
        self._listeners.append(fn)

    async def _on_notification(self, server: str, notification: Any) -> None:
        for fn in list(self._listeners):
            try:
                await fn(server, notification)
            except Exception:
                log.exception("notification listener failed")

    async def start(self, tg: TaskGroup, *, wait: float | None = None) -> None:
        self._tg = tg
        await self.recorder.start(tg)
        for up in self.upstreams.values():
            await up.start(tg)
        budget = self.ctx.settings.upstream_start_wait if wait is None else wait
        if budget > 0:
            with anyio.move_on_after(budget):
                async with anyio.create_task_group() as waits:
                    for up in self.upstreams.values():
                        if up.spec.enabled:
                            waits.start_soon(up.wait_ready, budget)
        await self._start_spine()
        self.started = True

    async def _start_spine(self) -> None:
        # One spine per process: a second runtime in the same process (tests) uses the first's.
        if self.durable_role is None or durable.is_running():
            return
        if not durable.declared_queues() and not self.durable_queues:
            return  # nothing mounted uses it (a worker naming queues still starts: to say they are unknown)
        self.spine = durable.Spine(self.ctx.settings, role=self.durable_role, queues=self.durable_queues)
        await self.spine.start()
        # The S3 workers (episode analyzer, policy evaluator, notifier) of the roles this process works.
        self.workers = Workers(self.ctx, roles=self.durable_queues)
        await self.workers.start()

    async def aclose(self) -> None:
        """Stop the supervisors (stdio process groups are killed) and flush the recorder."""
        if self.workers is not None:
            await self.workers.aclose()
            self.workers = None
        if self.spine is not None:  # first: its workflows still call the upstreams
            await self.spine.aclose()
            self.spine = None
        for up in self.upstreams.values():
            await up.aclose()
        with anyio.move_on_after(8):
            for up in self.upstreams.values():
                await up.stopped.wait()
        await self.recorder.aclose()
        if self.spans is not None:
            await anyio.to_thread.run_sync(self.spans.shutdown)  # flushes the batched spans

    def readiness(self) -> dict[str, Any]:
        """Per-upstream status for /readyz; ``ok`` is False when any enabled upstream is not ready."""
        ups = {name: up.status() for name, up in self.upstreams.items()}
        ok = all(u["ok"] for u in ups.values())
        return {"ok": ok, "upstreams": ups}
