"""The workers' durable jobs on the spine (DBOS): the analyzer's scheduled window and one
workflow per notification delivery.

Workflows are module-level functions (DBOS's rule); the process-wide pieces their steps use
(database, bus, notifier, thresholds) are bound once per process by vsm_mcp/workers/runtime.py.
Steps are coarse, as DESIGN.md asks: one page of tenants per analyzer step, one send attempt
per delivery step.

* ``analyze_window(scheduled_at, context)`` — fired by the ``vsm.analyzer`` schedule onto the
  ``analyzer`` queue; DBOS gives each firing the id ``sched-vsm.analyzer-<time>``, so of all the
  processes that fire it one run happens. Window: ``[t - grace - interval, t - grace)``, the
  grace letting the router's batched episode writes land first.
* ``deliver(tenant, key, channel_id, topic, event_id, message)`` — on the ``notify`` queue with
  the workflow id ``notify:<key>``, so enqueuing one key twice runs it once; attempts until
  settled, sleeping durably between them (a restart resumes the wait, not the count).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS, SetWorkflowID

from vsm_mcp import durable
from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.errors import ConfigError
from vsm_mcp.workers.alerts import Thresholds
from vsm_mcp.workers.analyzer import analyze_tenant
from vsm_mcp.workers.notify.delivery import Notifier

log = logging.getLogger("vsm_mcp.workers")
ANALYZER_QUEUE = "analyzer"
NOTIFY_QUEUE = "notify"
SCHEDULE = "vsm.analyzer"
TENANT_PAGE = 50
KEY_MAX = 255

POLICY_ROLE = "policy"  # the policy evaluator: a bus consumer, no DBOS queue of its own

durable.declare_queue(ANALYZER_QUEUE, worker_concurrency=1, polling_interval_sec=1.0)
durable.declare_queue(NOTIFY_QUEUE, worker_concurrency=16, polling_interval_sec=0.2)
durable.declare_role(POLICY_ROLE)


@dataclass
class Resources:
    db: Database
    bus: Bus | None
    notifier: Notifier
    thresholds: Thresholds


_resources: Resources | None = None


def bind(resources: Resources | None) -> None:
    """Give this process's jobs their database, bus and notifier (None: unbind)."""
    global _resources
    _resources = resources


def current() -> Resources:
    if _resources is None:
        raise ConfigError("the workers are not started in this process (vsm-mcp serve or worker starts them)")
    return _resources


# --- episode analyzer ---------------------------------------------------------------------


def cron_for(interval_s: int) -> str:
    """A 6-field cron (seconds first) firing every ``interval_s`` seconds, aligned to the clock."""
    if interval_s < 60:
        return f"*/{interval_s} * * * * *"
    return f"0 */{interval_s // 60} * * * *"


def window(scheduled_at: datetime, interval_s: float, grace_s: float) -> tuple[datetime, datetime]:
    end = scheduled_at.astimezone(UTC) - timedelta(seconds=grace_s)
    return end - timedelta(seconds=interval_s), end


@DBOS.step()
async def tenant_page(after: str) -> list[str]:
    """Ids of the next page of tenants after ``after`` (ids order)."""
    from sqlalchemy import text

    async with current().db.system() as s:
        rows = await s.execute(
            text("SELECT id FROM tenants WHERE id > :after ORDER BY id LIMIT :n"), {"after": after, "n": TENANT_PAGE}
        )
        return [str(r[0]) for r in rows]


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=1.0, backoff_rate=2.0)
async def analyze_tenants(tenant_ids: list[str], start: str, end: str) -> list[dict[str, Any]]:
    """Analyze one page of tenants (re-running it is safe: see vsm_mcp/workers/analyzer.py)."""
    res = current()
    t0, t1 = datetime.fromisoformat(start), datetime.fromisoformat(end)
    out = []
    for tenant in tenant_ids:
        result = await analyze_tenant(res.db, res.bus, tenant, t0, t1, res.thresholds)
        out.append({"tenant_id": tenant, "episodes": result.episodes, "rows": result.rows,
                    "alerts": len(result.alerts)})
    return out


@DBOS.workflow()
async def analyze_window(scheduled_at: datetime, context: Any) -> None:
    """One analyzer run for every tenant (``context``: ``{"interval_s", "grace_s"}``)."""
    start, end = window(scheduled_at, float(context["interval_s"]), float(context["grace_s"]))
    tenants = episodes = alerts = 0
    after = ""
    while page := await tenant_page(after):
        for r in await analyze_tenants(page, start.isoformat(), end.isoformat()):
            tenants, episodes, alerts = tenants + 1, episodes + r["episodes"], alerts + r["alerts"]
        after = page[-1]
    log.info("analyzed [%s, %s): %d tenants, %d episodes, %d alerts", start, end, tenants, episodes, alerts)


async def apply_schedule(interval_s: int, grace_s: float) -> None:
    """Create or replace the analyzer's schedule (every process with the analyzer role does;
    replacing is atomic and DBOS fires each tick once)."""
    await DBOS.apply_schedules_async([{
        "schedule_name": SCHEDULE, "workflow_fn": analyze_window, "schedule": cron_for(interval_s),
        "context": {"interval_s": interval_s, "grace_s": grace_s}, "queue_name": ANALYZER_QUEUE,
    }])


# --- notifications ------------------------------------------------------------------------


def delivery_key(channel_id: str, event: Event) -> str:
    """One key per (channel, event): the event's own ``idempotency_key`` when it has one (alerts
    and violations do, so a re-raised alert maps to the same key), else its id."""
    base = str(event.data.get("idempotency_key") or event.id)
    key = f"{channel_id}:{base}"
    if len(key) > KEY_MAX:
        key = f"{channel_id}:sha256:{hashlib.sha256(base.encode()).hexdigest()}"
    return key


@DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=1.0, backoff_rate=2.0)
async def delivery_attempt(
    tenant_id: str, key: str, channel_id: str, topic: str, event_id: str, message: dict[str, Any]
) -> dict[str, Any]:
    """Ensure the ledger row, then one attempt (DBOS retries only infrastructure errors such as
    the database being down; the remote's answers are outcomes, handled by the workflow)."""
    from vsm_mcp.workers.notify import ledger

    n = current().notifier
    await ledger.ensure(n.db, tenant_id, key, channel_id, topic, event_id, message)
    return await n.attempt(tenant_id, key, channel_id, message)


@DBOS.workflow()
async def deliver(
    tenant_id: str, key: str, channel_id: str, topic: str, event_id: str, message: dict[str, Any]
) -> dict[str, Any]:
    while True:
        result = await delivery_attempt(tenant_id, key, channel_id, topic, event_id, message)
        if result["state"] != "retrying":
            return result
        await DBOS.sleep_async(float(result["retry_after_s"]))


async def enqueue_delivery(
    tenant_id: str, key: str, channel_id: str, topic: str, event_id: str, message: dict[str, Any]
) -> str:
    """Start ``deliver`` for ``key`` unless a workflow for it exists; returns the workflow id."""
    wf_id = f"notify:{key}"
    with SetWorkflowID(wf_id):
        await durable.queue(NOTIFY_QUEUE).enqueue_async(deliver, tenant_id, key, channel_id, topic, event_id, message)
    return wf_id
