"""The policy evaluator: tenant policies judged against events after the fact (S3* audit, S5).

The router enforces policies *before* a call; this worker looks at what happened and emits
``policy.violation`` (tenant-scoped, on the bus) for:

* a call the router denied (``tool.failed`` with outcome ``policy_denied``): an attempt,
  ``enforced: true``, naming the policy and rule from the denial;
* a call that ran although the tenant's *current* active policies deny it (``enforced: false``):
  the policy changed after the call, or the call took a path the policy step does not govern.

An event carries fewer facts than the router had (no scopes, usually no arguments), and the
policy language reads a missing fact as its zero value. So a policy is judged only when every
fact it reads is in the event; the others are skipped and counted — never a guessed verdict.

Matching is in memory, event by event, on a named bus queue (competing workers; redelivered on
RabbitMQ when a worker dies). Its only effect is the violation event, whose ``idempotency_key``
is derived from the source event, so a redelivery never notifies twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vsm_mcp.bus import Bus, Subscription
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.policy.diagnostics import AbiError
from vsm_mcp.policy.facts import normalize
from vsm_mcp.policy.runtime import LoadedPolicy, PolicyRuntime
from vsm_mcp.policy.store import CHANGED_TOPIC, PolicyStore

log = logging.getLogger(__name__)
VIOLATION_TOPIC = "policy.violation"
ADMIN_TAG = "policy"  # the policy server's own tools: governed by scopes only (as in the router)
DERIVED = frozenset({"context.hour", "context.minute", "context.weekday"})
_DENIAL = re.compile(r"denied by policy '(?P<policy>[^']*)' rule '(?P<rule>[^']*)': (?P<reason>.*)", re.S)


def facts_of(event: Event) -> dict[str, Any] | None:
    """The decision document an event supports, holding only what the event states; None when
    the event names no tool."""
    d = event.data
    if not d.get("tool") and not d.get("public_name"):
        return None
    tool: dict[str, Any] = {k: d[src] for k, src in (("server", "server"), ("name", "tool"),
                                                     ("public_name", "public_name")) if isinstance(d.get(src), str)}
    if isinstance(d.get("tags"), list):
        tool["tags"] = [t for t in d["tags"] if isinstance(t, str)]
    principal: dict[str, Any] = {"tenant": event.tenant}
    if isinstance(d.get("principal"), str):
        principal["key_id"] = "" if d["principal"] == "anonymous" else d["principal"]
    context: dict[str, Any] = {"time": event.time.timestamp()}
    if isinstance(d.get("source"), str):
        context["source"] = d["source"]
    doc: dict[str, Any] = {"principal": principal, "tool": tool, "context": context}
    if isinstance(d.get("arguments"), Mapping):
        doc["input"] = dict(d["arguments"])
    return normalize(doc)


def _present(facts: Mapping[str, Any], path: str) -> bool:
    if path in DERIVED:
        return True
    node: Any = facts
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def judgeable(policy: LoadedPolicy, facts: Mapping[str, Any], has_input: bool) -> bool:
    """Every fact the policy reads is stated by the event (``input`` as a whole counts once
    the event carries the arguments: an absent argument is then truly absent)."""
    for slot in policy.meta.slots:
        if slot.path.startswith("input."):
            if not has_input:
                return False
        elif not _present(facts, slot.path):
            return False
    return True


def violation(source: Event, *, policy: str, rule: str, reason: str, enforced: bool) -> Event:
    d = source.data
    return Event(
        topic=VIOLATION_TOPIC, tenant=source.tenant, type="policy_violation", trace_id=source.trace_id,
        data={
            "policy": policy, "rule": rule, "reason": reason, "enforced": enforced,
            "server": d.get("server", ""), "tool": d.get("tool", ""), "public_name": d.get("public_name", ""),
            "principal": d.get("principal", ""), "source": d.get("source", ""),
            "event_id": source.id, "event_topic": source.topic,
            "idempotency_key": f"policy.violation:{source.id}:{policy}:{rule}",
        },
    )


@dataclass
class _Loaded:
    policies: list[tuple[str, LoadedPolicy]]
    at: float


@dataclass
class AuditStats:
    events: int = 0
    violations: int = 0
    skipped_policies: int = 0  # policies that read facts the event does not state
    broken_policies: int = 0
    by_tenant: dict[str, int] = field(default_factory=dict)


class PolicyAuditor:
    """Judges events against their tenant's active policies; ``run`` consumes a subscription."""

    def __init__(self, db: Database, runtime: PolicyRuntime, bus: Bus, *, ttl_s: float = 300.0) -> None:
        self.store = PolicyStore(db)
        self.runtime = runtime
        self.bus = bus
        self.ttl_s = ttl_s
        self.stats = AuditStats()
        self._cache: dict[str, _Loaded] = {}

    def invalidate(self, tenant_id: str | None = None) -> None:
        if tenant_id:
            self._cache.pop(tenant_id, None)
        else:
            self._cache.clear()

    async def _policies(self, tenant_id: str) -> list[tuple[str, LoadedPolicy]]:
        entry = self._cache.get(tenant_id)
        if entry is None or time.monotonic() - entry.at > self.ttl_s:
            loaded: list[tuple[str, LoadedPolicy]] = []
            for row in await self.store.active(tenant_id):
                try:
                    if row.wasm:
                        loaded.append((row.name, self.runtime.load(row.wasm)))
                except AbiError:  # the router denies every call for it; nothing to judge here
                    self.stats.broken_policies += 1
            entry = self._cache[tenant_id] = _Loaded(loaded, time.monotonic())
        return entry.policies

    async def judge(self, event: Event) -> list[Event]:
        """The violations ``event`` shows (not published)."""
        self.stats.events += 1
        if not event.tenant or event.topic.startswith(("policy.", "alert.")):
            return []
        d = event.data
        if d.get("outcome") == "policy_denied":
            m = _DENIAL.match(str(d.get("error", "")))
            found = m.groupdict() if m else {"policy": "", "rule": "", "reason": str(d.get("error", ""))}
            return [violation(event, enforced=True, **found)]
        policies = await self._policies(event.tenant)
        if not policies:  # most tenants: no policy, no work (this runs for every routed call)
            return []
        facts = facts_of(event)
        if facts is None or ADMIN_TAG in facts["tool"].get("tags", ()):
            return []
        out: list[Event] = []
        for name, policy in policies:
            if not judgeable(policy, facts, isinstance(d.get("arguments"), Mapping)):
                self.stats.skipped_policies += 1
                continue
            decision = policy.evaluate(facts)
            if not decision.allowed:
                out.append(violation(event, policy=name, rule=decision.rule, reason=decision.reason, enforced=False))
        return out

    async def handle(self, event: Event) -> list[Event]:
        """Judge ``event`` and publish its violations."""
        found = await self.judge(event)
        for v in found:
            await self.bus.publish(v)
        self.stats.violations += len(found)
        if found:
            self.stats.by_tenant[event.tenant] = self.stats.by_tenant.get(event.tenant, 0) + len(found)
        return found

    async def run(self, sub: Subscription) -> None:
        """Consume ``sub`` until it closes; one bad event is logged, never fatal."""
        async for event in sub:
            try:
                await self.handle(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("policy audit of event %s (%s) failed", event.id, event.topic)


async def follow_changes(auditor: PolicyAuditor, bus: Bus) -> None:
    """Drop cached policies when they change (every replica: a transient subscription)."""
    sub = await bus.subscribe([CHANGED_TOPIC])
    try:
        async for event in sub:
            auditor.invalidate(event.tenant or None)
    finally:
        with contextlib.suppress(Exception):
            await sub.aclose()
