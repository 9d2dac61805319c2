"""The router's moving parts, wired once: manifests → upstreams → catalog → dispatcher → aggregate.

``RouterRuntime`` is shared by every front door: the HTTP app (router/app.py), ``vsm-mcp stdio``
and ``vsm-mcp call``. ``start(tg)`` launches the upstream supervisors and the recorder, then
waits at most ``VSM_UPSTREAM_START_WAIT`` seconds for upstreams to connect — a dead or slow one
is left connecting in the background (its tools unavailable) rather than blocking start-up.

The set of upstreams changes while it runs (issue 27): ``live`` (router/upstreams/live.py) follows
the upstream registry and the manifest files and calls ``reconcile(desired, owners)``, which
starts what is new, restarts what changed and drains what is gone — it leaves the upstream map
at once (new calls get "no upstream"), its tools leave the catalog (clients get
``list_changed``, search forgets them), calls in flight get up to ``VSM_UPSTREAM_DRAIN_S`` to
finish, then its processes are stopped. ``fixed`` upstreams (the router's own ``admin`` server)
are never reconciled away.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from router.dispatch import Dispatcher
from router.meta_tools import attach_tool_search
from router.recorder import Recorder
from router.registry.catalog import Catalog
from router.rerank import make_reranker
from router.server_tools import ServerTools
from router.tool_cache import ToolCache, make_tool_cache
from router.upstreams.live import LiveUpstreams
from router.upstreams.manifest import UpstreamSpec, load_manifests
from router.upstreams.upstream import Upstream
from vsm_mcp import durable
from vsm_mcp.context import ServerContext
from vsm_mcp.hooks import TOOL_CACHE_KEY
from vsm_mcp.journal import journal_dir
from vsm_mcp.workers.runtime import Workers

if TYPE_CHECKING:
    from vsm_mcp.tracing import CallSpans

log = logging.getLogger(__name__)

RUNTIME_KEY = "router.runtime"  # ctx.extras: the admin server (router/admin.py) finds the runtime here


class RouterRuntime:
    def __init__(
        self, ctx: ServerContext, specs: list[UpstreamSpec] | None = None, *,
        durable_role: str | None = None, durable_queues: list[str] | None = None,
    ) -> None:
        """``durable_role``: start the durable spine (vsm_mcp/durable) once the upstreams are up —
        their modules register the workflows — listening to ``durable_queues`` (None = all)."""
        settings = ctx.settings
        self.ctx = ctx
        manifest_paths = None if specs is not None else list(settings.manifests)
        self.specs = specs if specs is not None else load_manifests(settings.manifests or None, home=settings.home)
        self.catalog = Catalog()
        # registry + find_tools (issues 5, 26); each upstream's own description is search evidence
        self.tool_search = attach_tool_search(settings, self.catalog, self._describe_upstream)
        # Episodes are journalled before each answer (vsm_mcp/journal.py), so a crash loses none.
        self.recorder = Recorder(ctx.db, [], journal_dir=journal_dir(settings.home) if settings.audit_journal else None)
        self.upstreams: dict[str, Upstream] = {}
        self._listeners: list[Any] = []
        self._draining: set[Upstream] = set()
        self.fixed: set[str] = set()
        ctx.extras[RUNTIME_KEY] = self
        for spec in self._with_admin(self.specs):
            self._mount(spec, None)
        self.fixed = {s for s in self.upstreams if s not in {spec.name for spec in self.specs}}
        self.dispatcher = Dispatcher(
            self.catalog,
            self.upstreams,
            recorder=self.recorder,
            rate_per_principal=settings.rate_limit,
            burst_per_principal=settings.rate_burst,
        )
        # servers call each other's tools through the pipeline; find_tools/describe_tools are answered here
        ctx.tool_caller = ServerTools(self.dispatcher, self.catalog, self.tool_search)
        # optional model rerank of tool search (router/rerank.py): a routed llm call as the searcher
        self.tool_search.reranker = make_reranker(settings, self.dispatcher, self.catalog)
        self.durable_role = durable_role
        self.durable_queues = durable_queues
        self.spine: durable.Spine | None = None
        self.workers: Workers | None = None
        self.spans: CallSpans | None = None
        if settings.otel_endpoint:  # OTLP export of a span per call; the OTel SDK is imported only then
            from vsm_mcp.tracing import call_spans

            self.spans = call_spans(settings.otel_endpoint)
        if self.spans is not None:
            self.dispatcher.add_observer(self.spans)
            self.dispatcher.propagate_new_traces = True
        self.live = LiveUpstreams(
            self, self.specs, manifest_paths, poll_s=settings.upstreams_poll_s, watch_s=settings.manifest_watch_s
        )
        self.tool_cache: ToolCache | None = None
        if settings.tool_cache:  # step 6 (router/tool_cache.py); the cache server purges it via extras
            self.tool_cache = make_tool_cache(settings.home, settings.redis_url, settings.tool_cache_max_bytes,
                                              self._ttl_for, ctx.bus)
            self.dispatcher.set_cache(self.tool_cache)
            self.add_notification_listener(self.tool_cache.on_notification)
            ctx.extras[TOOL_CACHE_KEY] = self.tool_cache
        self._tg: TaskGroup | None = None
        self.started = False

    def _with_admin(self, specs: list[UpstreamSpec]) -> list[UpstreamSpec]:
        """The manifests' upstreams plus the router's own ``admin`` server (router/admin.py)."""
        from router.admin import SPEC

        if not self.ctx.settings.admin_tools or any(s.name == SPEC["name"] for s in specs):
            return specs
        return [*specs, UpstreamSpec.model_validate(SPEC)]

    def _describe_upstream(self, server: str) -> str:
        """What an upstream says about itself: its title and description (serverInfo) and its
        initialize instructions, once it has answered initialize ("" before that)."""
        up = self.upstreams.get(server)
        if up is None:
            return ""
        info = up.server_info
        parts = [getattr(info, "title", None), getattr(info, "description", None), up.instructions] if info else [up.instructions]
        return " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())

    def _ttl_for(self, server: str, tool: str) -> float:
        up = self.upstreams.get(server)
        ttl = up.spec.cache_ttl.get(tool) if up is not None else None
        return ttl if ttl is not None else self.ctx.settings.tool_cache_ttl_s

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
        if self.tool_cache is not None:
            await self.tool_cache.start()
        for up in list(self.upstreams.values()):
            await up.start(tg)
        await self.live.start(tg)  # the registry's upstreams start now, with the manifests'
        warm = self._warm_rerank(tg)  # builtins are built: an in-process llm server is in ctx.extras
        budget = self.ctx.settings.upstream_start_wait if wait is None else wait
        if budget > 0:
            with anyio.move_on_after(budget):
                async with anyio.create_task_group() as waits:
                    for up in list(self.upstreams.values()):
                        if up.spec.enabled:
                            waits.start_soon(up.wait_ready, budget)
                    if warm is not None:
                        waits.start_soon(warm.wait)
        await self._start_spine()
        self.started = True

    def _warm_rerank(self, tg: TaskGroup) -> anyio.Event | None:
        """With a rerank model set, its client is loaded in the background from now on, and
        start-up waits for it (within the same budget) as for the upstreams: the first search
        must not spend its short rerank budget importing a library (router/rerank.py)."""
        reranker = self.tool_search.reranker
        if reranker is None:
            return None
        done = anyio.Event()

        async def warm() -> None:
            try:
                await reranker.warm_up(self.ctx.extras)
            finally:
                done.set()

        tg.start_soon(warm, name="rerank warm-up")
        return done

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

    # --- the set of upstreams at run time (issue 27) --------------------------------------
    def _mount(self, spec: UpstreamSpec, owner: tuple[str | None, str] | None) -> Upstream:
        tenant, shown = owner if owner is not None else (None, spec.name)
        self.catalog.set_owner(spec.name, tenant, shown)
        up = Upstream(spec, self.ctx, self.catalog, on_notification=self._on_notification)
        self.upstreams[spec.name] = up
        return up

    async def reconcile(self, desired: dict[str, UpstreamSpec], owners: dict[str, tuple[str | None, str]]) -> None:
        """Make the running set equal to ``desired`` (plus ``fixed``): start, restart, drain."""
        for name, up in list(self.upstreams.items()):
            if name in self.fixed:
                continue
            spec = desired.get(name)
            if spec is None or spec != up.spec or owners.get(name, (None, name))[0] != self._tenant_of(name):
                self._unmount(name)
        for name, spec in desired.items():
            if name not in self.upstreams and name not in self.fixed:
                up = self._mount(spec, owners.get(name))
                if self._tg is not None:
                    await up.start(self._tg)
                log.info("upstream %s mounted (%s)", name, spec.kind)

    def _tenant_of(self, name: str) -> str | None:
        owner = self.catalog._owners.get(name)  # noqa: SLF001  (the catalog is the one record of owners)
        return owner[0] if owner else None

    def _unmount(self, name: str) -> None:
        up = self.upstreams.pop(name)  # new calls: "no upstream" from here on
        self.catalog.remove_server(name)  # list_changed to clients, search forgets its tools
        self.catalog.set_owner(name, None)
        up.catalog = Catalog()  # a late list refresh of the old sessions must not resurrect its tools
        self._draining.add(up)
        if self._tg is not None:
            self._tg.start_soon(self._drain, up)
            if self.tool_cache is not None:  # a later upstream of that name answers anew
                self._tg.start_soon(self.tool_cache.on_list_changed, name)
        log.info("upstream %s unmounted; draining", name)

    async def _drain(self, up: Upstream) -> None:
        """Let calls in flight finish (bounded), then stop the sessions and their processes."""
        try:
            with anyio.move_on_after(self.ctx.settings.upstream_drain_s):
                while up.inflight > 0:  # noqa: ASYNC110  (a counter the call path keeps; an event per call would cost more)
                    await anyio.sleep(0.05)
            await up.aclose()
            with anyio.move_on_after(10):
                await up.stopped.wait()
        finally:
            self._draining.discard(up)

    async def aclose(self) -> None:
        """Stop the supervisors (stdio process groups are killed) and flush the recorder — every
        background user of the database stops here, before the caller cancels the task group."""
        await self.live.aclose()  # first: it would reconcile the upstreams being stopped below
        if self.workers is not None:
            await self.workers.aclose()
            self.workers = None
        if self.spine is not None:  # first: its workflows still call the upstreams
            await self.spine.aclose()
            self.spine = None
        everything = [*self.upstreams.values(), *self._draining]
        for up in everything:
            await up.aclose()
        with anyio.move_on_after(8):
            for up in everything:
                await up.stopped.wait()
        await self.recorder.aclose()
        if self.spans is not None:
            await anyio.to_thread.run_sync(self.spans.shutdown)  # flushes the batched spans
        if self.tool_cache is not None:
            await self.tool_cache.aclose()

    def readiness(self) -> dict[str, Any]:
        """Per-upstream status for /readyz; ``ok`` is False when any enabled upstream is not ready."""
        ups = {name: up.status() for name, up in self.upstreams.items()}
        ok = all(u["ok"] for u in ups.values())
        return {"ok": ok, "upstreams": ups}
