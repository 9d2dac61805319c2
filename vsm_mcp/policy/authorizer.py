"""The router's policy step: an ``Authorizer`` (vsm_mcp/hooks.py) that evaluates the calling
tenant's active policies for every tool call.

Hot path: the tenant's loaded policies live in memory; a tenant without policies costs one
dict lookup. ``policy.changed`` events on the bus drop a tenant's entry so the next call
reloads it (no restart); ``ttl`` bounds staleness should an event be lost. Every active
policy must allow — the first deny raises ``PolicyDenied`` naming policy and rule. A stored
module that no longer loads denies every call of its tenant (fail closed).

Calls to tools tagged ``policy`` (the policy server's own tools, by the manifest) are left to
scopes alone: otherwise one bad ``default deny`` would lock a tenant out of fixing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from vsm_mcp.bus import Bus, Subscription
from vsm_mcp.db import Database
from vsm_mcp.errors import PolicyDenied
from vsm_mcp.hooks import CallInfo
from vsm_mcp.policy.decision import Decision
from vsm_mcp.policy.diagnostics import AbiError
from vsm_mcp.policy.facts import facts_for_call
from vsm_mcp.policy.runtime import PolicyRuntime
from vsm_mcp.policy.store import CHANGED_TOPIC, PolicyStore

log = logging.getLogger(__name__)
ADMIN_TAG = "policy"


class Evaluator(Protocol):
    @property
    def name(self) -> str: ...

    def evaluate(self, facts: Any) -> Decision: ...


@dataclass
class _Broken:
    """Stands in for a stored policy whose module cannot be loaded: denies everything."""

    name: str
    error: str

    def evaluate(self, facts: Any) -> Decision:
        reason = f"policy {self.name!r} cannot be loaded ({self.error}); failing closed"
        return Decision("deny", "sandbox", reason, self.name, self.error)


@dataclass
class _Entry:
    policies: list[Evaluator]
    loaded_at: float
    names: list[str] = field(default_factory=list)


class PolicyAuthorizer:
    """Evaluates tenant policies at the authorize step. Call ``start()`` to follow bus events."""

    def __init__(
        self,
        db: Database,
        runtime: PolicyRuntime,
        bus: Bus | None = None,
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = 300.0,
    ) -> None:
        self.store = PolicyStore(db)
        self.runtime = runtime
        self.bus = bus
        self.clock = clock
        self.ttl = ttl
        self._entries: dict[str, _Entry] = {}
        self._generation: dict[str, int] = {}
        self._rates: dict[tuple[str, str], tuple[int, int]] = {}
        self._loading: dict[str, asyncio.Future[_Entry]] = {}
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe to ``policy.changed`` so updates apply without a restart."""
        if self.bus is not None and self._task is None:
            self._sub = await self.bus.subscribe([CHANGED_TOPIC])
            self._task = asyncio.create_task(self._follow(self._sub), name="policy-reload")

    async def aclose(self) -> None:
        if self._sub is not None:
            await self._sub.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = self._sub = None

    async def _follow(self, sub: Subscription) -> None:
        while True:
            try:
                async for event in sub:
                    self.invalidate(event.tenant or None)
                return
            except Exception:  # an overflowed subscription: resubscribe and reload everything
                log.warning("policy.changed subscription lost; reloading all tenants", exc_info=True)
                self.invalidate(None)
                if self.bus is None:
                    return
                sub = self._sub = await self.bus.subscribe([CHANGED_TOPIC])

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget one tenant's (or every tenant's) loaded policies."""
        targets = [tenant_id] if tenant_id else [*self._entries, *self._loading]
        for t in targets:
            self._entries.pop(t, None)
            self._loading.pop(t, None)  # a read already under way may predate the change
            self._generation[t] = self._generation.get(t, 0) + 1

    async def authorize(self, call: CallInfo) -> None:
        if ADMIN_TAG in call.tags:
            return
        tenant = call.principal.tenant_id
        entry = self._entries.get(tenant)
        if entry is None or (self.ttl and time.monotonic() - entry.loaded_at > self.ttl):
            entry = await self._load(tenant)
        if not entry.policies:
            return
        now = self.clock()
        facts = facts_for_call(call, now, self._rate(tenant, call.principal.key_id, now))
        for name, policy in zip(entry.names, entry.policies, strict=True):
            decision = policy.evaluate(facts)
            if not decision.allowed:  # named as stored (a built module's own name may differ)
                raise PolicyDenied(
                    f"denied by policy {name!r} rule {decision.rule!r}: {decision.reason}",
                    data={"policy": name, "rule": decision.rule, "reason": decision.reason},
                )

    def _rate(self, tenant: str, key_id: str, now: float) -> float:
        """Calls of this principal in the current minute, this one included (context.rate)."""
        minute = int(now // 60)
        k = (tenant, key_id)
        seen_minute, count = self._rates.get(k, (minute, 0))
        count = count + 1 if seen_minute == minute else 1
        if len(self._rates) > 100_000:
            self._rates.clear()
        self._rates[k] = (minute, count)
        return float(count)

    async def _load(self, tenant: str) -> _Entry:
        """One database read per tenant at a time, however many calls wait for it."""
        pending = self._loading.get(tenant)
        if pending is None:
            pending = self._loading[tenant] = asyncio.ensure_future(self._read(tenant))
            pending.add_done_callback(lambda f: self._forget_load(tenant, f))
        return await asyncio.shield(pending)

    def _forget_load(self, tenant: str, done: asyncio.Future[_Entry]) -> None:
        if self._loading.get(tenant) is done:
            del self._loading[tenant]

    async def _read(self, tenant: str) -> _Entry:
        generation = self._generation.get(tenant, 0)
        rows = await self.store.active(tenant)
        policies: list[Evaluator] = []
        for row in rows:
            try:
                if not row.wasm:
                    raise AbiError("no module stored")
                policies.append(self.runtime.load(row.wasm))
            except AbiError as exc:
                policies.append(_Broken(row.name, exc.message))
        entry = _Entry(policies, time.monotonic(), [r.name for r in rows])
        if self._generation.get(tenant, 0) == generation:  # no change arrived while loading
            self._entries[tenant] = entry
        return entry
