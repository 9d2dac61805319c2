"""Start and stop this process's workers, after the durable spine is launched.

    async with Workers(ctx, roles=None).running():   # None = every role
        ...

Roles (the names ``vsm-mcp worker --queues`` and ``VSM_SERVE_QUEUES`` take):

* ``analyzer`` — the episode analyzer: applies its schedule; this process works its DBOS queue.
* ``notify``   — notification routing (bus queue ``VSM_NOTIFY_QUEUE``) and deliveries (DBOS queue).
* ``policy``   — the policy evaluator (bus queue ``VSM_POLICY_AUDIT_QUEUE``).

Every process with a spine binds the jobs' resources, whatever its roles: a delivery recovered
after a crash runs wherever DBOS resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

import httpx

from vsm_mcp.bus import Subscription
from vsm_mcp.context import ServerContext
from vsm_mcp.policy.service import runtime_of
from vsm_mcp.workers import jobs
from vsm_mcp.workers.alerts import Thresholds
from vsm_mcp.workers.notify.delivery import Notifier, Sender
from vsm_mcp.workers.notify.routing import NotifyRouter
from vsm_mcp.workers.notify.smtp import SmtpSender
from vsm_mcp.workers.notify.telegram import TelegramSender
from vsm_mcp.workers.notify.webhook import WebhookSender
from vsm_mcp.workers.policy_audit import PolicyAuditor, follow_changes

log = logging.getLogger("vsm_mcp.workers")
ROLES = ("analyzer", "notify", "policy")
GRACE_S = 10.0  # the router writes episodes in batches every 0.5 s; a window closes this much later


def split(raw: str) -> list[str]:
    return [p.strip() for p in raw.split(",") if p.strip()]


class Workers:
    """The analyzer, policy evaluator and notifier of one process (see the module docstring)."""

    def __init__(self, ctx: ServerContext, roles: Collection[str] | None = None) -> None:
        self.ctx = ctx
        self.roles = set(ROLES if roles is None else [r for r in roles if r in ROLES])
        self.notifier: Notifier | None = None
        self.router: NotifyRouter | None = None
        self.auditor: PolicyAuditor | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _senders(self, client: httpx.AsyncClient) -> dict[str, Sender]:
        s = self.ctx.settings
        return {
            "telegram": TelegramSender(client, s.telegram_api_base, s.telegram_bot_token),
            "webhook": WebhookSender(client),
            "smtp": SmtpSender(s.smtp_url, s.smtp_from, s.notify_timeout_s),
        }

    async def start(self) -> None:
        s = self.ctx.settings
        self._client = httpx.AsyncClient(timeout=s.notify_timeout_s, follow_redirects=False)
        self.notifier = Notifier(
            self.ctx.db, self._senders(self._client), max_attempts=s.notify_max_attempts,
            backoff_base_s=s.notify_backoff_s, backoff_max_s=s.notify_backoff_max_s,
            stale_after_s=2 * s.notify_timeout_s + 1,  # well past a send that is still running
        )
        jobs.bind(jobs.Resources(self.ctx.db, self.ctx.bus, self.notifier, Thresholds.from_settings(s)))
        if "analyzer" in self.roles:
            await jobs.apply_schedule(s.analyzer_interval_s, GRACE_S)
        if "notify" in self.roles:
            self.router = NotifyRouter(self.ctx.db, jobs.enqueue_delivery, jobs.delivery_key)
            await self._consume("vsm-notify-router", split(s.notify_topics), s.notify_queue, self.router.run)
        if "policy" in self.roles:
            # The router's policy runtime (one module cache per process), not a second one.
            self.auditor = PolicyAuditor(self.ctx.db, runtime_of(self.ctx), self.ctx.bus, ttl_s=s.policy_cache_ttl_s)
            await self._consume("vsm-policy-audit", split(s.policy_audit_topics), s.policy_audit_queue, self.auditor.run)
            self._tasks.append(asyncio.create_task(follow_changes(self.auditor, self.ctx.bus), name="vsm-policy-audit-reload"))
        log.info("workers started: %s", ", ".join(sorted(self.roles)) or "(no roles: resources only)")

    async def _consume(
        self, name: str, patterns: list[str], queue: str, run: Callable[[Subscription], Awaitable[None]]
    ) -> None:
        """Subscribe now (so events published from here on wait for us), then consume in a task
        that resubscribes after a failure instead of dying silently."""
        first = await self.ctx.bus.subscribe(patterns, queue=queue)

        async def loop() -> None:
            sub: Subscription | None = first
            while True:
                try:
                    if sub is None:
                        sub = await self.ctx.bus.subscribe(patterns, queue=queue)
                    await run(sub)
                    return  # closed: shutting down
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s stopped; subscribing again in 1 s", name)
                    await asyncio.sleep(1)
                finally:
                    if sub is not None:
                        with contextlib.suppress(Exception):
                            await sub.aclose()
                    sub = None

        self._tasks.append(asyncio.create_task(loop(), name=name))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        jobs.bind(None)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Workers]:
        await self.start()
        try:
            yield self
        finally:
            await self.aclose()
