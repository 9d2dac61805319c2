"""Plan and step events on the bus: ``plan.<tenant>.<plan>.<event>`` and
``step.<tenant>.<plan>.<step>.<event>``, tenant-scoped (visible on /v1/events to that tenant),
each carrying the plan's trace id. The bus is a notice board, not the record: a lost event loses
no state (plan_status reads the tables)."""

from __future__ import annotations

import logging
from typing import Any

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event

log = logging.getLogger("servers.planner")


class PlanEvents:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def _publish(self, event: Event) -> None:
        try:
            await self.bus.publish(event)
        except Exception:  # the bus is not the record; a failed publish must not fail a step
            log.warning("could not publish %s", event.topic, exc_info=True)

    async def plan(self, tenant: str, plan_id: str, event: str, trace_id: str, /, **data: Any) -> None:
        await self._publish(Event(
            topic=f"plan.{tenant}.{plan_id}.{event}", tenant=tenant, type=f"plan.{event}", trace_id=trace_id,
            data={"plan_id": plan_id, **data},
        ))

    async def step(self, tenant: str, plan_id: str, step_id: str, event: str, trace_id: str, /, **data: Any) -> None:
        await self._publish(Event(
            topic=f"step.{tenant}.{plan_id}.{step_id}.{event}", tenant=tenant, type=f"step.{event}", trace_id=trace_id,
            data={"plan_id": plan_id, "step_id": step_id, **data},
        ))
