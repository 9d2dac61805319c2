"""The episode analyzer: one tenant's window of episodes → ``system_states`` rows → alerts.

``analyze_tenant`` reads the episodes of ``[start, end)``, rolls them up per upstream and per
tool (vsm_mcp/workers/rollup.py), judges each against its previous state
(vsm_mcp/workers/alerts.py), writes one ``system_states`` row per key in one transaction and
then publishes ``alert.<tenant>.<kind>`` for every alert that started or ended.

An upstream's alert covers its tools' alerts of the same kind (``cover``): one message for an
upstream in trouble, not one per tool; a tool whose trouble outlives its upstream's is
announced then.

Re-running a window is safe (a durable step may run twice after a crash): a row already
holding this window is not judged again — its stored changes are published once more, with
the same idempotency keys, so a notifier sends each alert once.

Row names (``system_states.system``, ≤ 64 characters): ``upstream:<server>`` and
``tool:<server>:<tool>``; a longer name keeps a prefix and a digest, the row's state carries
the full names.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select as sa_select
from sqlmodel import col, select

from vsm_mcp.bus import Bus
from vsm_mcp.bus.events import Event
from vsm_mcp.db import Database
from vsm_mcp.models import Episode, SystemState, utcnow
from vsm_mcp.workers.alerts import Change, Thresholds, judge
from vsm_mcp.workers.rollup import Rollup, Sample, roll_up

SYSTEM_MAX = 64


def system_name(server: str, tool: str | None = None) -> str:
    """The ``system_states.system`` of an upstream (``tool`` None) or of one of its tools."""
    name = f"upstream:{server}" if tool is None else f"tool:{server}:{tool}"
    if len(name) <= SYSTEM_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    return f"{name[: SYSTEM_MAX - 13]}~{digest}"


def alert_topic(tenant_id: str, kind: str) -> str:
    return f"alert.{tenant_id}.{kind}"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")  # fixed width: compared as text


@dataclass
class TenantAnalysis:
    """What one run did for one tenant (returned by the durable step, so kept JSON-friendly)."""

    tenant_id: str
    episodes: int = 0
    rows: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "episodes": self.episodes, "rows": self.rows, "alerts": self.alerts}


async def read_samples(db: Database, tenant_id: str, start: datetime, end: datetime) -> list[Sample]:
    """The episodes of ``tenant_id`` created in ``[start, end)``, only the columns rolled up."""
    stmt = sa_select(  # sqlmodel's select() types at most four columns
        col(Episode.created_at), col(Episode.server), col(Episode.tool), col(Episode.outcome),
        col(Episode.duration_ms),
    ).where(col(Episode.created_at) >= start, col(Episode.created_at) < end)
    async with db.tenant(tenant_id) as s:
        rows = (await s.execute(stmt)).all()
    return [Sample(*row) for row in rows]


def _alert(tenant_id: str, system: str, state: dict[str, Any], c: Change) -> dict[str, Any]:
    end = state["window"]["end"]
    return {
        "topic": alert_topic(tenant_id, c.kind),
        "kind": c.kind, "status": c.status, "system": system,
        "server": state["server"], "tool": state.get("tool"),
        "value": c.value, "threshold": c.threshold,
        "window": state["window"],
        "idempotency_key": f"alert:{tenant_id}:{system}:{c.kind}:{c.status}:{end}",
    }


def _state(
    server: str, tool: str | None, r: Rollup, window: dict[str, str], prev: dict[str, Any] | None,
    t: Thresholds, tenant_id: str, system: str,
) -> dict[str, Any]:
    verdict = judge(prev, r, t, is_upstream=tool is None, at=window["end"])
    state: dict[str, Any] = {
        "kind": "upstream" if tool is None else "tool", "server": server, "tool": tool,
        "window": window, **r.to_dict(),
        "baseline_p95_ms": verdict.baseline_p95_ms, "alerts": verdict.firing,
    }
    state["last_changes"] = [_alert(tenant_id, system, state, c) for c in verdict.changes]
    return state


def cover(
    tenant_id: str, system: str, tool_state: dict[str, Any], prev: dict[str, Any] | None, upstream_firing: set[str]
) -> None:
    """Keep a tool's alerts quiet while its upstream has the same alert firing: one message for
    an upstream in trouble, not one per tool. The tool row still tracks them (``announced``
    false); one that outlives the upstream's is announced then, and a resolution is published
    only for what was announced. Rewrites ``tool_state["last_changes"]``."""
    firing: dict[str, dict[str, Any]] = tool_state["alerts"]
    was = (prev or {}).get("alerts") or {}
    kept = []
    for change in tool_state["last_changes"]:
        kind = change["kind"]
        if change["status"] == "firing":
            firing[kind]["announced"] = kind not in upstream_firing
            if firing[kind]["announced"]:
                kept.append(change)
        elif was.get(kind, {}).get("announced", True):
            kept.append(change)
    changed = {c["kind"] for c in tool_state["last_changes"]}
    for kind, entry in firing.items():
        if kind not in changed and not entry.get("announced", True) and kind not in upstream_firing:
            entry["announced"] = True  # its upstream recovered, this tool did not: say so now
            change = Change(kind, "firing", float(entry["value"]), float(entry["threshold"]))
            kept.append(_alert(tenant_id, system, tool_state, change))
    tool_state["last_changes"] = kept


async def analyze_tenant(
    db: Database, bus: Bus | None, tenant_id: str, start: datetime, end: datetime, thresholds: Thresholds
) -> TenantAnalysis:
    """Roll up ``tenant_id``'s episodes of ``[start, end)`` into ``system_states`` and raise alerts."""
    samples = await read_samples(db, tenant_id, start, end)
    out = TenantAnalysis(tenant_id, episodes=len(samples))
    if not samples:
        return out
    window = {"start": _iso(start), "end": _iso(end)}
    rolled = roll_up(samples)
    keyed: dict[str, tuple[str, str | None, Rollup]] = {
        system_name(server): (server, None, r) for server, r in rolled.upstreams.items()
    }
    keyed.update({system_name(server, tool): (server, tool, r) for (server, tool), r in rolled.tools.items()})
    publish: list[dict[str, Any]] = []
    upstream_firing: dict[str, set[str]] = {}
    async with db.tenant(tenant_id) as s:
        existing = {
            row.system: row
            for row in (await s.execute(select(SystemState).where(col(SystemState.system).in_(keyed)))).scalars()
        }
        for system, (server, tool, r) in keyed.items():  # upstreams first: their alerts cover their tools'
            row = existing.get(system)
            prev = dict(row.state) if row is not None else None
            if prev is not None and str(prev.get("window", {}).get("end", "")) >= window["end"]:
                publish.extend(prev.get("last_changes") or [])  # this window was done: say it again
                continue
            state = _state(server, tool, r, window, prev, thresholds, tenant_id, system)
            if tool is None:
                upstream_firing[server] = set(state["alerts"])
            else:
                cover(tenant_id, system, state, prev, upstream_firing.get(server, set()))
            publish.extend(state["last_changes"])
            if row is None:
                s.add(SystemState(tenant_id=tenant_id, system=system, health=r.success_rate, state=state))
            else:
                row.state, row.health, row.updated_at = state, r.success_rate, utcnow()
            out.rows += 1
    out.alerts = publish
    if bus is not None:
        for alert in publish:
            await bus.publish(Event(topic=alert["topic"], tenant=tenant_id, type="alert", data=alert))
    return out
